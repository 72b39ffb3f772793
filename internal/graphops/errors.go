package graphops

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxErrorBody is how much of an error body *Error keeps.
const maxErrorBody = 8 << 10

// ErrBadResponse is returned when Graph answered the read with a 2xx whose
// body is not the expected JSON (or could not be read). Nothing was applied;
// the read may be repeated.
var ErrBadResponse = errors.New("unreadable Graph response")

// Error reports that Graph answered with a non-2xx status (a 3xx included:
// redirects are never followed).
type Error struct {
	Operation Operation
	// Method is the HTTP method of the call: POST or PATCH for the writes,
	// GET for the reconciliation read.
	Method        string
	Status        int
	Code, Message string   // error.code, error.message ("" when the body is not Graph's error shape)
	InnerCodes    []string // nested innerError/innererror codes, outermost first
	// GraphRequestID is innerError.request-id, else the "request-id" header.
	GraphRequestID string
	// ClientRequestID is innerError.client-request-id, else the one sent.
	ClientRequestID string
	// Date is innerError.date. Graph sends it without a UTC offset; it is
	// read as UTC. Zero when absent or unreadable.
	Date time.Time
	// RetryAfter is the Retry-After header's wait, counted from when the
	// response arrived; HasRetryAfter says whether a readable header was sent.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// Throttling is what Graph's identity and access throttling said (its
	// scope and reason on a 429); Error() names them when present.
	Throttling Throttling
	Body       []byte // the raw body, at most 8 KiB
}

// Error returns e.g. "graph: resume: 404 ResourceNotFound: message
// (request-id …, client-request-id …)". It never includes the body or a token.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	b.WriteString(string(e.Operation))
	if e.Method == http.MethodGet {
		b.WriteString(" read")
	}
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.Status))
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	switch {
	case e.Message != "":
		b.WriteString(": ")
		b.WriteString(truncate(e.Message, 1024))
	case e.Code == "" && http.StatusText(e.Status) != "":
		b.WriteString(" ")
		b.WriteString(http.StatusText(e.Status))
	}
	var ids []string
	if e.GraphRequestID != "" {
		ids = append(ids, "request-id "+e.GraphRequestID)
	}
	if e.ClientRequestID != "" {
		ids = append(ids, "client-request-id "+e.ClientRequestID)
	}
	// Which of Graph's limits throttled the call, for the operator.
	if t := e.Throttling; t.Scope != "" {
		ids = append(ids, "throttle-scope "+truncate(t.Scope, 256))
	}
	if t := e.Throttling; t.Information != "" {
		ids = append(ids, "throttle-information "+truncate(t.Information, 256))
	}
	if len(ids) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(ids, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// truncate keeps at most n bytes of s, whole runes only (Graph's messages
// are localized text), and marks the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// TransportError reports that no HTTP response arrived: dial failure,
// timeout, reset, TLS failure, or the caller's context ending.
type TransportError struct {
	Operation       Operation
	Method          string // POST, PATCH or GET
	ClientRequestID string // "" when the call ended before a request was built
	// Sent reports that the request was completely written before the
	// failure, so Graph may have acted on it.
	Sent bool
	Err  error
}

func (e *TransportError) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	b.WriteString(string(e.Operation))
	if e.Method == http.MethodGet {
		b.WriteString(" read")
	}
	b.WriteString(": no response (")
	if e.Sent {
		b.WriteString("request sent")
	} else {
		b.WriteString("request not sent")
	}
	if e.ClientRequestID != "" {
		b.WriteString(", client-request-id ")
		b.WriteString(e.ClientRequestID)
	}
	b.WriteString(")")
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *TransportError) Unwrap() error { return e.Err }

// AuthError reports a failure to get a token. Graph was not called. It never
// contains a token.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return "graph: getting a token: " + e.Err.Error() }

func (e *AuthError) Unwrap() error { return e.Err }

// odataError is Graph's error body. The inner error is spelled innerError on
// the wire and innererror in OData; both are accepted.
type odataError struct {
	Error *struct {
		Code    string          `json:"code"`
		Message json.RawMessage `json:"message"`
		innerErrors
	} `json:"error"`
}

type innerErrors struct {
	Inner   *odataInner `json:"innerError"`
	InnerLC *odataInner `json:"innererror"`
}

func (i innerErrors) inner() *odataInner {
	if i.Inner != nil {
		return i.Inner
	}
	return i.InnerLC
}

type odataInner struct {
	Code            string `json:"code"`
	Date            string `json:"date"`
	RequestID       string `json:"request-id"`
	ClientRequestID string `json:"client-request-id"`
	innerErrors
}

// newError builds an *Error from a non-2xx response; arrived is when the
// response headers arrived (Retry-After is counted from then).
func newError(op Operation, method string, resp *http.Response, body []byte, sentCRID string, arrived time.Time) *Error {
	e := &Error{
		Operation:       op,
		Method:          method,
		Status:          resp.StatusCode,
		GraphRequestID:  resp.Header.Get("request-id"),
		ClientRequestID: sentCRID,
	}
	if len(body) > maxErrorBody {
		e.Body = append([]byte(nil), body[:maxErrorBody]...)
	} else {
		e.Body = body
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		e.RetryAfter, e.HasRetryAfter = ParseRetryAfter(v, arrived)
	}
	e.Throttling = throttlingOf(resp.Header)
	var oe odataError
	if json.Unmarshal(body, &oe) != nil || oe.Error == nil {
		// Not Graph's shape (an HTML page from a proxy, an empty body): the
		// status is all there is.
		return e
	}
	e.Code = oe.Error.Code
	e.Message = messageText(oe.Error.Message)
	const maxDepth = 16
	for in, depth := oe.Error.inner(), 0; in != nil && depth < maxDepth; in, depth = in.inner(), depth+1 {
		if in.Code != "" {
			e.InnerCodes = append(e.InnerCodes, in.Code)
		}
		if depth > 0 {
			continue
		}
		if in.RequestID != "" {
			e.GraphRequestID = in.RequestID
		}
		if in.ClientRequestID != "" {
			e.ClientRequestID = in.ClientRequestID
		}
		e.Date = parseGraphDate(in.Date)
	}
	return e
}

// messageText reads error.message, a string in Graph; older OData services
// send {"lang":…,"value":…}.
func messageText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var v struct {
		Value string `json:"value"`
	}
	if json.Unmarshal(raw, &v) == nil {
		return v.Value
	}
	return ""
}

// parseGraphDate reads innerError.date: Graph omits the UTC offset
// ("2023-07-07T11:13:19"), which is read as UTC; RFC 3339 is accepted too.
func parseGraphDate(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		return t
	}
	return time.Time{}
}
