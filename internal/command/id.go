package command

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen is the longest id ValidateID accepts, in bytes.
const MaxIDLen = 128

// ValidateID returns an *Error (validation_failed, naming field) unless v is
// a single safe URL path segment: 1 to MaxIDLen bytes of RFC 3986
// unreserved characters (ASCII letters, digits, '-', '.', '_', '~'), neither
// "." nor containing "..".
//
// The ids go into Graph URLs, so anything that could change which resource a
// URL names is refused: '/', '\', '%', '?', '#', dot segments, whitespace,
// control characters. So is the rest of what a URL or OData gives meaning
// to ("(", "'", "=", ",", "$", "@", ...): Graph's ids are GUIDs and ASCII
// names, which need none of it. Non-ASCII is refused too: Unicode
// look-alikes (U+FF0F FULLWIDTH SOLIDUS, which Windows "best fit" maps to
// '/') are exactly the surprising kind.
func ValidateID(field, v string) error {
	if d := idProblem(v); d != "" {
		return &Error{Reason: ReasonValidationFailed, Field: field, Detail: d, Type: TypeUnknown}
	}
	return nil
}

// validID reports whether ValidateID accepts v.
func validID(v string) bool { return idProblem(v) == "" }

// idProblem says what is wrong with v as an id, "" when nothing is.
func idProblem(v string) string {
	switch {
	case v == "":
		return "is empty; an id is required"
	case !utf8.ValidString(v):
		return "is not valid UTF-8"
	case len(v) > MaxIDLen:
		return fmt.Sprintf("is %d bytes long, over the %d-byte limit for an id", len(v), MaxIDLen)
	case v == ".":
		return `is ".", which is not a single URL path segment`
	case strings.Contains(v, ".."):
		return `contains "..", which is not allowed in an id (path traversal)`
	}
	i := 0
	for i < len(v) && isSegmentChar(v[i]) {
		i++ // a GUID or an ASCII name, the common case, needs no decoding
	}
	for _, r := range v[i:] {
		switch {
		case r == '/' || r == '\\' || r == '%' || r == '?' || r == '#':
			return fmt.Sprintf("contains %q, which is not allowed in a single URL path segment", r)
		case unicode.IsSpace(r):
			return fmt.Sprintf("contains whitespace (%U), which is not allowed in an id", r)
		case unicode.IsControl(r):
			return fmt.Sprintf("contains a control character (%U), which is not allowed in an id", r)
		case r > unicode.MaxASCII:
			return fmt.Sprintf("contains the non-ASCII character %U; an id is printable ASCII", r)
		case !isSegmentChar(byte(r)):
			return fmt.Sprintf("contains %q; an id is made of letters, digits, '-', '.', '_' and '~'", r)
		}
	}
	return ""
}

// isSegmentChar reports whether c is an RFC 3986 unreserved character:
// url.PathEscape leaves it as it is and neither URLs nor OData give it a
// meaning inside a segment ('.' is handled by the dot-segment checks).
func isSegmentChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}
