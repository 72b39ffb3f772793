package graphops

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// ErrInvalidHeader is returned, before any network I/O, for a caller header
// whose name or value could not be sent (net/http would refuse it, and that
// refusal would otherwise look like a retryable transport failure).
var ErrInvalidHeader = errors.New("invalid request header")

// reservedHeader reports whether name is one of the client's own headers,
// which callers cannot set or override. The first three are the contract's
// (docs/SPEC.md §2); the rest keep caller headers from changing framing, content
// negotiation or identification.
func reservedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "content-type", "client-request-id",
		"accept", "user-agent",
		"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "trailer",
		"keep-alive", "proxy-authorization", "proxy-connection", "content-encoding":
		return true
	}
	return false
}

// checkHeaders refuses names that are not HTTP tokens and values with
// control characters (header injection).
func checkHeaders(h map[string]string) error {
	for name, v := range h {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("%w: name %q", ErrInvalidHeader, name)
		}
		if !validHeaderValue(v) {
			return fmt.Errorf("%w: value of %s contains control characters", ErrInvalidHeader, http.CanonicalHeaderKey(name))
		}
	}
	return nil
}

// validHeaderValue allows visible characters, spaces, tabs and non-ASCII
// bytes (obs-text), as RFC 9110 does, and so as net/http sends them.
func validHeaderValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }
