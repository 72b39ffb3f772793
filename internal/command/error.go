package command

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Reason is the dead-letter reason of a message Parse refuses (docs/SPEC.md §2). The
// values equal those of dlq.Reason; this package does not import dlq so that
// every package can read commands.
type Reason string

// The two reasons Parse can give.
const (
	ReasonInvalidMessage   Reason = "invalid_message"   // cannot be read as a command
	ReasonValidationFailed Reason = "validation_failed" // a command, but a value is wrong
)

// Error is what Parse (and ValidateID) returns for bad input.
//
// Field and Detail contain printable ASCII only (user-supplied text is quoted
// and shortened), so Error() can go into a dead-letter header or a log line
// as it is. ID, Source and RequestID are set only when they were read without
// ambiguity and contain no control characters.
type Error struct {
	Reason Reason
	// Field is the JSON path of the offending value ("type",
	// "data.accessPackageAssignmentRequestId", "data.body.data.@odata.type",
	// "data.headers.X-Foo"); empty when the message as a whole is at fault.
	Field  string
	Detail string

	// What could be read before the failure, for dead-letter headers.
	Type       Type // TypeUnknown when unreadable or not a known type
	ID, Source string
	// RequestID is the serialization key (see Command.RequestID) when the
	// type and its ids were readable and valid.
	RequestID string
}

// Error reads "<field>: <detail>", or just the detail when Field is empty.
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// maxQuoted bounds user-supplied text quoted into a Detail or Field, so that
// a 200 KiB value does not become a 200 KiB dead-letter header.
const maxQuoted = 128

// quote renders user-supplied text for a Detail: Go-quoted, ASCII only,
// shortened to maxQuoted bytes.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.QuoteToASCII(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + "..."
}

// pathSegment renders an object key for a JSON path: as it is when it is
// plain printable ASCII, otherwise quoted (so a key cannot smuggle a control
// character or a fake path into a header).
func pathSegment(key string) string {
	if key != "" && len(key) <= maxQuoted {
		plain := true
		for i := 0; i < len(key); i++ {
			if c := key[i]; c < 0x21 || c > 0x7e || c == '"' || c == '[' || c == ']' {
				plain = false
				break
			}
		}
		if plain {
			return key
		}
	}
	return "[" + quote(key) + "]"
}

// maxField bounds the length of a Field: a path 64 levels deep through
// long keys would otherwise make a header of kilobytes.
const maxField = 256

// shortField cuts a path to maxField bytes (it is ASCII: see pathSegment).
func shortField(p string) string {
	if len(p) <= maxField {
		return p
	}
	return p[:maxField] + "..."
}

// printable returns s with every byte outside printable ASCII escaped
// (\xNN): the last guard that keeps an error's text one safe header line,
// whatever a library's message quotes from the input.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return escapeBytes(s)
		}
	}
	return s
}

func escapeBytes(s string) string {
	const hexDigits = "0123456789abcdef"
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e {
			b = append(b, c)
		} else {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	return string(b)
}

// joinPath appends a member name to a JSON path.
func joinPath(parent, key string) string {
	seg := pathSegment(key)
	if parent == "" {
		return seg
	}
	if strings.HasPrefix(seg, "[") {
		return parent + seg
	}
	return parent + "." + seg
}
