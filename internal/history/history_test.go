package history_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/history"
	"github.com/graphops/worker/internal/ledger"
	"github.com/graphops/worker/internal/ledger/kvstore"
	"github.com/graphops/worker/internal/ledger/redisstore"
	"github.com/graphops/worker/internal/ledger/storetest"
	"github.com/graphops/worker/internal/natsembed/natstest"
)

// stores are the two ledgers `worker history` reads: JetStream KV (with
// NATS) and Redis (with Service Bus), both real, on loopback.
func stores(t *testing.T) map[string]ledger.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: embedded JetStream and Redis on loopback")
	}
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = redisstore.DefaultAddr
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		t.Fatalf("Redis is not reachable at REDIS_ADDR %s (start redis-server; CI does): %v", addr, err)
	} else {
		c.Close()
	}
	_, _, js := natstest.Start(t)
	kv, err := kvstore.New(t.Context(), js, kvstore.Config{Bucket: "HISTORY_TEST", Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("graphops:test:history:%d:", time.Now().UnixNano())
	rs, err := redisstore.New(t.Context(), redisstore.Config{Addr: addr, Retention: time.Hour, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rs.Close()
		storetest.RemoveRedisPrefix(t, addr, prefix)
	})
	return map[string]ledger.Store{"jetstream": kv, "redis": rs}
}

// clock is a settable clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// resume and role are identities as the worker makes them (identityOf).
func resume(id, request, instance, body string) ledger.Identity {
	return ledger.Identity{Source: "urn:approvals", ID: id, BodyHash: body,
		Request: ledger.RequestOf("resume", request), RequestID: request, Key: ledger.KeyOf("callout", request, instance)}
}

func role(id, pa, req string) ledger.Identity {
	return ledger.Identity{Source: "urn:pim", ID: id, BodyHash: "h-" + id,
		Request: ledger.RequestOf("role_request_update", pa+"/"+req), RequestID: pa + "/" + req, Key: ledger.KeyOf("cmd", "urn:pim", id)}
}

// story writes what the worker would for five commands and returns the
// time of the first attempt of cmd-1:
//   - cmd-1 (resume of req-a): no answer, then 204; applied;
//   - cmd-2 repeats cmd-1 under another id: a duplicate;
//   - cmd-3 (role request pa/rq-1): 400, dead-lettered, replayed, pending;
//   - cmd-4 has the id of cmd-1 from another source, on another request;
//   - cmd-5 (resume of req-b): applied after a reconciling read.
func story(t *testing.T, s ledger.Store) time.Time {
	t.Helper()
	ctx := context.Background()
	c := &clock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	l, err := ledger.New(s, ledger.Config{Owner: "w-1", Lease: 30 * time.Second, Now: c.Now, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	begin := func(id ledger.Identity, replay bool, want ledger.Decision) *ledger.Claim {
		t.Helper()
		d, cl, err := l.Begin(ctx, id, replay)
		if err != nil || d != want {
			t.Fatalf("Begin %s: %s (%v), want %s", id.ID, d, err, want)
		}
		c.Advance(time.Second)
		return cl
	}

	cl := begin(resume("cmd-1", "req-A", "inst-1", "h1"), false, ledger.Claimed)
	first := c.Now()
	cl.Attempted(first)
	cl.Answered(ledger.Answer{ClientRequestID: "crid-1"})
	c.Advance(time.Second)
	cl.Attempted(c.Now())
	cl.Answered(ledger.Answer{ClientRequestID: "crid-2", GraphStatus: 204, GraphRequestID: "graph-2"})
	must(cl.Applied(ctx, 204, "graph-2", false))
	c.Advance(time.Second)

	begin(resume("cmd-2", "req-A", "inst-1", "h1"), false, ledger.Duplicate)

	cl = begin(role("cmd-3", "PA", "RQ-1"), false, ledger.Claimed)
	cl.Attempted(c.Now())
	cl.Answered(ledger.Answer{ClientRequestID: "crid-3", GraphStatus: 400, GraphCode: "BadRequest", GraphRequestID: "graph-3"})
	must(cl.DeadLettered(ctx, "graph_rejected", ""))
	c.Advance(time.Second)
	begin(role("cmd-3", "PA", "RQ-1"), true, ledger.Claimed) // the replay, still in flight

	other := resume("cmd-1", "req-c", "inst-9", "h9")
	other.Source = "urn:elsewhere"
	must(begin(other, false, ledger.Claimed).Applied(ctx, 204, "graph-9", false))

	cl = begin(resume("cmd-5", "req-b", "inst-5", "h5"), false, ledger.Claimed)
	cl.Attempted(c.Now())
	cl.Answered(ledger.Answer{ClientRequestID: "crid-5", GraphStatus: 504})
	must(cl.Applied(ctx, 0, "", true))
	return first
}

func TestFind(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			first := story(t, s)
			cases := []struct {
				name, id string
				want     []string // command_source/command_id/outcome, oldest first
			}{
				{"a request id lists its commands and their duplicates", "req-a",
					[]string{"urn:approvals/cmd-1/applied", "urn:approvals/cmd-2/duplicate"}},
				{"a request id is read whatever its case", "REQ-A",
					[]string{"urn:approvals/cmd-1/applied", "urn:approvals/cmd-2/duplicate"}},
				{"a command id lists every source's command of that id", "cmd-1",
					[]string{"urn:approvals/cmd-1/applied", "urn:elsewhere/cmd-1/applied"}},
				{"a role request is found by privilegedAccessId/requestId", "pa/rq-1",
					[]string{"urn:pim/cmd-3/pending"}},
				{"a duplicate is found by its own id", "cmd-2", []string{"urn:approvals/cmd-2/duplicate"}},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					got, err := history.Find(t.Context(), s, c.id)
					if err != nil {
						t.Fatal(err)
					}
					var ids []string
					for _, e := range got {
						ids = append(ids, e.CommandSource+"/"+e.CommandID+"/"+e.Outcome)
					}
					if strings.Join(ids, " ") != strings.Join(c.want, " ") {
						t.Errorf("found %v, want %v", ids, c.want)
					}
				})
			}

			t.Run("the applied command carries its attempts and the applying call", func(t *testing.T) {
				got, _ := history.Find(t.Context(), s, "req-A")
				e := got[0]
				want := []history.Attempt{
					{At: first, ClientRequestID: "crid-1"},
					{At: first.Add(time.Second), ClientRequestID: "crid-2", GraphStatus: 204, GraphRequestID: "graph-2"},
				}
				if e.GraphRequestID != "graph-2" || e.Type != "resume" || e.RequestID != "req-A" || e.Reconciled || len(e.Attempts) != 2 {
					t.Fatalf("entry %+v", e)
				}
				for i := range want {
					if !e.Attempts[i].At.Equal(want[i].At) || e.Attempts[i].ClientRequestID != want[i].ClientRequestID ||
						e.Attempts[i].GraphStatus != want[i].GraphStatus || e.Attempts[i].GraphRequestID != want[i].GraphRequestID {
						t.Errorf("attempt %d = %+v, want %+v", i, e.Attempts[i], want[i])
					}
				}
				if d := got[1]; d.DuplicateOf != "cmd-1" || len(d.Attempts) != 0 {
					t.Errorf("duplicate %+v, want a duplicate of cmd-1 without calls", d)
				}
			})

			t.Run("a replayed command counts its replay and keeps its first life", func(t *testing.T) {
				got, _ := history.Find(t.Context(), s, "cmd-3")
				if e := got[0]; e.Replays != 1 || len(e.Attempts) != 1 || e.Attempts[0].GraphCode != "BadRequest" || e.Type != "role_request_update" || e.RequestID != "PA/RQ-1" {
					t.Errorf("entry %+v", e)
				}
			})

			t.Run("an outcome decided by reading the request says so", func(t *testing.T) {
				got, _ := history.Find(t.Context(), s, "cmd-5")
				if e := got[0]; !e.Reconciled || e.Outcome != history.OutcomeApplied || e.Attempts[0].GraphStatus != 504 {
					t.Errorf("entry %+v", e)
				}
			})

			t.Run("an id the ledger does not know is ErrUnknown", func(t *testing.T) {
				if _, err := history.Find(t.Context(), s, "cmd-404"); !errors.Is(err, history.ErrUnknown) {
					t.Errorf("err %v, want ErrUnknown", err)
				}
			})
		})
	}
}

func TestFindRefusesWhatCannotBeAnID(t *testing.T) {
	for _, id := range []string{"", "a b", "line\nbreak", strings.Repeat("x", 2000)} {
		if _, err := history.Find(context.Background(), nil, id); !errors.Is(err, history.ErrBadID) {
			t.Errorf("Find(%q): %v, want ErrBadID", id, err)
		}
	}
}

func TestWriteJSONHasEverySpecFieldOnEveryLine(t *testing.T) {
	entries := []history.Entry{
		{CommandID: "cmd-1", CommandSource: "urn:a", Type: "resume", RequestID: "r", Outcome: "applied",
			GraphRequestID: "g", Attempts: []history.Attempt{{At: time.Date(2026, 12, 7, 10, 0, 0, 0, time.FixedZone("x", 3600)), GraphStatus: 204}}},
		{CommandID: "cmd-2", CommandSource: "urn:a", Type: "resume", RequestID: "r", Outcome: "duplicate", DuplicateOf: "cmd-1"},
	}
	var buf bytes.Buffer
	if err := history.WriteJSON(&buf, entries); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	lines := 0
	for sc.Scan() {
		lines++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		for _, k := range []string{"command_id", "command_source", "type", "request_id", "outcome", "reason",
			"duplicate_of", "graph_request_id", "reconciled", "replays", "attempts"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d has no %s: %s", lines, k, sc.Text())
			}
		}
		if _, ok := m["attempts"].([]any); !ok {
			t.Errorf("line %d: attempts is %T, want a list (empty when no call was made)", lines, m["attempts"])
		}
	}
	if lines != 2 {
		t.Fatalf("%d lines, want one per command", lines)
	}
	var e struct {
		Attempts []map[string]any `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(jsonOf(t, entries[:1]), "\n", 2)[0]), &e); err != nil {
		t.Fatal(err)
	}
	a := e.Attempts[0]
	if a["at"] != "2026-12-07T09:00:00Z" || a["graph_status"] != float64(204) || a["client_request_id"] != "" || a["graph_code"] != "" {
		t.Errorf("attempt %v: want at in UTC RFC 3339 and every field present", a)
	}
}

func jsonOf(t *testing.T, entries []history.Entry) string {
	t.Helper()
	var buf bytes.Buffer
	if err := history.WriteJSON(&buf, entries); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestWriteTableShowsEachCommandAndAttempt(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	entries := []history.Entry{{
		CommandID: "cmd-1", CommandSource: "urn:a", Type: "resume", RequestID: "r", Outcome: "dead_lettered",
		Reason: "graph_rejected", Since: at,
		EarlierAttempts: &ledger.Earlier{Count: 3, First: at, Last: at.Add(time.Minute), ByStatus: map[string]int{"429": 2, "0": 1}},
		Attempts:        []history.Attempt{{At: at.Add(2 * time.Minute), ClientRequestID: "crid-4", GraphStatus: 400, GraphCode: "BadRequest", GraphRequestID: "g-4"}},
	}}
	var buf bytes.Buffer
	if err := history.WriteTable(&buf, entries); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"cmd-1", "dead_lettered", "graph_rejected", "3 earlier attempts", "429×2", "no answer×1",
		"attempt 4", "crid-4", "400", "BadRequest", "g-4", "2026-12-07T10:02:00Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
