package graphsim

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// bucket is a token bucket driven by the caller's clock, so that its
// arithmetic is testable without sleeping. It is not safe for concurrent use:
// the Sim calls it under its lock.
type bucket struct {
	rate     float64 // tokens per second
	burst    float64 // capacity
	floor    float64 // lowest level a penalty can push it to
	penalize bool
	tokens   float64
	last     time.Time
}

// newBucket returns a full bucket.
func newBucket(rate float64, burst int, penalize bool, now time.Time) *bucket {
	return &bucket{
		rate:     rate,
		burst:    float64(burst),
		floor:    -10 * float64(burst),
		penalize: penalize,
		tokens:   float64(burst),
		last:     now,
	}
}

// take spends a token at now. When none is available it refuses and returns
// how long until one will be; with penalize the refused call is charged too
// (down to the floor), so the wait it reports includes its own penalty.
func (b *bucket) take(now time.Time) (ok bool, wait time.Duration) {
	if elapsed := now.Sub(b.last); elapsed > 0 { // a clock that steps back refills nothing
		b.tokens = min(b.burst, b.tokens+elapsed.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if b.penalize {
		b.tokens = max(b.floor, b.tokens-1)
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// used is the share of the bucket spent, as Graph's
// x-ms-throttle-limit-percentage reports it: 0 full, 1 empty, above 1 in
// debt (penalized throttles), at most 1.8 (Graph's documented range).
func (b *bucket) used() float64 {
	return min(1.8, (b.burst-b.tokens)/b.burst)
}

// Graph's identity and access throttling headers (LimitWarning).
const (
	headerLimitPercentage = "x-ms-throttle-limit-percentage"
	headerThrottleScope   = "x-ms-throttle-scope"
	headerThrottleInfo    = "x-ms-throttle-information"
	// warnFrom: the header is sent once more than this share is spent.
	warnFrom = 0.8
	// simScope is the x-ms-throttle-scope of the simulator's 429s: per app
	// and tenant, writes, with made-up ids (Graph's documented format
	// <Scope>/<Limit>/<ApplicationId>/<TenantId>).
	simScope = "Tenant_Application/Write/00000000-0000-0000-0000-00000000a99a/00000000-0000-0000-0000-00000000te11"
)

// limitWarningLocked is the x-ms-throttle-limit-percentage of a write
// answered now, "" when none is due.
func (s *Sim) limitWarningLocked() string {
	if !s.cfg.LimitWarning || s.bucket == nil {
		return ""
	}
	u := s.bucket.used()
	if u <= warnFrom {
		return ""
	}
	return strconv.FormatFloat(u, 'f', 2, 64)
}

// retryAfterSeconds is the Retry-After of a wait: whole seconds, rounded up,
// at least 1 (Graph sends whole seconds; 0 would invite an immediate retry).
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}

// throttleLocked charges a write call to the bucket and returns the 429 when
// it is refused.
func (s *Sim) throttleLocked() (reply, bool) {
	if s.bucket == nil {
		return reply{}, false
	}
	ok, wait := s.bucket.take(s.now())
	if ok {
		return reply{}, false
	}
	secs := retryAfterSeconds(wait)
	rp := errReply(http.StatusTooManyRequests, "TooManyRequests",
		fmt.Sprintf("Too many requests. Retry after %d seconds.", secs))
	rp.retryAfter = strconv.Itoa(secs)
	if s.cfg.LimitWarning {
		rp.throttleScope, rp.throttleInfo = simScope, "WriteLimitExceeded"
	}
	return rp, true
}
