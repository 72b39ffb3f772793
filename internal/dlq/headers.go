package dlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/graphops/worker/internal/command"
)

// Header names of a dead letter (docs/SPEC.md §4).
const (
	HeaderReason          = "Graphops-Reason"
	HeaderDescription     = "Graphops-Description"
	HeaderType            = "Graphops-Type"
	HeaderCommandID       = "Graphops-Command-Id"
	HeaderCommandSource   = "Graphops-Command-Source"
	HeaderRequestID       = "Graphops-Request-Id"
	HeaderAttempts        = "Graphops-Attempts"
	HeaderFirstAttempt    = "Graphops-First-Attempt"
	HeaderLastAttempt     = "Graphops-Last-Attempt"
	HeaderOriginalSubject = "Graphops-Original-Subject"

	// The three headers describing the last call Graph answered (absent
	// when Graph never answered), and the client-request-id of the last
	// call sent, answered or not (absent when none was sent).
	HeaderGraphStatus     = "Graphops-Graph-Status"
	HeaderGraphCode       = "Graphops-Graph-Code"
	HeaderGraphRequestID  = "Graphops-Graph-Request-Id"
	HeaderClientRequestID = "Graphops-Client-Request-Id"

	// HeaderReplay marks a command republished by Replay; its value is the
	// dead letter's sequence. It tells the worker that the message is an
	// operator's replay (process it afresh), not a broker redelivery.
	HeaderReplay = "Graphops-Replay"
)

// headerNames lists the dead-letter headers in the order of docs/SPEC.md §4, the
// order `worker dlq show` prints them in.
func headerNames() []string {
	return []string{
		HeaderReason, HeaderDescription, HeaderType, HeaderCommandID, HeaderCommandSource,
		HeaderRequestID, HeaderAttempts, HeaderFirstAttempt, HeaderLastAttempt,
		HeaderOriginalSubject, HeaderGraphStatus, HeaderGraphCode, HeaderGraphRequestID,
		HeaderClientRequestID,
	}
}

// maxHeaderValue bounds every header value: descriptions carry Graph's words
// and ids may come from a message that could not be read, and neither may
// make a dead letter too large for the stream.
const maxHeaderValue = 1024

// Entry is one dead letter.
type Entry struct {
	Seq           uint64    // stream sequence (the ID operators use); set when read
	Stored        time.Time // when stored; set when read
	Reason        Reason
	Description   string
	Type          string // short type: "resume", "role_request_update" or "unknown"
	CommandID     string
	CommandSource string
	RequestID     string // the command's request id (docs/SPEC.md §3 serialization key), "" if unreadable
	Attempts      int    // write calls made (POST/PATCH)

	FirstAttempt, LastAttempt time.Time // zero when never attempted

	OriginalSubject string
	GraphStatus     int // 0 when Graph never answered (then the three Graph headers are absent)

	GraphCode, GraphRequestID string
	ClientRequestID           string // of the last call sent, answered or not; "" when none was sent

	Payload []byte // the original message, byte for byte

	// Headers are the original message's own headers (NATS) or
	// application properties (Service Bus), so that a replay reproduces
	// the message as it came: a binary-mode CloudEvent's attributes travel
	// there. Never the dead-letter headers of docs/SPEC.md §4 nor the broker's own
	// (Nats-*).
	Headers map[string][]string
	// Where the dead letter is stored (its subject, or the entity's
	// dead-letter queue); set when read.
	Where string
	// Extra are the other headers or properties the stored dead letter
	// carries (the broker's, such as Nats-Msg-Id or DeadLetterReason):
	// shown by `worker dlq show`, not replayed; set when read.
	Extra map[string][]string
}

// Properties returns the dead-letter headers of docs/SPEC.md §4 for e, broker
// neutral: each backend writes them as NATS headers or Service Bus
// application properties. Every header of docs/SPEC.md §4 is present (empty when
// unknown, times empty when never attempted) except the three Graph
// headers, present only when GraphStatus is not 0, and
// Graphops-Client-Request-Id, present when a call was sent. Values are single-line
// (control characters become spaces) and at most 1 KiB, so that a
// description quoting Graph cannot break a header block.
func (e Entry) Properties() map[string]string {
	p := map[string]string{
		HeaderReason:          headerValue(string(e.Reason)),
		HeaderDescription:     headerValue(e.Description),
		HeaderType:            shortType(e.Type),
		HeaderCommandID:       headerValue(e.CommandID),
		HeaderCommandSource:   headerValue(e.CommandSource),
		HeaderRequestID:       headerValue(e.RequestID),
		HeaderAttempts:        strconv.Itoa(e.Attempts),
		HeaderFirstAttempt:    formatTime(e.FirstAttempt),
		HeaderLastAttempt:     formatTime(e.LastAttempt),
		HeaderOriginalSubject: headerValue(e.OriginalSubject),
	}
	if e.GraphStatus != 0 {
		p[HeaderGraphStatus] = strconv.Itoa(e.GraphStatus)
		p[HeaderGraphCode] = headerValue(e.GraphCode)
		p[HeaderGraphRequestID] = headerValue(e.GraphRequestID)
	}
	if e.ClientRequestID != "" {
		p[HeaderClientRequestID] = headerValue(e.ClientRequestID)
	}
	return p
}

// IsDeadLetterHeader reports whether name is one of the docs/SPEC.md §4 headers or
// Graphops-Replay (compared ignoring case): these are never an original
// header of a command.
func IsDeadLetterHeader(name string) bool {
	for _, h := range append(headerNames(), HeaderReplay) {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// EntryFromProperties reads a dead letter from its docs/SPEC.md §4 headers, got by
// name from get ("" when absent). Payload is payload itself, not a copy. A
// header that cannot be parsed (a bad number or time, a missing reason)
// makes it return an error together with the entry as far as it could be
// read, so that a caller may still show the dead letter.
func EntryFromProperties(payload []byte, get func(name string) string, seq uint64, stored time.Time) (Entry, error) {
	e := Entry{
		Seq:             seq,
		Stored:          stored,
		Reason:          Reason(get(HeaderReason)),
		Description:     get(HeaderDescription),
		Type:            shortType(get(HeaderType)),
		CommandID:       get(HeaderCommandID),
		CommandSource:   get(HeaderCommandSource),
		RequestID:       get(HeaderRequestID),
		OriginalSubject: get(HeaderOriginalSubject),
		GraphCode:       get(HeaderGraphCode),
		GraphRequestID:  get(HeaderGraphRequestID),
		ClientRequestID: get(HeaderClientRequestID),
		Payload:         payload,
	}
	var errs []error
	if e.Reason == "" {
		errs = append(errs, fmt.Errorf("header %s missing", HeaderReason))
	}
	var err error
	if e.Attempts, err = parseInt(get, HeaderAttempts); err != nil {
		errs = append(errs, err)
	}
	if e.GraphStatus, err = parseInt(get, HeaderGraphStatus); err != nil {
		errs = append(errs, err)
	}
	if e.FirstAttempt, err = parseTime(get, HeaderFirstAttempt); err != nil {
		errs = append(errs, err)
	}
	if e.LastAttempt, err = parseTime(get, HeaderLastAttempt); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return e, fmt.Errorf("dead letter %d: %w", seq, errors.Join(errs...))
	}
	return e, nil
}

// shortType maps anything but a known short type to "unknown", so that a
// dead letter's subject and Graphops-Type always name one of docs/SPEC.md §1's types.
func shortType(t string) string {
	for _, known := range command.Types() {
		if t == string(known) {
			return t
		}
	}
	return string(command.TypeUnknown)
}

// headerValue makes s safe as a header value: valid UTF-8, one line, no
// surrounding spaces (NATS drops leading ones), at most maxHeaderValue bytes.
func headerValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(strings.TrimSpace(s), maxHeaderValue)
}

// truncate shortens s to at most n bytes, cutting at a rune boundary and
// ending with "…" when it cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

func parseTime(get func(string) string, name string) (time.Time, error) {
	v := get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("header %s: %w", name, err)
	}
	return t, nil
}

func parseInt(get func(string) string, name string) (int, error) {
	v := get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("header %s: %w", name, err)
	}
	return n, nil
}
