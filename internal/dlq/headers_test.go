package dlq_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/graphops/worker/internal/dlq"
	"github.com/nats-io/nats.go"
)

func fullEntry() dlq.Entry {
	return dlq.Entry{
		Reason:          dlq.ReasonGraphRejected,
		Description:     "Graph answered 400 BadRequest: the request is not waiting for a callback",
		Type:            "resume",
		CommandID:       "7f3c1a52-2b7e-4c43-9d1e-0c6a6f1d2e11",
		CommandSource:   "urn:approvals:sod-check",
		RequestID:       "0e60f18c-b2a0-4887-9da8-da2e30a39d99",
		Attempts:        3,
		FirstAttempt:    time.Date(2026, 11, 23, 10, 0, 1, 0, time.UTC),
		LastAttempt:     time.Date(2026, 11, 23, 10, 2, 30, 0, time.UTC),
		OriginalSubject: "graphops.commands.resume",
		GraphStatus:     400,
		GraphCode:       "BadRequest",
		GraphRequestID:  "b1c2d3e4-0000-4000-8000-000000000001",
		ClientRequestID: "c1c2d3e4-0000-4000-8000-000000000002",
		Payload:         []byte(`{"specversion":"1.0"}`),
	}
}

func TestHeaderThenEntryFromMsgGivesBackEveryField(t *testing.T) {
	want := fullEntry()
	h := dlq.NATSHeader(want)
	got, err := dlq.EntryFromMsg(want.Payload, h, 12, time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	want.Seq, want.Stored = 12, time.Unix(100, 0)
	assertEntry(t, got, want)
	if v := h.Get(dlq.HeaderFirstAttempt); v != "2026-11-23T10:00:01Z" {
		t.Errorf("%s = %q, want RFC 3339 in UTC", dlq.HeaderFirstAttempt, v)
	}
	if v := h.Get(dlq.HeaderAttempts); v != "3" {
		t.Errorf("%s = %q, want 3", dlq.HeaderAttempts, v)
	}
}

func TestHeader(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		name  string
		entry func() dlq.Entry
		check func(t *testing.T, h nats.Header)
	}{
		{"has no Graph headers when Graph was never called", func() dlq.Entry {
			e := fullEntry()
			e.GraphStatus, e.GraphCode, e.GraphRequestID, e.ClientRequestID = 0, "", "", ""
			return e
		}, func(t *testing.T, h nats.Header) {
			for _, name := range []string{dlq.HeaderGraphStatus, dlq.HeaderGraphCode, dlq.HeaderGraphRequestID, dlq.HeaderClientRequestID} {
				if _, ok := h[name]; ok {
					t.Errorf("header %s present", name)
				}
			}
			if h.Get(dlq.HeaderReason) != "graph_rejected" {
				t.Errorf("reason = %q", h.Get(dlq.HeaderReason))
			}
		}},
		{"names the last call sent when Graph never answered it", func() dlq.Entry {
			e := fullEntry()
			e.GraphStatus, e.GraphCode, e.GraphRequestID = 0, "", ""
			return e
		}, func(t *testing.T, h nats.Header) {
			for _, name := range []string{dlq.HeaderGraphStatus, dlq.HeaderGraphCode, dlq.HeaderGraphRequestID} {
				if _, ok := h[name]; ok {
					t.Errorf("header %s present", name)
				}
			}
			if got := h.Get(dlq.HeaderClientRequestID); got != fullEntry().ClientRequestID {
				t.Errorf("%s = %q, want the unanswered call's %q", dlq.HeaderClientRequestID, got, fullEntry().ClientRequestID)
			}
		}},
		{"keeps a description on one line", func() dlq.Entry {
			e := fullEntry()
			e.Description = "line one\r\nline two\nline\tthree"
			return e
		}, func(t *testing.T, h nats.Header) {
			if got := h.Get(dlq.HeaderDescription); got != "line one  line two line three" {
				t.Errorf("description = %q", got)
			}
		}},
		{"truncates a long description to 1 KiB of valid UTF-8", func() dlq.Entry {
			e := fullEntry()
			e.Description = strings.Repeat("é", 3000)
			return e
		}, func(t *testing.T, h nats.Header) {
			got := h.Get(dlq.HeaderDescription)
			if len(got) > 1024 || len(got) < 1000 || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
				t.Errorf("description of %d bytes (valid UTF-8: %v)", len(got), utf8.ValidString(got))
			}
		}},
		{"names an unknown type unknown", func() dlq.Entry {
			e := fullEntry()
			e.Type = "graphops.something.else"
			return e
		}, func(t *testing.T, h nats.Header) {
			if got := h.Get(dlq.HeaderType); got != "unknown" {
				t.Errorf("type = %q", got)
			}
		}},
		{"writes times in UTC to the second", func() dlq.Entry {
			e := fullEntry()
			e.LastAttempt = time.Date(2026, 11, 23, 11, 2, 30, 999_000_000, cet)
			return e
		}, func(t *testing.T, h nats.Header) {
			if got := h.Get(dlq.HeaderLastAttempt); got != "2026-11-23T10:02:30Z" {
				t.Errorf("last attempt = %q", got)
			}
		}},
		{"leaves times empty when never attempted", func() dlq.Entry {
			e := fullEntry()
			e.FirstAttempt, e.LastAttempt, e.Attempts = time.Time{}, time.Time{}, 0
			return e
		}, func(t *testing.T, h nats.Header) {
			if h.Get(dlq.HeaderFirstAttempt) != "" || h.Get(dlq.HeaderLastAttempt) != "" || h.Get(dlq.HeaderAttempts) != "0" {
				t.Errorf("headers %v", h)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, dlq.NATSHeader(tt.entry())) })
	}
}

func TestEntryFromMsgReportsABadHeaderAndKeepsTheRest(t *testing.T) {
	h := dlq.NATSHeader(fullEntry())
	h.Set(dlq.HeaderAttempts, "three")
	e, err := dlq.EntryFromMsg([]byte("payload"), h, 7, time.Time{})
	if err == nil || !strings.Contains(err.Error(), dlq.HeaderAttempts) {
		t.Fatalf("error %v, want one naming %s", err, dlq.HeaderAttempts)
	}
	if e.Seq != 7 || string(e.Payload) != "payload" || e.CommandID != fullEntry().CommandID {
		t.Errorf("entry %+v, want the readable fields", e)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     dlq.Config
		wantErr string // a field name, "" for none
	}{
		{"fills in the defaults", dlq.Config{}, ""},
		{"refuses a stream name with a dot", dlq.Config{Stream: "GRAPHOPS.DLQ"}, "Stream"},
		{"refuses a subject prefix with a wildcard", dlq.Config{SubjectPrefix: "graphops.*"}, "SubjectPrefix"},
		{"refuses a subject prefix with an empty token", dlq.Config{SubjectPrefix: "graphops..dlq"}, "SubjectPrefix"},
		{"refuses negative replicas", dlq.Config{Replicas: -1}, "Replicas"},
		{"refuses six replicas", dlq.Config{Replicas: 6}, "Replicas"},
		{"refuses a command subject with a space", dlq.Config{CommandSubjects: []string{"graphops commands"}}, "CommandSubjects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.Stream != "GRAPHOPS_DLQ" || tt.cfg.SubjectPrefix != "graphops.dlq" || tt.cfg.Replicas != 1 ||
					len(tt.cfg.CommandSubjects) != 1 || tt.cfg.CommandSubjects[0] != "graphops.commands.>" {
					t.Errorf("defaults not applied: %+v", tt.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestParseSeqs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []uint64
		wantBad string
	}{
		{"parses sequence numbers in order", []string{"12", "3", "400"}, []uint64{12, 3, 400}, ""},
		{"refuses zero", []string{"1", "0"}, nil, `"0"`},
		{"refuses a negative number", []string{"-4"}, nil, `"-4"`},
		{"refuses a word", []string{"12", "all"}, nil, `"all"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dlq.ParseSeqs(tt.args)
			if tt.wantBad != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantBad) {
					t.Fatalf("error %v, want one naming %s", err, tt.wantBad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestReplayErrorListsFailuresInSequenceOrder(t *testing.T) {
	err := &dlq.ReplayError{Failed: map[uint64]error{
		14: dlq.ErrNotFound,
		12: errors.New("publish failed: nats: timeout"),
	}}
	want := "dead letter 12: publish failed: nats: timeout; dead letter 14: not found"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, dlq.ErrNotFound) {
		t.Error("errors.Is(err, ErrNotFound) = false")
	}
}

// assertEntry compares every field of two entries, times with Equal.
func assertEntry(t *testing.T, got, want dlq.Entry) {
	t.Helper()
	if !got.Stored.Equal(want.Stored) || !got.FirstAttempt.Equal(want.FirstAttempt) || !got.LastAttempt.Equal(want.LastAttempt) {
		t.Errorf("times: got stored %v first %v last %v, want %v %v %v",
			got.Stored, got.FirstAttempt, got.LastAttempt, want.Stored, want.FirstAttempt, want.LastAttempt)
	}
	if string(got.Payload) != string(want.Payload) {
		t.Errorf("payload differs: got %d bytes, want %d", len(got.Payload), len(want.Payload))
	}
	got.Stored, got.FirstAttempt, got.LastAttempt, got.Payload = want.Stored, want.FirstAttempt, want.LastAttempt, want.Payload
	if got.Seq != want.Seq || got.Reason != want.Reason || got.Description != want.Description ||
		got.Type != want.Type || got.CommandID != want.CommandID || got.CommandSource != want.CommandSource ||
		got.RequestID != want.RequestID || got.Attempts != want.Attempts || got.OriginalSubject != want.OriginalSubject ||
		got.GraphStatus != want.GraphStatus || got.GraphCode != want.GraphCode ||
		got.GraphRequestID != want.GraphRequestID || got.ClientRequestID != want.ClientRequestID {
		t.Errorf("entry\n got %+v\nwant %+v", got, want)
	}
}
