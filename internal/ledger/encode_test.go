package ledger

import (
	"encoding/json"
	"testing"
	"time"
)

// TestEncodeMatchesEncodingJSON holds encode to encoding/json's output,
// byte for byte, for records in every state and strings that need
// escaping.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 3, 14, 5, 6, 789000000, time.UTC)
	zone := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		d    RequestRecord
	}{
		{"nil map", RequestRecord{}},
		{"empty map", RequestRecord{Commands: map[string]Record{}}},
		{"claimed", RequestRecord{Commands: map[string]Record{
			"command.k1": {State: StateClaimed, Owner: "host-1/42", LeaseUntil: at, Token: "7", Source: "Contoso.SodCheckProcess",
				ID: "cmd-1", BodyHash: "ab12", Attempts: 1, FirstAttempt: at, LastAttempt: at},
		}}},
		{"applied and dead-lettered, keys out of order", RequestRecord{Commands: map[string]Record{
			"z": {State: StateApplied, Source: "s", ID: "2", AppliedAt: at.In(zone), GraphStatus: 204,
				GraphRequestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99", Reconciled: true, SettledAt: at},
			"a": {State: StateDeadLettered, Source: "s", ID: "1", Reason: "conflict", SettledAt: at.Add(time.Nanosecond)},
			"m": {State: StateClaimed, LeaseUntil: at.Add(-time.Hour).Round(time.Second)},
		}}},
		{"strings that need escaping", RequestRecord{Commands: map[string]Record{
			"k<&>\"\\": {State: StateClaimed, Source: "a\tb\nc\x00\x1f", ID: "é ☃ \u2028\u2029", Owner: "bad \xff utf8", Reason: "\x7f del"},
		}}},
		{"negative numbers", RequestRecord{Commands: map[string]Record{"k": {Attempts: -3, GraphStatus: -1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.d)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.d.encode(); string(got) != string(want) {
				t.Errorf("encode:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestEncodeWritesNullForATimeJSONCannotCarry: encoding/json refuses a
// year past 9999; encode stays valid JSON, and the field decodes as unset.
func TestEncodeWritesNullForATimeJSONCannotCarry(t *testing.T) {
	d := RequestRecord{Commands: map[string]Record{"k": {State: StateApplied, AppliedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	var back RequestRecord
	if err := json.Unmarshal(d.encode(), &back); err != nil {
		t.Fatalf("encode wrote invalid JSON %s: %v", d.encode(), err)
	}
	if r := back.Commands["k"]; r.State != StateApplied || !r.AppliedAt.IsZero() {
		t.Errorf("decoded %+v, want applied with no applied_at", r)
	}
}

// FuzzEncode compares encode with encoding/json on arbitrary strings,
// numbers and times.
func FuzzEncode(f *testing.F) {
	f.Add("claimed", "owner", "source", "id", "key", "reason", 3, 204, int64(1796300000123456789), true)
	f.Add("applied", "", "<tag>&", "\u2028", "k\"ey", "\xff", 0, 0, int64(0), false)
	f.Fuzz(func(t *testing.T, state, owner, source, id, key, reason string, attempts, status int, nanos int64, reconciled bool) {
		at := time.Unix(0, nanos).In(time.FixedZone("", int(nanos%50000)))
		d := RequestRecord{Commands: map[string]Record{
			key: {State: State(state), Owner: owner, LeaseUntil: at, Source: source, ID: id, Attempts: attempts,
				GraphStatus: status, Reconciled: reconciled, Reason: reason, SettledAt: at},
			key + "2": {State: StateApplied, ID: id, AppliedAt: at},
		}}
		want, err := json.Marshal(d)
		if err != nil {
			t.Skip() // a time encoding/json refuses
		}
		if got := d.encode(); string(got) != string(want) {
			t.Fatalf("encode:\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	at := time.Now()
	d := RequestRecord{Commands: map[string]Record{
		"command.0123456789abcdef0123456789abcdef01234567": {State: StateApplied, Owner: "worker-7d9f-abcde/1234", LeaseUntil: at,
			Token: "12345", Source: "Contoso.SodCheckProcess", ID: "a8c3c2f0-6d43-4b8e-9d2b-8f1f7b0e9c11",
			BodyHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Attempts: 1,
			FirstAttempt: at, LastAttempt: at, AppliedAt: at, GraphStatus: 204,
			GraphRequestID: "0e60f18c-b2a0-4887-9da8-da2e30a39d99", SettledAt: at},
	}}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = d.encode()
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(d)
		}
	})
}
