package dlq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/natsembed/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// testCtx bounds every integration test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore starts an embedded JetStream server and opens the store on it
// with the default configuration.
func newStore(t *testing.T) (*dlq.Store, jetstream.JetStream) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs an embedded NATS server")
	}
	_, _, js := natstest.Start(t)
	s, err := dlq.New(testCtx(t), js, dlq.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

func rawStream(t *testing.T, js jetstream.JetStream, name string) jetstream.Stream {
	t.Helper()
	st, err := js.Stream(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestNewCreatesTheStreamForDeadLettersThatWaitAndMayBeLarge(t *testing.T) {
	_, js := newStore(t)
	info, err := rawStream(t, js, "GRAPHOPS_DLQ").Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if len(c.Subjects) != 1 || c.Subjects[0] != "graphops.dlq.>" {
		t.Errorf("subjects %v", c.Subjects)
	}
	if c.Storage != jetstream.FileStorage {
		t.Errorf("storage %v, want file", c.Storage)
	}
	if c.MaxAge != 0 {
		t.Errorf("max age %v, want none", c.MaxAge)
	}
	if c.MaxMsgSize != -1 && c.MaxMsgSize < 1<<20 {
		t.Errorf("max message size %d, want unlimited or at least 1 MiB", c.MaxMsgSize)
	}
	if c.Duplicates != 10*time.Minute {
		t.Errorf("duplicate window %v, want 10m", c.Duplicates)
	}
}

func TestNewWithAnExistingStream(t *testing.T) {
	tests := []struct {
		name       string
		subjects   []string
		maxMsgSize int32
		wantErr    bool
	}{
		{"uses a stream that covers the prefix", []string{"graphops.dlq.>"}, 0, false},
		{"uses a stream on a wider wildcard", []string{"other.x", "graphops.>"}, 0, false},
		{"lifts a message size limit that would refuse large commands", []string{"graphops.dlq.>"}, 1024, false},
		{"refuses a stream on other subjects, naming it", []string{"graphops.dlq.resume", "graphops.dlq.unknown"}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("integration test")
			}
			ctx := testCtx(t)
			_, _, js := natstest.Start(t)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OPS_DLQ", Subjects: tt.subjects, Storage: jetstream.MemoryStorage,
				MaxMsgSize: tt.maxMsgSize}); err != nil {
				t.Fatal(err)
			}
			s, err := dlq.New(ctx, js, dlq.Config{Stream: "OPS_DLQ"})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "OPS_DLQ") {
					t.Fatalf("error %v, want one naming the stream", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := rawStream(t, js, "OPS_DLQ").Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Config.Storage != jetstream.MemoryStorage || info.Config.MaxMsgSize != -1 {
				t.Errorf("stream %+v: want it kept but for an unlimited message size", info.Config)
			}
			e := fullEntry()
			e.Payload = make([]byte, 64<<10)
			if _, err := s.Put(ctx, e, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPutThenGet(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // 300 KiB
	tests := []struct {
		name        string
		entry       func() dlq.Entry
		wantSubject string
	}{
		{"keeps every header of a Graph rejection", fullEntry, "graphops.dlq.resume"},
		{"keeps a role request update without Graph headers", func() dlq.Entry {
			e := fullEntry()
			e.Type, e.Reason, e.OriginalSubject = "role_request_update", dlq.ReasonValidationFailed, "graphops.commands.role_request_update"
			e.GraphStatus, e.GraphCode, e.GraphRequestID, e.ClientRequestID = 0, "", "", ""
			e.Attempts, e.FirstAttempt, e.LastAttempt = 0, time.Time{}, time.Time{}
			return e
		}, "graphops.dlq.role_request_update"},
		{"keeps non-UTF-8 bytes of an unreadable message", func() dlq.Entry {
			return dlq.Entry{
				Reason: dlq.ReasonInvalidMessage, Description: "not JSON", Type: "unknown",
				OriginalSubject: "graphops.commands.x",
				Payload:         []byte{0xff, 0xfe, 0x00, '{', 0x80, '\r', '\n', 0xc3},
			}
		}, "graphops.dlq.unknown"},
		{"publishes an unknown type on the unknown subject", func() dlq.Entry {
			e := fullEntry()
			e.Type = ""
			return e
		}, "graphops.dlq.unknown"},
		{"keeps a 300 KiB payload", func() dlq.Entry {
			e := fullEntry()
			e.Reason, e.Payload = dlq.ReasonInvalidMessage, big
			return e
		}, "graphops.dlq.resume"},
	}
	s, js := newStore(t)
	raw := rawStream(t, js, "GRAPHOPS_DLQ")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			before := time.Now().Add(-time.Second)
			want := tt.entry()
			seq, err := s.Put(ctx, want, "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if got.Stored.Before(before) || got.Stored.After(time.Now().Add(time.Second)) {
				t.Errorf("stored %v, want about now", got.Stored)
			}
			want.Seq, want.Stored = seq, got.Stored
			if want.Type == "" {
				want.Type = "unknown"
			}
			assertEntry(t, got, want)
			if !bytes.Equal(got.Payload, want.Payload) {
				t.Fatal("payload not kept byte for byte")
			}

			m, err := raw.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != tt.wantSubject {
				t.Errorf("subject %s, want %s", m.Subject, tt.wantSubject)
			}
			_, hasGraph := m.Header[dlq.HeaderGraphStatus]
			if hasGraph != (want.GraphStatus != 0) {
				t.Errorf("Graph status header present = %v with GraphStatus %d", hasGraph, want.GraphStatus)
			}
			for name, v := range dlq.NATSHeader(want) {
				if m.Header.Get(name) != v[0] {
					t.Errorf("stored header %s = %q, want %q", name, m.Header.Get(name), v[0])
				}
			}
		})
	}
}

func TestPutTwiceWithTheSameDedupIDStoresOneDeadLetter(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	first, err := s.Put(ctx, fullEntry(), "graphops-dlq-GRAPHOPS-41")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Put(ctx, fullEntry(), "graphops-dlq-GRAPHOPS-41")
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Errorf("second Put returned %d, want the first's %d", second, first)
	}
	if third, err := s.Put(ctx, fullEntry(), "graphops-dlq-GRAPHOPS-42"); err != nil || third == first {
		t.Errorf("Put with another id: seq %d, err %v", third, err)
	}
	if n := countEntries(t, s); n != 2 {
		t.Errorf("%d dead letters, want 2", n)
	}
}

func TestGetAndDeleteOfAnAbsentDeadLetterReportNotFound(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	seq, err := s.Put(ctx, fullEntry(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, seq); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, seq); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, seq); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, 999); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("Get of a sequence never used: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, 999); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("Delete of a sequence never used: %v, want ErrNotFound", err)
	}
}

func TestListReturnsEveryDeadLetterInOrderAndLeavesNoConsumer(t *testing.T) {
	s, js := newStore(t)
	ctx := testCtx(t)
	const n = 300
	for i := range n {
		e := fullEntry()
		e.CommandID = fmt.Sprintf("cmd-%03d", i)
		if _, err := s.Put(ctx, e, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Gaps in the sequence must not end the listing.
	for _, seq := range []uint64{1, 150, 151} {
		if err := s.Delete(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	var got []dlq.Entry
	if err := s.List(ctx, func(e dlq.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n-3 {
		t.Fatalf("listed %d, want %d", len(got), n-3)
	}
	for i, e := range got {
		if i > 0 && e.Seq <= got[i-1].Seq {
			t.Fatalf("entry %d has seq %d after %d", i, e.Seq, got[i-1].Seq)
		}
		if want := fmt.Sprintf("cmd-%03d", e.Seq-1); e.CommandID != want {
			t.Fatalf("seq %d has command id %s, want %s", e.Seq, e.CommandID, want)
		}
		if e.Reason != dlq.ReasonGraphRejected || string(e.Payload) != string(fullEntry().Payload) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}

	info, err := rawStream(t, js, "GRAPHOPS_DLQ").Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on the stream", info.State.Consumers)
	}
	names := rawStream(t, js, "GRAPHOPS_DLQ").ConsumerNames(ctx)
	for name := range names.Name() {
		t.Errorf("consumer %s left on the stream", name)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestListStopsAtTheCallbacksError(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	for range 3 {
		if _, err := s.Put(ctx, fullEntry(), ""); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(ctx, func(dlq.Entry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List returned %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func TestPurgeRemovesEveryDeadLetterAndCountsThem(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	for range 5 {
		if _, err := s.Put(ctx, fullEntry(), ""); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := s.Purge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if removed != 5 {
		t.Errorf("removed %d, want 5", removed)
	}
	if n := countEntries(t, s); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

func countEntries(t *testing.T, s *dlq.Store) int {
	t.Helper()
	n := 0
	if err := s.List(testCtx(t), func(dlq.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
