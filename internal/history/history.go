// Package history answers "what happened to this command?" from the ledger:
// `worker history ID` (docs/SPEC.md §8).
//
// It owns finding the commands of an ID (a command id, or a request id) and
// printing them, as a table or as JSON; it does not own the store, which
// the caller opens (JetStream KV or Redis), nor what the ledger records,
// which internal/ledger decides.
package history

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/graphops/worker/internal/command"
	"github.com/graphops/worker/internal/ledger"
)

// Errors Find returns; the command line maps them to exit statuses.
var (
	// ErrUnknown: the ledger knows nothing of the ID (exit 1).
	ErrUnknown = errors.New("the ledger knows nothing of this id")
	// ErrBadID: the ID cannot be a command or request id (exit 2).
	ErrBadID = errors.New("not a command id or request id")
)

// Outcomes of an Entry: the ledger's settled states, and pending for a
// command still claimed (in flight, handed back or waiting for Graph).
const (
	OutcomeApplied      = "applied"
	OutcomeDuplicate    = "duplicate"
	OutcomeDeadLettered = "dead_lettered"
	OutcomePending      = "pending"
)

// Entry is one command the ledger knows, with the fields of docs/SPEC.md §8's
// --json output (every one present, empty when it does not apply).
type Entry struct {
	CommandID     string `json:"command_id"`
	CommandSource string `json:"command_source"`
	Type          string `json:"type"`
	RequestID     string `json:"request_id"`
	Outcome       string `json:"outcome"`
	// Reason of a dead letter.
	Reason string `json:"reason"`
	// DuplicateOf is the id of the command a duplicate repeats.
	DuplicateOf string `json:"duplicate_of"`
	// GraphRequestID of the call that applied the command.
	GraphRequestID string `json:"graph_request_id"`
	Reconciled     bool   `json:"reconciled"`
	Replays        int    `json:"replays"`
	// Attempts lists the write calls, oldest first: all of them, or the
	// last ledger.MaxHistory when EarlierAttempts summarises the others.
	Attempts []Attempt `json:"attempts"`

	// More than the SPEC asks.
	Since           time.Time       `json:"since,omitzero"`      // the ledger first saw the command
	SettledAt       time.Time       `json:"settled_at,omitzero"` // applied, dead-lettered or recognised as a duplicate
	EarlierAttempts *ledger.Earlier `json:"earlier_attempts,omitempty"`
}

// Attempt is one write call.
type Attempt struct {
	At              time.Time `json:"at"`
	ClientRequestID string    `json:"client_request_id"`
	GraphStatus     int       `json:"graph_status"` // 0: no answer
	GraphCode       string    `json:"graph_code"`
	GraphRequestID  string    `json:"graph_request_id"`
}

// maxIDLen is longer than any id the command validation accepts.
const maxIDLen = 1024

// Find returns every command the ledger in s knows for id, oldest first:
// the commands with that command id (from any source), and the commands
// for a Graph request of that id (an accessPackageAssignmentRequestId, or
// privilegedAccessId/governanceRoleAssignmentRequestId), duplicates
// included. ErrUnknown when there is none.
func Find(ctx context.Context, s ledger.Store, id string) ([]Entry, error) {
	if err := CheckID(id); err != nil {
		return nil, err
	}
	found, err := ledger.ByCommandID(ctx, s, id)
	if err != nil {
		return nil, err
	}
	for _, t := range []command.Type{command.TypeResume, command.TypeRoleRequestUpdate} {
		more, err := ledger.ByRequest(ctx, s, ledger.RequestOf(string(t), id))
		if err != nil {
			return nil, err
		}
		found = append(found, more...)
	}
	// A command found both ways is listed once.
	seen := make(map[[2]string]bool, len(found))
	out := make([]Entry, 0, len(found))
	for _, f := range found {
		k := [2]string{f.Request, f.Key}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, entryOf(f))
	}
	if len(out) == 0 {
		return nil, ErrUnknown
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		return cmp.Or(a.Since.Compare(b.Since), a.SettledAt.Compare(b.SettledAt),
			cmp.Compare(a.CommandSource, b.CommandSource), cmp.Compare(a.CommandID, b.CommandID))
	})
	return out, nil
}

// CheckID refuses what cannot be an id: empty, overlong, or with control
// characters or spaces (which no command's id or request id has): ErrBadID.
func CheckID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: %d bytes", ErrBadID, len(id))
	}
	if i := strings.IndexFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }); i >= 0 {
		return fmt.Errorf("%w: %q has a space or control character at byte %d", ErrBadID, id, i)
	}
	return nil
}

// entryOf turns a ledger record into an Entry.
func entryOf(f ledger.Found) Entry {
	r := f.Record
	typ, reqID := ledger.SplitRequest(f.Request)
	reqID = cmp.Or(r.RequestID, reqID) // as the command spelled it, when the record keeps it
	e := Entry{
		CommandID: r.ID, CommandSource: r.Source, Type: typ, RequestID: reqID,
		Reason: r.Reason, DuplicateOf: r.DuplicateOf, Reconciled: r.Reconciled, Replays: r.Replays,
		Since: r.Since, SettledAt: r.SettledAt, EarlierAttempts: r.Earlier,
		Attempts: make([]Attempt, 0, len(r.History)),
	}
	if e.Since.IsZero() { // a record written before the ledger kept it
		e.Since = cmp.Or(r.FirstAttempt, r.SettledAt)
	}
	switch r.State {
	case ledger.StateApplied:
		e.Outcome, e.GraphRequestID = OutcomeApplied, r.GraphRequestID
	case ledger.StateDeadLettered:
		e.Outcome = OutcomeDeadLettered
	case ledger.StateDuplicate:
		e.Outcome = OutcomeDuplicate
	default:
		e.Outcome = OutcomePending
	}
	for _, a := range r.History {
		e.Attempts = append(e.Attempts, Attempt(a))
	}
	return e
}

// WriteJSON writes one JSON object per entry, a line each.
func WriteJSON(w io.Writer, entries []Entry) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		e.Since, e.SettledAt = e.Since.UTC(), e.SettledAt.UTC()
		// A list, empty for a command that made no call, never null; a
		// copy, so that the caller's entries keep their zones.
		e.Attempts = append([]Attempt{}, e.Attempts...)
		for i := range e.Attempts {
			e.Attempts[i].At = e.Attempts[i].At.UTC()
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes a table of the entries, one line per command and an
// indented line per attempt under it.
func WriteTable(w io.Writer, entries []Entry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINCE\tCOMMAND\tSOURCE\tTYPE\tREQUEST\tOUTCOME\tDETAIL\tGRAPH REQUEST ID\tREPLAYS")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", stamp(e.Since), e.CommandID, e.CommandSource,
			e.Type, e.RequestID, e.Outcome, detail(e), dash(e.GraphRequestID), e.Replays)
		if x := e.EarlierAttempts; x != nil {
			fmt.Fprintf(tw, "  %d earlier attempts\t%s\tto %s\t\t\t%s\t\t\t\n", x.Count, stamp(x.First), stamp(x.Last), statuses(x.ByStatus))
		}
		for i, a := range e.Attempts {
			n := i + 1
			if e.EarlierAttempts != nil {
				n += e.EarlierAttempts.Count
			}
			status := "no answer"
			if a.GraphStatus != 0 {
				status = strconv.Itoa(a.GraphStatus)
			}
			fmt.Fprintf(tw, "  attempt %d\t%s\tclient-request-id %s\t\t\t%s\t%s\t%s\t\n", n, stamp(a.At),
				dash(a.ClientRequestID), status, dash(a.GraphCode), dash(a.GraphRequestID))
		}
	}
	return tw.Flush()
}

// detail is the table's word on an outcome: a dead letter's reason, what a
// duplicate repeats, whether a reading of the request decided it.
func detail(e Entry) string {
	switch {
	case e.Outcome == OutcomeDeadLettered:
		return dash(e.Reason)
	case e.Outcome == OutcomeDuplicate:
		return "duplicate of " + e.DuplicateOf
	case e.Reconciled:
		return "reconciled"
	}
	return "-"
}

// statuses lists summarised attempts by status: "429×5, no answer×1".
func statuses(by map[string]int) string {
	keys := slices.Sorted(maps.Keys(by))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		name := k
		if k == "0" {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, by[k]))
	}
	return strings.Join(parts, ", ")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
