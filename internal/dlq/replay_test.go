package dlq_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/graphops/worker/internal/dlq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// newReplayStore is newStore plus the command stream GRAPHOPS, and a
// publisher to it.
func newReplayStore(t *testing.T) (*dlq.Store, jetstream.Stream, dlq.Publisher) {
	t.Helper()
	s, js := newStore(t)
	commands, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{
		Name: "GRAPHOPS", Subjects: []string{"graphops.commands.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, commands, dlq.JetStreamPublisher(js, jetstream.WithExpectStream("GRAPHOPS"))
}

// putCommand stores a dead letter of a command originally on subject.
func putCommand(t *testing.T, s *dlq.Store, subject string, payload []byte) uint64 {
	t.Helper()
	e := fullEntry()
	e.OriginalSubject, e.Payload = subject, payload
	seq, err := s.Put(testCtx(t), e, "")
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// commandMsgs returns every message of the command stream.
func commandMsgs(t *testing.T, commands jetstream.Stream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := testCtx(t)
	info, err := commands.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := commands.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestReplayRepublishesTheOriginalBytesThenDeletesTheDeadLetter(t *testing.T) {
	s, commands, publish := newReplayStore(t)
	ctx := testCtx(t)
	resume := []byte("{\"specversion\":\"1.0\",\"id\":\"a\"}\n\xff")
	role := []byte(`{"specversion":"1.0","id":"b"}`)
	seqResume := putCommand(t, s, "graphops.commands.resume", resume)
	seqKept := putCommand(t, s, "graphops.commands.resume", []byte("kept"))
	seqRole := putCommand(t, s, "graphops.commands.role_request_update", role)

	replayed, err := s.Replay(ctx, []uint64{seqResume, seqRole}, publish)
	if err != nil {
		t.Fatal(err)
	}
	if len(replayed) != 2 || replayed[0] != seqResume || replayed[1] != seqRole {
		t.Errorf("replayed %v, want [%d %d]", replayed, seqResume, seqRole)
	}

	msgs := commandMsgs(t, commands)
	if len(msgs) != 2 {
		t.Fatalf("%d commands republished, want 2", len(msgs))
	}
	for i, want := range []struct {
		seq     uint64
		subject string
		data    []byte
	}{{seqResume, "graphops.commands.resume", resume}, {seqRole, "graphops.commands.role_request_update", role}} {
		m := msgs[i]
		if m.Subject != want.subject || !bytes.Equal(m.Data, want.data) {
			t.Errorf("republished %s %q, want %s %q", m.Subject, m.Data, want.subject, want.data)
		}
		if got := m.Header.Get(dlq.HeaderReplay); got != strconv.FormatUint(want.seq, 10) {
			t.Errorf("%s = %q, want %d", dlq.HeaderReplay, got, want.seq)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != "graphops-replay-GRAPHOPS_DLQ-"+strconv.FormatUint(want.seq, 10) {
			t.Errorf("Nats-Msg-Id = %q", got)
		}
		if _, err := s.Get(ctx, want.seq); !errors.Is(err, dlq.ErrNotFound) {
			t.Errorf("dead letter %d still there after its replay (err %v)", want.seq, err)
		}
	}
	if _, err := s.Get(ctx, seqKept); err != nil {
		t.Errorf("dead letter not asked for: %v", err)
	}
}

func TestReplayKeepsWhatItCouldNotReplayAndReplaysTheRest(t *testing.T) {
	tests := []struct {
		name    string
		subject string // original subject of the dead letter that fails
		publish func(dlq.Publisher) dlq.Publisher
		wantErr error
		absent  bool // the failing id is not a dead letter at all
	}{
		{
			name:    "a failed publish keeps the dead letter",
			subject: "graphops.commands.role_request_update",
			publish: func(next dlq.Publisher) dlq.Publisher {
				return func(ctx context.Context, subject string, data []byte, h nats.Header) error {
					if subject == "graphops.commands.role_request_update" {
						return errors.New("nats: timeout")
					}
					return next(ctx, subject, data, h)
				}
			},
			wantErr: dlq.ErrPublishFailed,
		},
		{name: "an id that is not a dead letter is reported", absent: true, wantErr: dlq.ErrNotFound},
		{name: "a dead letter without an original subject is not replayed", subject: "", wantErr: dlq.ErrNotReplayable},
		{name: "a dead letter from outside the command subjects is not replayed", subject: "orders.created", wantErr: dlq.ErrNotReplayable},
		{name: "a dead letter from a dead-letter subject is not replayed", subject: "graphops.dlq.resume", wantErr: dlq.ErrNotReplayable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, commands, publish := newReplayStore(t)
			ctx := testCtx(t)
			first := putCommand(t, s, "graphops.commands.resume", []byte("first"))
			bad := uint64(1000)
			if !tt.absent {
				bad = putCommand(t, s, tt.subject, []byte("bad"))
			}
			last := putCommand(t, s, "graphops.commands.resume", []byte("last"))
			if tt.publish != nil {
				publish = tt.publish(publish)
			}

			replayed, err := s.Replay(ctx, []uint64{first, bad, last}, publish)
			var rerr *dlq.ReplayError
			if !errors.As(err, &rerr) {
				t.Fatalf("error %v, want a *ReplayError", err)
			}
			if len(rerr.Failed) != 1 || !errors.Is(rerr.Failed[bad], tt.wantErr) {
				t.Errorf("failed %v, want only %d with %v", rerr.Failed, bad, tt.wantErr)
			}
			if want := "dead letter " + strconv.FormatUint(bad, 10) + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not name %d", err, bad)
			}
			if len(replayed) != 2 || replayed[0] != first || replayed[1] != last {
				t.Errorf("replayed %v, want [%d %d]", replayed, first, last)
			}
			if n := len(commandMsgs(t, commands)); n != 2 {
				t.Errorf("%d commands republished, want 2", n)
			}
			if !tt.absent {
				if _, err := s.Get(ctx, bad); err != nil {
					t.Errorf("the dead letter that failed is gone: %v", err)
				}
			}
		})
	}
}

func TestReplayRetriedAfterAFailedDeleteDoesNotRepublishTwice(t *testing.T) {
	s, commands, publish := newReplayStore(t)
	ctx := testCtx(t)
	seq := putCommand(t, s, "graphops.commands.resume", []byte(`{"id":"once"}`))

	restore := dlq.FailDeletes(s, errors.New("nats: timeout"))
	_, err := s.Replay(ctx, []uint64{seq}, publish)
	restore()
	if !errors.Is(err, dlq.ErrDeleteFailed) {
		t.Fatalf("first replay: %v, want ErrDeleteFailed", err)
	}
	if _, err := s.Get(ctx, seq); err != nil {
		t.Fatalf("dead letter gone after a failed delete: %v", err)
	}

	replayed, err := s.Replay(ctx, []uint64{seq}, publish)
	if err != nil || len(replayed) != 1 {
		t.Fatalf("second replay: %v %v", replayed, err)
	}
	if n := len(commandMsgs(t, commands)); n != 1 {
		t.Errorf("%d copies in the command stream, want 1", n)
	}
	if _, err := s.Get(ctx, seq); !errors.Is(err, dlq.ErrNotFound) {
		t.Errorf("dead letter still there after the second replay: %v", err)
	}
}

func TestReplayAllLeavesDeadLettersStoredWhileItRuns(t *testing.T) {
	s, commands, publish := newReplayStore(t)
	ctx := testCtx(t)
	var before []uint64
	for _, p := range []string{"a", "b", "c"} {
		before = append(before, putCommand(t, s, "graphops.commands.resume", []byte(p)))
	}
	var during uint64
	failAgain := func(ctx context.Context, subject string, data []byte, h nats.Header) error {
		if during == 0 {
			// The replayed command is dead-lettered again at once.
			during = putCommand(t, s, subject, data)
		}
		return publish(ctx, subject, data, h)
	}

	replayed, err := s.ReplayAll(ctx, failAgain)
	if err != nil {
		t.Fatal(err)
	}
	if len(replayed) != 3 || replayed[0] != before[0] || replayed[2] != before[2] {
		t.Errorf("replayed %v, want %v", replayed, before)
	}
	if _, err := s.Get(ctx, during); err != nil {
		t.Errorf("the dead letter stored during the replay: %v", err)
	}
	if n := len(commandMsgs(t, commands)); n != 3 {
		t.Errorf("%d commands republished, want 3", n)
	}
}

func TestADeadLetterKeepsTheOriginalHeadersAndReplayRepublishesThem(t *testing.T) {
	s, commands, publish := newReplayStore(t)
	ctx := testCtx(t)
	e := fullEntry()
	e.Payload = []byte(`{"accessPackageAssignmentRequestId":"x"}`)
	e.Headers = map[string][]string{
		"ce-specversion": {"1.0"}, "ce-id": {"a%20b"}, "ce-source": {"urn:s"}, "ce-type": {"graphops.x"},
		// The broker's and the dead-letter headers of the original are
		// not the producer's: neither is kept as an original header.
		"Nats-Msg-Id": {"producer-1"}, dlq.HeaderReplay: {"4"}, dlq.HeaderReason: {"old"},
	}
	seq, err := s.Put(ctx, e, "dedup-7")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	wantHeaders := map[string][]string{"ce-specversion": {"1.0"}, "ce-id": {"a%20b"}, "ce-source": {"urn:s"}, "ce-type": {"graphops.x"}}
	if len(got.Headers) != len(wantHeaders) || got.Reason != e.Reason {
		t.Fatalf("stored originals %v (reason %s), want %v", got.Headers, got.Reason, wantHeaders)
	}
	for k, v := range wantHeaders {
		if g := got.Headers[k]; len(g) != 1 || g[0] != v[0] {
			t.Errorf("original %s = %v, want %v", k, g, v)
		}
	}
	if got.Extra["Nats-Msg-Id"] == nil || got.Extra["Nats-Msg-Id"][0] != "dedup-7" {
		t.Errorf("extra %v, want the dead letter's own Nats-Msg-Id", got.Extra)
	}

	if _, err := s.Replay(ctx, []uint64{seq}, publish); err != nil {
		t.Fatal(err)
	}
	msgs := commandMsgs(t, commands)
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, e.Payload) {
		t.Fatalf("republished %d messages", len(msgs))
	}
	h := msgs[0].Header
	for k, v := range wantHeaders {
		if h.Get(k) != v[0] {
			t.Errorf("replayed header %s = %q, want %q", k, h.Get(k), v[0])
		}
	}
	if h.Get(dlq.HeaderReason) != "" || h.Get(dlq.HeaderReplay) != strconv.FormatUint(seq, 10) {
		t.Errorf("replayed headers %v: want Graphops-Replay %d and no dead-letter header", h, seq)
	}
}
