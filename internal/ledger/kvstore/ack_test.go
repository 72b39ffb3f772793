package kvstore

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestDecodeAck(t *testing.T) {
	const stream = "KV_GRAPHOPS_LEDGER"
	cases := []struct {
		name     string
		ack      string
		want     uint64
		wantErr  error // nil: no error
		wrongSeq bool  // the error is the compare-and-swap refusal
	}{
		{"a plain ack", `{"stream":"KV_GRAPHOPS_LEDGER","seq":42}`, 42, nil, false},
		{"an ack with a domain", `{"stream":"KV_GRAPHOPS_LEDGER","domain":"hub","seq":7}`, 7, nil, false},
		{"an ack of nats-server 2.9", `{"stream":"KV_GRAPHOPS_LEDGER", "seq":1}`, 1, nil, false},
		{"an ack of nats-server 2.9 with a domain", `{"stream":"KV_GRAPHOPS_LEDGER", "domain":"hub", "seq":3}`, 3, nil, false},
		{"two spaces", `{"stream":"KV_GRAPHOPS_LEDGER",  "seq":4}`, 4, nil, false},
		{"the largest sequence", `{"stream":"KV_GRAPHOPS_LEDGER","seq":18446744073709551615}`, 1<<64 - 1, nil, false},
		{"a duplicate, as the server spaces it", `{"stream":"KV_GRAPHOPS_LEDGER","seq":9,"duplicate": true}`, 9, nil, false},
		{"a batch commit", `{"stream":"KV_GRAPHOPS_LEDGER","seq":12,"batch":"b1","count":3}`, 12, nil, false},
		{"fields in another order", `{"seq":5,"stream":"KV_GRAPHOPS_LEDGER"}`, 5, nil, false},
		{"a refused compare-and-swap",
			`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 41"},"stream":"KV_GRAPHOPS_LEDGER","seq":0}`,
			0, &jetstream.APIError{}, true},
		{"an error the server gives before it knows the stream",
			`{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`,
			0, &jetstream.APIError{}, false},
		{"the ack of another stream", `{"stream":"KV_OTHER","seq":42}`, 0, jetstream.ErrInvalidJSAck, false},
		{"a stream whose name only starts the same", `{"stream":"KV_GRAPHOPS_LEDGER2","seq":42}`, 0, jetstream.ErrInvalidJSAck, false},
		{"no stream", `{"seq":3}`, 0, jetstream.ErrInvalidJSAck, false},
		{"a sequence beyond 64 bits", `{"stream":"KV_GRAPHOPS_LEDGER","seq":18446744073709551616}`, 0, jetstream.ErrInvalidJSAck, false},
		{"a sequence with a leading zero", `{"stream":"KV_GRAPHOPS_LEDGER","seq":042}`, 0, jetstream.ErrInvalidJSAck, false},
		{"a negative sequence", `{"stream":"KV_GRAPHOPS_LEDGER","seq":-1}`, 0, jetstream.ErrInvalidJSAck, false},
		{"a cut-off ack", `{"stream":"KV_GRAPHOPS_LEDGER","seq":42`, 0, jetstream.ErrInvalidJSAck, false},
		{"trailing bytes", `{"stream":"KV_GRAPHOPS_LEDGER","seq":42}x`, 0, jetstream.ErrInvalidJSAck, false},
		{"not JSON", `+OK`, 0, jetstream.ErrInvalidJSAck, false},
		{"empty", ``, 0, jetstream.ErrInvalidJSAck, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeAck([]byte(c.ack), stream)
			switch want := c.wantErr.(type) {
			case nil:
				if err != nil || got != c.want {
					t.Fatalf("decodeAck = %d, %v; want %d", got, err, c.want)
				}
			case *jetstream.APIError:
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("decodeAck = %d, %v; want a *jetstream.APIError", got, err)
				}
				if isWrongLastSeq(err) != c.wrongSeq {
					t.Fatalf("isWrongLastSeq(%v) = %v, want %v", err, !c.wrongSeq, c.wrongSeq)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("decodeAck = %d, %v; want %v", got, err, want)
				}
			}
		})
	}
}

// FuzzDecodeAck checks the hand reading of plain acks against
// encoding/json: wherever plainAck answers, jsonAck gives the same sequence.
func FuzzDecodeAck(f *testing.F) {
	for _, seed := range []string{
		`{"stream":"KV_b","seq":42}`,
		`{"stream":"KV_b","domain":"hub","seq":7}`,
		`{"stream":"KV_b", "domain":"hub", "seq":7}`,
		`{"stream":"KV_b","domain":"h\"ub","seq":7}`,
		`{"stream":"KV_b","seq":9,"duplicate": true}`,
		`{"stream":"KV_b","seq":042}`,
		`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 41"},"stream":"KV_b","seq":0}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seq, ok := plainAck(data, "KV_b")
		if !ok {
			return
		}
		want, err := jsonAck(data, "KV_b")
		if err != nil || want != seq {
			t.Fatalf("plainAck(%q) = %d; encoding/json says %d, %v", data, seq, want, err)
		}
	})
}

// The server's own acks take the hand reading, so that the fast path is the
// one taken (the fuzz test only checks that it agrees when taken).
func TestPlainAcksOfTheServersWeRunOnAreReadByHand(t *testing.T) {
	for _, ack := range []string{
		`{"stream":"KV_b","seq":42}`,                  // nats-server 2.15
		`{"stream":"KV_b","domain":"hub","seq":42}`,   // 2.15 in a domain
		`{"stream":"KV_b", "seq":42}`,                 // 2.9
		`{"stream":"KV_b", "domain":"hub", "seq":42}`, // 2.9 in a domain
	} {
		if seq, ok := plainAck([]byte(ack), "KV_b"); !ok || seq != 42 {
			t.Errorf("plainAck(%s) = %d, %v; want 42, true", ack, seq, ok)
		}
	}
}
