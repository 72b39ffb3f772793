package dlq

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// ErrPurgeCancelled is returned by CmdPurge when the operator does not
// confirm.
var ErrPurgeCancelled = errors.New("purge cancelled")

// listDescriptionWidth is how much of a description the table shows; the
// whole text is in `show` and `--json`.
const listDescriptionWidth = 60

// Lister is what CmdList reads: any Backend.
type Lister interface {
	List(ctx context.Context, fn func(Entry) error) error
}

// CmdList writes the dead letters as a table (`worker dlq list`) or, with
// jsonLines, as one JSON object per line (`--json`).
func CmdList(ctx context.Context, s Lister, w io.Writer, jsonLines bool) error {
	if jsonLines {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return s.List(ctx, func(e Entry) error { return enc.Encode(toJSON(e)) })
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTORED\tREASON\tTYPE\tCOMMAND-ID\tREQUEST-ID\tATTEMPTS\tGRAPH-STATUS\tDESCRIPTION")
	err := s.List(ctx, func(e Entry) error {
		status := "-"
		if e.GraphStatus != 0 {
			status = strconv.Itoa(e.GraphStatus)
		}
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
			e.Seq, e.Stored.UTC().Format(time.RFC3339), cell(string(e.Reason)), cell(e.Type),
			cell(e.CommandID), cell(e.RequestID), e.Attempts, status,
			cell(truncateRunes(e.Description, listDescriptionWidth)))
		return err
	})
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// cell makes a table cell of s: one line without tabs, "-" when empty.
func cell(s string) string {
	s = headerValue(s)
	if s == "" {
		return "-"
	}
	return s
}

// truncateRunes shortens s to n characters, the last one "…" when it cut.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// entryJSON is an Entry in `dlq list --json`. Every key is always present;
// times never set are null; payload is null when the payload is not UTF-8
// text, and payload_base64 always holds the exact bytes.
type entryJSON struct {
	Seq             uint64  `json:"seq"`
	Stored          string  `json:"stored"`
	Reason          string  `json:"reason"`
	Description     string  `json:"description"`
	Type            string  `json:"type"`
	CommandID       string  `json:"command_id"`
	CommandSource   string  `json:"command_source"`
	RequestID       string  `json:"request_id"`
	Attempts        int     `json:"attempts"`
	FirstAttempt    *string `json:"first_attempt"`
	LastAttempt     *string `json:"last_attempt"`
	OriginalSubject string  `json:"original_subject"`
	GraphStatus     int     `json:"graph_status"`
	GraphCode       string  `json:"graph_code"`
	GraphRequestID  string  `json:"graph_request_id"`
	ClientRequestID string  `json:"client_request_id"`
	Payload         *string `json:"payload"`
	PayloadBase64   string  `json:"payload_base64"`
}

func toJSON(e Entry) entryJSON {
	j := entryJSON{
		Seq:             e.Seq,
		Stored:          e.Stored.UTC().Format(time.RFC3339Nano),
		Reason:          string(e.Reason),
		Description:     e.Description,
		Type:            e.Type,
		CommandID:       e.CommandID,
		CommandSource:   e.CommandSource,
		RequestID:       e.RequestID,
		Attempts:        e.Attempts,
		FirstAttempt:    jsonTime(e.FirstAttempt),
		LastAttempt:     jsonTime(e.LastAttempt),
		OriginalSubject: e.OriginalSubject,
		GraphStatus:     e.GraphStatus,
		GraphCode:       e.GraphCode,
		GraphRequestID:  e.GraphRequestID,
		ClientRequestID: e.ClientRequestID,
		PayloadBase64:   base64.StdEncoding.EncodeToString(e.Payload),
	}
	if utf8.Valid(e.Payload) {
		p := string(e.Payload)
		j.Payload = &p
	}
	return j
}

func jsonTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// CmdShow writes one dead letter (`worker dlq show ID`): its ID, time and
// where it is stored, its docs/SPEC.md §4 headers in their order, every other
// header or property it carries (the original message's and the
// broker's) sorted by name, a blank line, then the payload verbatim.
func CmdShow(ctx context.Context, b Backend, w io.Writer, id uint64) error {
	e, err := b.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", id, err)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Seq: %d\nStored: %s\nSubject: %s\n", e.Seq, e.Stored.UTC().Format(time.RFC3339Nano), e.Where)
	props := e.Properties()
	for _, name := range headerNames() {
		if v := props[name]; v != "" {
			fmt.Fprintf(bw, "%s: %s\n", name, v)
		}
	}
	others := map[string][]string{}
	for name, values := range e.Headers {
		others[name] = values
	}
	for name, values := range e.Extra {
		others[name] = values
	}
	names := make([]string, 0, len(others))
	for name := range others {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range others[name] {
			fmt.Fprintf(bw, "%s: %s\n", name, strings.ReplaceAll(v, "\n", " "))
		}
	}
	bw.WriteString("\n")
	bw.Write(e.Payload)
	return bw.Flush()
}

// CmdReplay replays the dead letters ids, or all of them (`worker dlq
// replay ID…|--all`), printing "replayed <id> to <where>" for each. Its
// error names every dead letter that was not replayed and why.
func CmdReplay(ctx context.Context, b Backend, w io.Writer, ids []uint64, all bool) error {
	switch {
	case all && len(ids) > 0:
		return errors.New("give dead letter IDs or --all, not both")
	case !all && len(ids) == 0:
		return errors.New("no dead letter ID given (or --all)")
	}
	done := func(id uint64, where string) { fmt.Fprintf(w, "replayed %d to %s\n", id, where) }
	var replayed []uint64
	var err error
	if all {
		replayed, err = ReplayAll(ctx, b, done)
	} else {
		replayed, err = Replay(ctx, b, ids, done)
	}
	var rerr *ReplayError
	if errors.As(err, &rerr) {
		return fmt.Errorf("%d dead letters not replayed (%d replayed): %w", len(rerr.Failed), len(replayed), err)
	}
	if err != nil {
		return err
	}
	if all && len(replayed) == 0 {
		fmt.Fprintln(w, "no dead letters to replay")
	}
	return nil
}

// CmdPurge deletes every dead letter (`worker dlq purge`). Unless yes, it
// asks first and deletes only on "y" or "yes"; anything else, end of input
// included, returns ErrPurgeCancelled. It deletes only the dead letters it
// counted, not those stored while the operator was answering.
func CmdPurge(ctx context.Context, b Backend, in io.Reader, w io.Writer, yes bool) error {
	ids, err := present(ctx, b)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		fmt.Fprintf(w, "No dead letters in %s.\n", b.Name())
		return nil
	}
	if !yes {
		fmt.Fprintf(w, "Delete %d dead letters from %s? [y/N] ", len(ids), b.Name())
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: reading the answer: %w", ErrPurgeCancelled, err)
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
		default:
			return ErrPurgeCancelled
		}
	}
	removed, err := purge(ctx, b, ids)
	fmt.Fprintf(w, "Deleted %d dead letters from %s.\n", removed, b.Name())
	return err
}

// ParseSeqs parses dead letter IDs (stream sequences) given on the command
// line.
func ParseSeqs(args []string) ([]uint64, error) {
	seqs := make([]uint64, 0, len(args))
	for _, a := range args {
		seq, err := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
		if err != nil || seq == 0 {
			return nil, fmt.Errorf("invalid dead letter ID %q: want a stream sequence number (a positive integer)", a)
		}
		seqs = append(seqs, seq)
	}
	return seqs, nil
}
