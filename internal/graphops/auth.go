package graphops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// AuthConfig selects the credential NewCredential builds.
type AuthConfig struct {
	// StaticToken is a static bearer token (GRAPH_TOKEN), for development and
	// tests only. When set, the AZURE_* variables are not read.
	StaticToken string
	// ClientOptions is passed to azidentity (tests set Transport).
	ClientOptions azcore.ClientOptions
	// DisableInstanceDiscovery skips Entra instance metadata discovery
	// (disconnected clouds, tests).
	DisableInstanceDiscovery bool
}

// The standard azidentity environment variables that choose a credential.
const (
	envTenantID           = "AZURE_TENANT_ID"
	envClientID           = "AZURE_CLIENT_ID"
	envClientSecret       = "AZURE_CLIENT_SECRET"
	envCertPath           = "AZURE_CLIENT_CERTIFICATE_PATH"
	envFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
	envAuthorityHost      = "AZURE_AUTHORITY_HOST"
	envAllowedTenants     = "AZURE_ADDITIONALLY_ALLOWED_TENANTS"
)

// NewCredential builds the Graph credential. With StaticToken it returns a
// credential that always yields that token. Otherwise it chains azidentity's
// own credentials, each reading the standard AZURE_* variables itself, in
// the order an AKS deployment wants them:
//
//   - workload identity, when AZURE_FEDERATED_TOKEN_FILE is set (the AKS
//     webhook sets it with AZURE_TENANT_ID and AZURE_CLIENT_ID);
//   - EnvironmentCredential, when AZURE_CLIENT_SECRET or
//     AZURE_CLIENT_CERTIFICATE_PATH is set (a client secret or certificate);
//   - managed identity (user-assigned when AZURE_CLIENT_ID is set), only
//     when neither is configured.
//
// Unlike DefaultAzureCredential, a configured credential that cannot be
// built stops start-up, with an error naming the AZURE_* variable, instead
// of failing at the first Graph call; and developer tools (Azure CLI…) are
// never tried on a server.
func NewCredential(cfg AuthConfig) (azcore.TokenCredential, error) {
	if cfg.StaticToken != "" {
		if !validHeaderValue(cfg.StaticToken) {
			return nil, errors.New("graphops: GRAPH_TOKEN contains control characters")
		}
		return &staticCredential{token: cfg.StaticToken}, nil
	}
	// azidentity refuses these too, but without naming the variable.
	if host := os.Getenv(envAuthorityHost); host != "" {
		if u, err := url.Parse(host); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("graphops: %s must be an https URL", envAuthorityHost)
		}
	}
	var chain []azcore.TokenCredential
	if os.Getenv(envFederatedTokenFile) != "" {
		for _, n := range []string{envTenantID, envClientID} {
			if os.Getenv(n) == "" {
				return nil, fmt.Errorf("graphops: %s is required for workload identity (%s is set)", n, envFederatedTokenFile)
			}
		}
		var tenants []string
		if v := os.Getenv(envAllowedTenants); v != "" {
			tenants = strings.Split(v, ";")
		}
		cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:              cfg.ClientOptions,
			AdditionallyAllowedTenants: tenants,
			DisableInstanceDiscovery:   cfg.DisableInstanceDiscovery,
		})
		if err != nil {
			return nil, fmt.Errorf("graphops: workload identity (%s, %s, %s): %w", envTenantID, envClientID, envFederatedTokenFile, err)
		}
		chain = append(chain, cred)
	}
	if kind := envKind(); kind != "" {
		cred, err := azidentity.NewEnvironmentCredential(&azidentity.EnvironmentCredentialOptions{
			ClientOptions:            cfg.ClientOptions,
			DisableInstanceDiscovery: cfg.DisableInstanceDiscovery,
		})
		if err != nil {
			return nil, fmt.Errorf("graphops: %s: %w", kind, err)
		}
		chain = append(chain, cred)
	}
	if len(chain) == 0 {
		mio := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: cfg.ClientOptions}
		if id := os.Getenv(envClientID); id != "" {
			mio.ID = azidentity.ClientID(id)
		}
		cred, err := azidentity.NewManagedIdentityCredential(mio)
		if err != nil {
			return nil, fmt.Errorf("graphops: managed identity (%s selects a user-assigned identity): %w", envClientID, err)
		}
		chain = append(chain, cred)
	}
	return azidentity.NewChainedTokenCredential(chain, nil)
}

// envKind names the credential EnvironmentCredential would build, and the
// variable that selects it; "" when none is configured.
func envKind() string {
	switch {
	case os.Getenv(envClientSecret) != "":
		return "a client secret (" + envClientSecret + " is set)"
	case os.Getenv(envCertPath) != "":
		return "a client certificate (" + envCertPath + " is set)"
	}
	return ""
}

// staticCredential always returns the same token. Its String, GoString and
// LogValue hide the token so that printing a Config cannot leak it.
type staticCredential struct{ token string }

func (s *staticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: s.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (s *staticCredential) String() string       { return "graphops.staticCredential{token:REDACTED}" }
func (s *staticCredential) GoString() string     { return s.String() }
func (s *staticCredential) LogValue() slog.Value { return slog.StringValue(s.String()) }

// tokenSource gets the token for each attempt. It keeps the last token until
// tokenRefreshEarly before it expires (or until its RefreshOn), as azcore's
// bearer-token policy does: asking the credential every attempt costs a few
// µs with a static token and more with azidentity's cache, whose locks every
// worker goroutine would take.
//
// After invalidate (a 401), the kept token is dropped and the next request
// carries a claims challenge (nbf = now), which makes azidentity/MSAL skip
// its cache and ask the token service for a new token, which then replaces
// the cached one. That is what "fresh" means here: newly issued by the token
// service, not served from a cache. A static token, or a credential that
// ignores claims, cannot become fresh; the retry loop's "retry 401 once" rule
// bounds that case. All requests use EnableCAE so that the forced refresh and
// the ordinary requests share one azidentity cache (azidentity keeps CAE and
// non-CAE tokens apart).
type tokenSource struct {
	cred azcore.TokenCredential
	now  func() time.Time // default time.Now

	mu    sync.Mutex
	stale bool
	// kept is the last token, used until keepUntil; gen counts
	// invalidations, so that a token asked for before one is not kept.
	kept      string
	keepUntil time.Time
	gen       uint64
}

// tokenRefreshEarly is how long before its expiry a kept token is replaced,
// azcore's margin: a request must not reach Graph with a token about to lapse.
const tokenRefreshEarly = 5 * time.Minute

func (t *tokenSource) invalidate() {
	t.mu.Lock()
	t.stale = true
	t.kept, t.keepUntil = "", time.Time{}
	t.gen++
	t.mu.Unlock()
}

func (t *tokenSource) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// keep stores tok for later attempts unless an invalidation came since it
// was asked for (gen) or it is too close to expiry to be worth keeping. A
// forced refresh also ends the generation, so that an ordinary request still
// under way, which may bring the token the refresh replaces, is not kept.
func (t *tokenSource) keep(tok azcore.AccessToken, gen uint64, forced bool) {
	until := tok.ExpiresOn.Add(-tokenRefreshEarly)
	if !tok.RefreshOn.IsZero() && tok.RefreshOn.Before(until) {
		until = tok.RefreshOn
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != t.gen {
		return
	}
	if forced {
		t.gen++
	}
	if t.clock().Before(until) {
		t.kept, t.keepUntil = tok.Token, until
	}
}

func (t *tokenSource) token(ctx context.Context, timeout time.Duration) (string, error) {
	t.mu.Lock()
	// invalidate clears kept, and gen stops a fetch begun before it from
	// setting it again: a kept token is never a stale one.
	if t.kept != "" && t.clock().Before(t.keepUntil) {
		tok := t.kept
		t.mu.Unlock()
		return tok, nil
	}
	forced, gen := t.stale, t.gen
	t.stale = false
	t.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	opts := policy.TokenRequestOptions{Scopes: []string{Scope}, EnableCAE: true}
	if forced {
		opts.Claims = `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(t.clock().Unix(), 10) + `"}}}`
	}
	tok, err := t.cred.GetToken(ctx, opts)
	if err != nil {
		if forced {
			t.invalidate() // the next attempt must still refresh
		}
		return "", &AuthError{Err: err}
	}
	if tok.Token == "" {
		return "", &AuthError{Err: errors.New("the credential returned an empty token")}
	}
	if !validHeaderValue(tok.Token) {
		return "", &AuthError{Err: errors.New("the credential returned a token with control characters")}
	}
	t.keep(tok, gen, forced)
	return tok.Token, nil
}
