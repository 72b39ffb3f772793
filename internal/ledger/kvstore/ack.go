package kvstore

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// decodeAck reads the server's answer to a write to stream: the message's
// sequence, or the error the server gave (a *jetstream.APIError, as
// jetstream.PublishMsg returns it).
//
// Nearly every answer is a plain ack, {"stream":"KV_X","seq":42}, perhaps
// with a domain: the server writes it from a fixed prefix (nats-server 2.9
// puts a space after each comma, 2.15 none). That is read by hand, byte for
// byte; any other shape (an error, a duplicate, a field this code does not
// know, other spacing) goes to encoding/json, which decides. A fuzz test
// checks that the two agree wherever the hand reading answers.
func decodeAck(data []byte, stream string) (uint64, error) {
	if seq, ok := plainAck(data, stream); ok {
		return seq, nil
	}
	return jsonAck(data, stream)
}

// jsonAck is decodeAck for any answer, with encoding/json.
func jsonAck(data []byte, stream string) (uint64, error) {
	var ack struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
		Seq    uint64              `json:"seq"`
	}
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, fmt.Errorf("%w: %w", jetstream.ErrInvalidJSAck, err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("nats: %w", ack.Error)
	}
	if ack.Stream != stream {
		return 0, fmt.Errorf("%w: ack of stream %q, written to %q", jetstream.ErrInvalidJSAck, ack.Stream, stream)
	}
	return ack.Seq, nil
}

// plainAck reads {"stream":"<stream>",[ ]["domain":"<d>",[ ]]"seq":<n>}
// exactly; ok is false for anything else.
func plainAck(data []byte, stream string) (seq uint64, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"stream":"`))
	if !ok {
		return 0, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(stream)); !ok {
		return 0, false
	}
	if rest, ok = next(rest); !ok {
		return 0, false
	}
	if r, found := bytes.CutPrefix(rest, []byte(`"domain":"`)); found {
		i := 0 // a domain is a plain token: printable ASCII, no quote, no escape
		for i < len(r) && r[i] > ' ' && r[i] < 0x7f && r[i] != '"' && r[i] != '\\' {
			i++
		}
		if rest, ok = next(r[i:]); !ok {
			return 0, false
		}
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`"seq":`)); !ok {
		return 0, false
	}
	n := 0
	for n < len(rest) && n < 19 && rest[n] >= '0' && rest[n] <= '9' { // 19 digits never overflow
		seq = seq*10 + uint64(rest[n]-'0')
		n++
	}
	if n == 0 || (n > 1 && rest[0] == '0') {
		return 0, false
	}
	if string(rest[n:]) != `}` {
		return 0, false
	}
	return seq, true
}

// next returns what follows the end of a string member: its closing quote,
// a comma and perhaps one space.
func next(b []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`",`))
	if ok && len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, ok
}
