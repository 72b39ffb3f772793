package dlq

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSHeader is how the JetStream backend stores e: the original message's
// own headers (without the broker's Nats-* ones, which would make the
// stream deduplicate or refuse it), then the docs/SPEC.md §4 headers.
func NATSHeader(e Entry) nats.Header {
	h := nats.Header{}
	for name, values := range e.Headers {
		if isBrokerHeader(name) || IsDeadLetterHeader(name) {
			continue
		}
		h[name] = append([]string(nil), values...)
	}
	for name, v := range e.Properties() {
		h.Set(name, v)
	}
	return h
}

// EntryFromMsg reads a dead letter stored by the JetStream backend: its
// docs/SPEC.md §4 headers (see EntryFromProperties), the original headers it kept,
// and the broker's headers as Extra.
func EntryFromMsg(data []byte, h nats.Header, seq uint64, stored time.Time) (Entry, error) {
	e, err := EntryFromProperties(data, h.Get, seq, stored)
	for name, values := range h {
		switch {
		case IsDeadLetterHeader(name):
		case isBrokerHeader(name):
			if e.Extra == nil {
				e.Extra = map[string][]string{}
			}
			e.Extra[name] = values
		default:
			if e.Headers == nil {
				e.Headers = map[string][]string{}
			}
			e.Headers[name] = values
		}
	}
	return e, err
}

// isBrokerHeader: NATS reserves the Nats- prefix for the server's headers
// (Nats-Msg-Id, Nats-Expected-*, and those of a direct get).
func isBrokerHeader(name string) bool {
	return len(name) >= 5 && strings.EqualFold(name[:5], "Nats-")
}
