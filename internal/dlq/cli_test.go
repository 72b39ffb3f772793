package dlq_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/graphops/worker/internal/dlq"
)

func TestCmdListPrintsATable(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	e := fullEntry()
	e.Description = strings.Repeat("Graph said no. ", 10)
	seq, err := s.Put(ctx, e, "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dlq.CmdList(ctx, s, &out, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("output:\n%s\nwant a header and one row", out.String())
	}
	header := strings.Fields(lines[0])
	wantHeader := []string{"SEQ", "STORED", "REASON", "TYPE", "COMMAND-ID", "REQUEST-ID", "ATTEMPTS", "GRAPH-STATUS", "DESCRIPTION"}
	if strings.Join(header, " ") != strings.Join(wantHeader, " ") {
		t.Errorf("header %q, want %q", header, wantHeader)
	}
	row := strings.Fields(lines[1])
	if len(row) < 9 {
		t.Fatalf("row %q", lines[1])
	}
	wantRow := []string{"1", "", "graph_rejected", "resume", e.CommandID, e.RequestID, "3", "400"}
	for i, want := range wantRow {
		if want != "" && row[i] != want {
			t.Errorf("column %s = %q, want %q", wantHeader[i], row[i], want)
		}
	}
	if seq != 1 {
		t.Fatalf("seq %d", seq)
	}
	desc := strings.Join(row[8:], " ")
	if !strings.HasPrefix(desc, "Graph said no.") || !strings.HasSuffix(desc, "…") || utf8.RuneCountInString(desc) > 60 {
		t.Errorf("description column %q, want the start of the description, shortened", desc)
	}
}

func TestCmdListJSONLines(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	text := fullEntry()
	binary := dlq.Entry{Reason: dlq.ReasonInvalidMessage, Type: "unknown", Payload: []byte{0xff, 0x00, 'x'}}
	for _, e := range []dlq.Entry{text, binary} {
		if _, err := s.Put(ctx, e, ""); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := dlq.CmdList(ctx, s, &out, true); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2", len(got))
	}
	want := map[string]any{
		"seq": 1.0, "reason": "graph_rejected", "description": text.Description, "type": "resume",
		"command_id": text.CommandID, "command_source": text.CommandSource, "request_id": text.RequestID,
		"attempts": 3.0, "first_attempt": "2026-11-23T10:00:01Z", "last_attempt": "2026-11-23T10:02:30Z",
		"original_subject": text.OriginalSubject, "graph_status": 400.0, "graph_code": "BadRequest",
		"graph_request_id": text.GraphRequestID, "client_request_id": text.ClientRequestID,
		"payload": string(text.Payload), "payload_base64": base64.StdEncoding.EncodeToString(text.Payload),
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[0][k], v)
		}
	}
	if _, ok := got[0]["stored"].(string); !ok {
		t.Errorf("stored = %#v, want a time", got[0]["stored"])
	}
	b, _ := got[1]["payload_base64"].(string)
	if raw, err := base64.StdEncoding.DecodeString(b); err != nil || !bytes.Equal(raw, binary.Payload) {
		t.Errorf("payload_base64 %q does not give back the bytes", b)
	}
	if p, ok := got[1]["payload"]; !ok || p != nil {
		t.Errorf("payload of a non-UTF-8 message = %#v, want null", p)
	}
	if got[1]["first_attempt"] != nil || got[1]["graph_status"] != 0.0 {
		t.Errorf("never-attempted entry: %v", got[1])
	}
}

func TestCmdShowPrintsEveryHeaderThenThePayloadVerbatim(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	e := fullEntry()
	e.Payload = []byte("{\"a\":1}\n\xfe")
	seq, err := s.Put(ctx, e, "dedup-1")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dlq.CmdShow(ctx, s.Backend(nil), &out, seq); err != nil {
		t.Fatal(err)
	}
	head, payload, ok := bytes.Cut(out.Bytes(), []byte("\n\n"))
	if !ok || !bytes.Equal(payload, e.Payload) {
		t.Fatalf("output %q: want the headers, a blank line and the payload", out.String())
	}
	head = append(head, '\n')
	pos := -1
	for name, v := range dlq.NATSHeader(e) {
		line := name + ": " + v[0] + "\n"
		if !bytes.Contains(head, []byte(line)) {
			t.Errorf("missing %q", line)
		}
	}
	for _, name := range []string{dlq.HeaderReason, dlq.HeaderType, dlq.HeaderAttempts, dlq.HeaderClientRequestID} {
		i := bytes.Index(head, []byte(name+":"))
		if i < pos {
			t.Errorf("%s out of the SPEC order", name)
		}
		pos = i
	}
	for _, line := range []string{"Seq: 1\n", "Subject: graphops.dlq.resume\n", "Nats-Msg-Id: dedup-1\n"} {
		if !bytes.Contains(head, []byte(line)) {
			t.Errorf("missing %q", line)
		}
	}

	if err := dlq.CmdShow(ctx, s.Backend(nil), io.Discard, 77); !errors.Is(err, dlq.ErrNotFound) || !strings.Contains(err.Error(), "77") {
		t.Errorf("show of an absent id: %v, want not found naming 77", err)
	}
}

func TestCmdReplay(t *testing.T) {
	s, _, publish := newReplayStore(t)
	ctx := testCtx(t)
	ok := putCommand(t, s, "graphops.commands.resume", []byte("ok"))
	var out bytes.Buffer
	err := dlq.CmdReplay(ctx, s.Backend(publish), &out, []uint64{ok, 99}, false)
	if err == nil || !strings.Contains(err.Error(), "dead letter 99: not found") {
		t.Errorf("error %v, want one naming 99", err)
	}
	if out.String() != "replayed 1 to graphops.commands.resume\n" {
		t.Errorf("output %q", out.String())
	}
	if err := dlq.CmdReplay(ctx, s.Backend(publish), io.Discard, []uint64{1}, true); err == nil {
		t.Error("ids with --all: no error")
	}
	if err := dlq.CmdReplay(ctx, s.Backend(publish), io.Discard, nil, false); err == nil {
		t.Error("neither ids nor --all: no error")
	}
}

// failingReader fails the test that reads it.
type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("purge --yes read its input")
	return 0, io.EOF
}

func TestCmdPurge(t *testing.T) {
	tests := []struct {
		name        string
		input       string
		yes         bool
		wantDeleted bool
	}{
		{"keeps everything on n", "n\n", false, false},
		{"keeps everything on an empty answer", "\n", false, false},
		{"keeps everything at end of input", "", false, false},
		{"keeps everything on another word", "yeah\n", false, false},
		{"deletes on y", "y\n", false, true},
		{"deletes on YES", "YES\n", false, true},
		{"deletes with --yes without reading input", "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			ctx := testCtx(t)
			for range 3 {
				if _, err := s.Put(ctx, fullEntry(), ""); err != nil {
					t.Fatal(err)
				}
			}
			var in io.Reader = strings.NewReader(tt.input)
			if tt.yes {
				in = failingReader{t}
			}
			var out bytes.Buffer
			err := dlq.CmdPurge(ctx, s.Backend(nil), in, &out, tt.yes)
			left := countEntries(t, s)
			if tt.wantDeleted {
				if err != nil || left != 0 {
					t.Fatalf("err %v, %d left", err, left)
				}
				if !strings.Contains(out.String(), "Deleted 3 dead letters") {
					t.Errorf("output %q", out.String())
				}
			} else {
				if !errors.Is(err, dlq.ErrPurgeCancelled) || err.Error() != "purge cancelled" || left != 3 {
					t.Fatalf("err %v, %d left; want purge cancelled and 3 left", err, left)
				}
			}
			if !tt.yes && !strings.HasPrefix(out.String(), "Delete 3 dead letters from GRAPHOPS_DLQ? [y/N] ") {
				t.Errorf("prompt %q", out.String())
			}
		})
	}
}
