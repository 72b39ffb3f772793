// Package graphpath owns the Microsoft Graph ids and paths of the contract
// (docs/SPEC.md §1–§3): which strings are ids, the two write paths, the read of
// the reconciliation, and how a path is recognised. The command parser, the
// Graph client, the worker's logs and the simulator all use it, so that an
// id one of them accepts is an id every other one accepts.
//
// It does not own base URLs, query parameters other than the read's
// $select, or HTTP methods beyond naming them.
package graphpath

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen is the longest id accepted, in bytes (docs/SPEC.md §2).
const MaxIDLen = 128

// ErrInvalidID is wrapped by every error of Check and of the path builders.
var ErrInvalidID = errors.New("invalid id")

// Problem says what is wrong with v as an id, "" when nothing is. An id is
// a single safe URL path segment: 1 to MaxIDLen bytes of RFC 3986
// unreserved characters (ASCII letters, digits, '-', '.', '_', '~'),
// neither "." nor containing "..".
//
// This is an allow-list because the ids go into token-bearing Graph URLs:
// docs/SPEC.md §2 names what must be refused ('/', '\', '%', '?', '#', dot
// segments, whitespace, control characters), and the rest of what URLs and
// OData give meaning to ("(", "'", "=", ",", "$", "@", ...) is refused too.
// Graph's ids are GUIDs and ASCII names (privilegedAccessId is
// "azureResources" or "aadRoles"), which need none of it. Non-ASCII is
// refused as well: Unicode look-alikes (U+FF0F FULLWIDTH SOLIDUS, which
// Windows "best fit" maps to '/') are exactly the surprising kind.
func Problem(v string) string {
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
	for _, r := range v {
		switch {
		case r < utf8.RuneSelf && unreserved(byte(r)):
		case r == '/' || r == '\\' || r == '%' || r == '?' || r == '#':
			return fmt.Sprintf("contains %q, which is not allowed in a single URL path segment", r)
		case unicode.IsSpace(r):
			return fmt.Sprintf("contains whitespace (%U), which is not allowed in an id", r)
		case unicode.IsControl(r):
			return fmt.Sprintf("contains a control character (%U), which is not allowed in an id", r)
		case r > unicode.MaxASCII:
			return fmt.Sprintf("contains the non-ASCII character %U; an id is printable ASCII", r)
		default:
			return fmt.Sprintf("contains %q; an id is made of letters, digits, '-', '.', '_' and '~'", r)
		}
	}
	return ""
}

// unreserved reports whether c is an RFC 3986 unreserved character: it
// needs no escaping in a path and neither URLs nor OData give it a meaning
// inside a segment ('.' is left to the dot-segment checks of Problem).
func unreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

// Check returns an error wrapping ErrInvalidID, naming field and quoting
// (a shortened, ASCII-only form of) v, unless v is an id.
func Check(field, v string) error {
	p := Problem(v)
	if p == "" {
		return nil
	}
	shown := v
	if len(shown) > 40 {
		shown = shown[:40] + "..."
	}
	return fmt.Errorf("%w: %s %s: %s", ErrInvalidID, field, p, strconv.QuoteToASCII(shown))
}

// The id fields of the contract, as the commands name them.
const (
	FieldAssignmentRequestID = "accessPackageAssignmentRequestId"
	FieldPrivilegedAccessID  = "privilegedAccessId"
	FieldRoleRequestID       = "governanceRoleAssignmentRequestId"
)

// The fixed parts of the paths, relative to Graph's root.
const (
	assignmentRequests = "/v1.0/identityGovernance/entitlementManagement/assignmentRequests/"
	privilegedAccess   = "/beta/privilegedAccess/"
	roleRequests       = "/roleAssignmentRequests/"
)

// ReadQuery is the query of the reconciliation read (docs/SPEC.md §3).
const ReadQuery = "$select=id,state,status,customExtensionCalloutInstances"

// Resume is the path of the resume action (POST):
// /v1.0/identityGovernance/entitlementManagement/assignmentRequests/{id}/resume.
// Paths are returned escaped; for an id, escaped and plain are the same
// text (Problem allows only unreserved characters).
func Resume(assignmentRequestID string) (string, error) {
	if err := Check(FieldAssignmentRequestID, assignmentRequestID); err != nil {
		return "", err
	}
	return assignmentRequests + assignmentRequestID + "/resume", nil
}

// AssignmentRequest is the path of the reconciliation read (GET, with
// ReadQuery): /v1.0/identityGovernance/entitlementManagement/assignmentRequests/{id}.
func AssignmentRequest(assignmentRequestID string) (string, error) {
	if err := Check(FieldAssignmentRequestID, assignmentRequestID); err != nil {
		return "", err
	}
	return assignmentRequests + assignmentRequestID, nil
}

// RoleRequest is the path of the role request update (PATCH):
// /beta/privilegedAccess/{pid}/roleAssignmentRequests/{id}.
func RoleRequest(privilegedAccessID, requestID string) (string, error) {
	if err := Check(FieldPrivilegedAccessID, privilegedAccessID); err != nil {
		return "", err
	}
	if err := Check(FieldRoleRequestID, requestID); err != nil {
		return "", err
	}
	return privilegedAccess + privilegedAccessID + roleRequests + requestID, nil
}

// Kind is what a path names.
type Kind int

// The paths of the contract; None for every other.
const (
	None Kind = iota
	KindResume
	KindAssignmentRequest
	KindRoleRequest
)

// Method is the HTTP method the contract uses on a path of kind k.
func (k Kind) Method() string {
	switch k {
	case KindResume:
		return "POST"
	case KindAssignmentRequest:
		return "GET"
	case KindRoleRequest:
		return "PATCH"
	}
	return ""
}

// Route is a parsed path: its kind and its ids, unescaped.
type Route struct {
	Kind Kind
	// AssignmentRequestID is set for KindResume and KindAssignmentRequest.
	AssignmentRequestID string
	// PrivilegedAccessID and RoleRequestID are set for KindRoleRequest.
	PrivilegedAccessID, RoleRequestID string
}

// Parse recognises an escaped path (as url.URL.EscapedPath gives it)
// relative to Graph's root. Fixed segments match ignoring case, as Graph
// does; ids are unescaped and must pass Problem. Anything else, the beta
// resume and a trailing slash included, is Route{Kind: None}.
func Parse(escapedPath string) Route {
	segs := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	for i, seg := range segs {
		v, err := url.PathUnescape(seg)
		if err != nil || v == "" {
			return Route{}
		}
		segs[i] = v
	}
	is := func(i int, name string) bool { return strings.EqualFold(segs[i], name) }
	var r Route
	switch {
	case len(segs) == 5 && is(0, "v1.0") && is(1, "identityGovernance") && is(2, "entitlementManagement") && is(3, "assignmentRequests"):
		r = Route{Kind: KindAssignmentRequest, AssignmentRequestID: segs[4]}
	case len(segs) == 6 && is(0, "v1.0") && is(1, "identityGovernance") && is(2, "entitlementManagement") && is(3, "assignmentRequests") && is(5, "resume"):
		r = Route{Kind: KindResume, AssignmentRequestID: segs[4]}
	case len(segs) == 5 && is(0, "beta") && is(1, "privilegedAccess") && is(3, "roleAssignmentRequests"):
		r = Route{Kind: KindRoleRequest, PrivilegedAccessID: segs[2], RoleRequestID: segs[4]}
	}
	for _, id := range [...]string{r.AssignmentRequestID, r.PrivilegedAccessID, r.RoleRequestID} {
		if id != "" && Problem(id) != "" {
			return Route{}
		}
	}
	return r
}
