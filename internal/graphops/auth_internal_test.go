package graphops

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// issuer issues "tok-1", "tok-2", … (or fails with err, or returns token
// as it is when set) and records the claims of each request.
type issuer struct {
	mu     sync.Mutex
	issued int
	claims []string
	err    error
	token  *string
}

func (c *issuer) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.claims = append(c.claims, o.Claims)
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	c.issued++
	tok := "tok-" + strconv.Itoa(c.issued)
	if c.token != nil {
		tok = *c.token
	}
	return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestAForcedRefreshClaimsATokenIssuedNow(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	iss := &issuer{}
	f := &freshCredential{cred: iss, timeout: time.Second, now: func() time.Time { return now }}
	get := func(claims string) error {
		_, err := f.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{Scope}, Claims: claims})
		return err
	}
	nbf := `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(now.Unix(), 10) + `"}}}`

	_ = get("")
	f.forced.Store(true)
	iss.err = errors.New("token service down")
	if err := get(""); !errors.As(err, new(*AuthError)) {
		t.Fatalf("a failed refresh returned %v, want an *AuthError", err)
	}
	iss.err = nil
	_ = get("") // the refresh failed, so this one is forced still
	_ = get("") // and this one is not
	f.forced.Store(true)
	_ = get(`{"access_token":{"xms_cc":{"values":["cp1"]}}}`) // a CAE challenge's claims are kept as they are

	want := []string{"", nbf, nbf, "", `{"access_token":{"xms_cc":{"values":["cp1"]}}}`}
	if len(iss.claims) != len(want) {
		t.Fatalf("claims %q, want %q", iss.claims, want)
	}
	for i := range want {
		if iss.claims[i] != want[i] {
			t.Errorf("request %d claims %q, want %q", i, iss.claims[i], want[i])
		}
	}
}

func TestTokensThatCannotBeSentAreAuthErrors(t *testing.T) {
	for name, tok := range map[string]string{"empty": "", "with a line break": "a\r\nb", "with a NUL": "a\x00"} {
		t.Run(name, func(t *testing.T) {
			f := &freshCredential{cred: &issuer{token: &tok}, timeout: time.Second}
			_, err := f.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{Scope}})
			if !errors.As(err, new(*AuthError)) {
				t.Fatalf("err = %v, want an *AuthError", err)
			}
		})
	}
}

// Token acquisition has a budget of its own: a credential that hangs is
// given up after the timeout, not after the caller's deadline.
func TestATokenRequestIsBoundedByTheTimeout(t *testing.T) {
	f := &freshCredential{cred: hanging{}, timeout: 20 * time.Millisecond}
	start := time.Now()
	_, err := f.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{Scope}})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, new(*AuthError)) {
		t.Fatalf("err = %v, want an *AuthError for the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

type hanging struct{}

func (hanging) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	<-ctx.Done()
	return azcore.AccessToken{}, ctx.Err()
}
