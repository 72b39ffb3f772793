package graphops

import (
	"fmt"
	"net/url"

	"github.com/graphops/worker/internal/graphpath"
)

// ErrInvalidID is returned, before any network I/O, for an id that is not a
// single safe URL path segment (graphpath.Problem). The command parser
// refuses such ids earlier; this is defense in depth so that no id can
// steer a token-bearing request to another Graph path.
var ErrInvalidID = graphpath.ErrInvalidID

// endpoint puts a contract path (graphpath's, already escaped; its ids are
// unreserved characters, so escaped and plain are the same text) under the
// base URL. Path and RawPath are set consistently so that the request
// target on the wire is the base path, as configured, then the contract
// path.
func (c *Client) endpoint(path, query string) *url.URL {
	return &url.URL{Scheme: c.base.Scheme, Host: c.base.Host,
		Path: c.base.Path + path, RawPath: c.base.EscapedPath() + path, RawQuery: query}
}

func (c *Client) resumeURL(id string) (*url.URL, error) {
	p, err := graphpath.Resume(id)
	if err != nil {
		return nil, fmt.Errorf("graph: %s: %w", OpResume, err)
	}
	return c.endpoint(p, ""), nil
}

func (c *Client) assignmentRequestURL(id string) (*url.URL, error) {
	p, err := graphpath.AssignmentRequest(id)
	if err != nil {
		return nil, fmt.Errorf("graph: %s read: %w", OpResume, err)
	}
	return c.endpoint(p, graphpath.ReadQuery), nil
}

func (c *Client) roleRequestURL(privilegedAccessID, requestID string) (*url.URL, error) {
	p, err := graphpath.RoleRequest(privilegedAccessID, requestID)
	if err != nil {
		return nil, fmt.Errorf("graph: %s: %w", OpRoleRequestUpdate, err)
	}
	return c.endpoint(p, ""), nil
}
