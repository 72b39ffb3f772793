package graphops

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter parses a Retry-After value relative to now, the moment the
// response arrived. It accepts delta-seconds (an integer, or a decimal such
// as "1.5", rounded up to a whole millisecond) and an HTTP date (RFC 1123 and
// the other forms of http.ParseTime). A negative delay or a date in the past
// gives 0, true. Anything else, including a delay too large for a
// time.Duration, gives 0, false.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if d, ok := parseDeltaSeconds(v); ok {
		return d, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// parseDeltaSeconds reads [-]digits[.digits] strictly: no exponent, no sign
// other than a leading minus, no hex, no "inf".
func parseDeltaSeconds(v string) (time.Duration, bool) {
	neg := strings.HasPrefix(v, "-")
	if neg {
		v = v[1:]
	}
	whole, frac, hasDot := strings.Cut(v, ".")
	if !allDigits(whole) || (hasDot && !allDigits(frac)) {
		return 0, false
	}
	secs, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, false
	}
	const maxSecs = math.MaxInt64/int64(time.Second) - 1
	if secs > maxSecs {
		return 0, false
	}
	ms := secs * 1000
	if hasDot {
		first := (frac + "000")[:3]
		n, _ := strconv.Atoi(first) // three digits: cannot fail
		ms += int64(n)
		if len(frac) > 3 && strings.Trim(frac[3:], "0") != "" {
			ms++ // round up: never come back earlier than asked
		}
	}
	if neg {
		return 0, true
	}
	return time.Duration(ms) * time.Millisecond, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
