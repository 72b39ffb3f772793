package graphops

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// issuer is a credential that issues "tok-1", "tok-2", … with the lifetime
// and refresh time its fields say, and records whether each request was a
// forced refresh. A test may hold a request back with gate.
type issuer struct {
	mu        sync.Mutex
	now       func() time.Time
	lifetime  time.Duration
	refreshIn time.Duration // 0: no RefreshOn
	issued    int
	forced    []bool
	claims    []string
	gate      chan chan struct{} // when set, each request takes a channel and waits for it to close
}

func (c *issuer) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if c.gate != nil {
		release := make(chan struct{})
		c.gate <- release
		<-release
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issued++
	c.forced = append(c.forced, o.Claims != "")
	c.claims = append(c.claims, o.Claims)
	now := c.now()
	tok := azcore.AccessToken{Token: fmt.Sprintf("tok-%d", c.issued), ExpiresOn: now.Add(c.lifetime)}
	if c.refreshIn > 0 {
		tok.RefreshOn = now.Add(c.refreshIn)
	}
	return tok, nil
}

func (c *issuer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issued
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                   { return &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }

// tokenOf is the token, for goroutines that cannot fail the test (the
// issuer never fails).
func tokenOf(ts *tokenSource) string {
	tok, _ := ts.token(context.Background(), time.Second)
	return tok
}

func (t *tokenSource) get(tb testing.TB) string {
	tb.Helper()
	tok, err := t.token(context.Background(), time.Second)
	if err != nil {
		tb.Fatalf("token: %v", err)
	}
	return tok
}

func TestATokenIsKeptUntilShortlyBeforeItExpires(t *testing.T) {
	cases := []struct {
		name      string
		lifetime  time.Duration
		refreshIn time.Duration
		keptFor   time.Duration // 0: never kept
	}{
		{"an hour's token is kept for 55 minutes", time.Hour, 0, 55 * time.Minute},
		{"RefreshOn sooner than that wins", time.Hour, 20 * time.Minute, 20 * time.Minute},
		{"RefreshOn later than expiry less the margin does not extend it", time.Hour, 58 * time.Minute, 55 * time.Minute},
		{"a token within the margin of its expiry is never kept", 4 * time.Minute, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			cred := &issuer{now: clk.now, lifetime: tc.lifetime, refreshIn: tc.refreshIn}
			ts := &tokenSource{cred: cred, now: clk.now}
			first := ts.get(t)
			if tc.keptFor == 0 {
				if second := ts.get(t); second == first || cred.count() != 2 {
					t.Fatalf("got %s then %s after %d requests; want a new request each time", first, second, cred.count())
				}
				return
			}
			clk.advance(tc.keptFor - time.Second)
			if got := ts.get(t); got != first || cred.count() != 1 {
				t.Fatalf("just before %s: got %s after %d requests, want the kept %s", tc.keptFor, got, cred.count(), first)
			}
			clk.advance(time.Second)
			if got := ts.get(t); got == first || cred.count() != 2 {
				t.Fatalf("at %s: got %s after %d requests, want a new token", tc.keptFor, got, cred.count())
			}
		})
	}
}

func TestInvalidateDropsTheKeptTokenAndForcesARefresh(t *testing.T) {
	clk := newClock()
	cred := &issuer{now: clk.now, lifetime: time.Hour}
	ts := &tokenSource{cred: cred, now: clk.now}
	old := ts.get(t)
	ts.invalidate()
	fresh := ts.get(t)
	if fresh == old {
		t.Fatalf("after invalidate got the old token %s", old)
	}
	if again := ts.get(t); again != fresh {
		t.Fatalf("the refreshed token is not kept: %s then %s", fresh, again)
	}
	if want := []bool{false, true}; fmt.Sprint(cred.forced) != fmt.Sprint(want) {
		t.Fatalf("forced requests = %v, want %v", cred.forced, want)
	}
}

// A request that began before an invalidation, or beside a forced refresh,
// may bring the token being replaced: it is used by its own attempt but not
// kept for later ones.
func TestATokenAskedForBeforeARefreshIsNotKept(t *testing.T) {
	t.Run("ordinary request, then invalidate, then it returns", func(t *testing.T) {
		clk := newClock()
		cred := &issuer{now: clk.now, lifetime: time.Hour, gate: make(chan chan struct{})}
		ts := &tokenSource{cred: cred, now: clk.now}
		done := make(chan string)
		go func() { done <- tokenOf(ts) }()
		release := <-cred.gate
		ts.invalidate()
		close(release)
		stale := <-done
		go func() { close(<-cred.gate) }()
		if got := ts.get(t); got == stale {
			t.Fatalf("kept %s, asked for before the invalidation", stale)
		}
		if want := []bool{false, true}; fmt.Sprint(cred.forced) != fmt.Sprint(want) {
			t.Fatalf("forced requests = %v, want %v", cred.forced, want)
		}
	})
	t.Run("ordinary request beside a forced refresh returns after it", func(t *testing.T) {
		clk := newClock()
		cred := &issuer{now: clk.now, lifetime: time.Hour, gate: make(chan chan struct{})}
		ts := &tokenSource{cred: cred, now: clk.now}
		ts.invalidate()
		forced, ordinary := make(chan string), make(chan string)
		go func() { forced <- tokenOf(ts) }()
		releaseForced := <-cred.gate
		go func() { ordinary <- tokenOf(ts) }()
		releaseOrdinary := <-cred.gate
		close(releaseForced)
		fresh := <-forced
		close(releaseOrdinary)
		<-ordinary
		if got := ts.get(t); got != fresh {
			t.Fatalf("kept %s, want the forced refresh's %s", got, fresh)
		}
	})
}

// The forced refresh asks for a token issued no earlier than now, by the
// token source's clock.
func TestAForcedRefreshClaimsATokenIssuedNow(t *testing.T) {
	clk := newClock()
	iss := &issuer{now: clk.now, lifetime: time.Hour}
	ts := &tokenSource{cred: iss, now: clk.now}
	ts.get(t)
	clk.advance(10 * time.Minute)
	ts.invalidate()
	ts.get(t)
	want := `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(clk.now().Unix(), 10) + `"}}}`
	if len(iss.claims) != 2 || iss.claims[0] != "" || iss.claims[1] != want {
		t.Fatalf("claims %q, want none and then %s", iss.claims, want)
	}
}
