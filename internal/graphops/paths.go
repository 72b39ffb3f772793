package graphops

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// ErrInvalidID is returned, before any network I/O, for an id that is not a
// single safe URL path segment. The command parser refuses such ids earlier;
// this is defense in depth so that no id can steer a token-bearing request to
// another Graph path.
var ErrInvalidID = errors.New("invalid id")

// maxIDLen is the longest id accepted, in bytes (SPEC §2).
const maxIDLen = 128

// checkID enforces SPEC §2's rule for ids: not empty, at most 128 bytes, no
// '/', '\', "..", '%', '?', '#', whitespace or control characters. A lone "."
// is refused too: it is a dot-segment that proxies may normalise away.
func checkID(field, id string) error {
	reason := ""
	switch {
	case id == "":
		reason = "is empty"
	case len(id) > maxIDLen:
		reason = fmt.Sprintf("is longer than %d bytes", maxIDLen)
	case id == ".":
		reason = "is a dot-segment"
	case strings.Contains(id, ".."):
		reason = `contains ".."`
	case strings.ContainsAny(id, `/\%?#`):
		reason = `contains one of / \ % ? #`
	case strings.ContainsFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		reason = "contains whitespace or control characters"
	default:
		return nil
	}
	shown := id
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	return fmt.Errorf("%w: %s %s: %q", ErrInvalidID, field, reason, shown)
}

// endpoint joins the base path and the given segments. Literal segments are
// written as they are (they may hold slashes: they are paths of the
// contract, plain ASCII); ids (already checked) are escaped as one path
// segment each. Path and RawPath are set consistently so that the request
// target on the wire is exactly the contract path.
func (c *Client) endpoint(query string, segments ...segment) *url.URL {
	var raw, path strings.Builder
	raw.WriteString(c.base.EscapedPath())
	path.WriteString(c.base.Path)
	for _, s := range segments {
		raw.WriteByte('/')
		path.WriteByte('/')
		path.WriteString(s.v)
		if s.id {
			raw.WriteString(url.PathEscape(s.v))
		} else {
			raw.WriteString(s.v)
		}
	}
	return &url.URL{Scheme: c.base.Scheme, Host: c.base.Host, Path: path.String(), RawPath: raw.String(), RawQuery: query}
}

type segment struct {
	v  string
	id bool
}

func idSeg(v string) segment { return segment{v: v, id: true} }

// assignmentRequestsPath is the path of the resume action and of the
// reconciliation read, up to the request id.
const assignmentRequestsPath = "v1.0/identityGovernance/entitlementManagement/assignmentRequests"

// assignmentRequestSelect is the reconciliation read's query (SPEC §3).
const assignmentRequestSelect = "$select=id,state,status,customExtensionCalloutInstances"

func (c *Client) resumeURL(id string) (*url.URL, error) {
	if err := checkID("accessPackageAssignmentRequestId", id); err != nil {
		return nil, fmt.Errorf("graph: %s: %w", OpResume, err)
	}
	return c.endpoint("", segment{v: assignmentRequestsPath}, idSeg(id), segment{v: "resume"}), nil
}

func (c *Client) assignmentRequestURL(id string) (*url.URL, error) {
	if err := checkID("accessPackageAssignmentRequestId", id); err != nil {
		return nil, fmt.Errorf("graph: %s read: %w", OpResume, err)
	}
	return c.endpoint(assignmentRequestSelect, segment{v: assignmentRequestsPath}, idSeg(id)), nil
}

func (c *Client) roleRequestURL(privilegedAccessID, requestID string) (*url.URL, error) {
	if err := checkID("privilegedAccessId", privilegedAccessID); err != nil {
		return nil, fmt.Errorf("graph: %s: %w", OpRoleRequestUpdate, err)
	}
	if err := checkID("governanceRoleAssignmentRequestId", requestID); err != nil {
		return nil, fmt.Errorf("graph: %s: %w", OpRoleRequestUpdate, err)
	}
	return c.endpoint("", segment{v: "beta/privilegedAccess"}, idSeg(privilegedAccessID), segment{v: "roleAssignmentRequests"}, idSeg(requestID)), nil
}
