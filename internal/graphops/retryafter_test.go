package graphops_test

import (
	"testing"
	"time"

	"github.com/graphops/worker/internal/graphops"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		value  string
		want   time.Duration
		wantOK bool
	}{
		{"whole seconds", "120", 120 * time.Second, true},
		{"zero seconds", "0", 0, true},
		{"surrounding spaces are ignored", "  5 ", 5 * time.Second, true},
		{"a decimal is read to the millisecond", "1.5", 1500 * time.Millisecond, true},
		{"a decimal finer than a millisecond is rounded up", "0.0001", time.Millisecond, true},
		{"trailing zeros do not round up", "2.2500", 2250 * time.Millisecond, true},
		{"a negative delay is no wait", "-3", 0, true},
		{"an HTTP date in the future is counted from now", "Mon, 23 Nov 2026 10:00:30 GMT", 30 * time.Second, true},
		{"an RFC 850 date is accepted", "Monday, 23-Nov-26 10:01:00 GMT", time.Minute, true},
		{"an HTTP date in the past is no wait", "Mon, 23 Nov 2026 09:00:00 GMT", 0, true},
		{"an empty value is garbage", "", 0, false},
		{"words are garbage", "soon", 0, false},
		{"an exponent is garbage", "1e3", 0, false},
		{"a hexadecimal number is garbage", "0x10", 0, false},
		{"a plus sign is garbage", "+5", 0, false},
		{"a lone dot is garbage", ".", 0, false},
		{"a missing fraction is garbage", "5.", 0, false},
		{"a missing integer part is garbage", ".5", 0, false},
		{"infinity is garbage", "inf", 0, false},
		{"a value beyond a Duration is garbage", "99999999999999999999", 0, false},
		{"a date in another format is garbage", "2026-11-23T10:00:30Z", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := graphops.ParseRetryAfter(tt.value, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.value, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
