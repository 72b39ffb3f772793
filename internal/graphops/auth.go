package graphops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
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

// bearer authorizes Graph calls with azcore's BearerTokenPolicy: it keeps
// the token until five minutes before it expires (or until its RefreshOn),
// lets one goroutine refresh it while the others wait or keep using it, and
// answers a Continuous Access Evaluation challenge (a 401 whose
// WWW-Authenticate says error="insufficient_claims") by asking for a token
// with those claims and sending the request once more. That resend is safe:
// Graph refused the first request, and the client's send policy sees it as
// a call of its own.
//
// invalidate (the retry loop, after a 401) swaps in a new policy, which has
// no token kept, and makes the credential's next request a forced refresh.
type bearer struct {
	cred   *freshCredential
	policy atomic.Pointer[runtime.BearerTokenPolicy]
}

// newBearer authorizes with cred; each token request may take timeout.
func newBearer(cred azcore.TokenCredential, timeout time.Duration) *bearer {
	b := &bearer{cred: &freshCredential{cred: cred, timeout: timeout}}
	b.policy.Store(b.newPolicy())
	return b
}

func (b *bearer) newPolicy() *runtime.BearerTokenPolicy {
	// http is allowed because Config.Validate allows it for loopback only.
	return runtime.NewBearerTokenPolicy(b.cred, []string{Scope}, &policy.BearerTokenOptions{InsecureAllowCredentialWithHTTP: true})
}

func (b *bearer) Do(req *policy.Request) (*http.Response, error) { return b.policy.Load().Do(req) }

func (b *bearer) invalidate() {
	b.cred.forced.Store(true)
	b.policy.Store(b.newPolicy())
}

// freshCredential wraps the configured credential. After invalidate, its
// next request carries a claims challenge (nbf = now), which makes
// azidentity/MSAL skip its cache and ask the token service for a new token,
// which then replaces the cached one: "fresh" means newly issued, not
// served from a cache. A static token, or a credential that ignores claims,
// cannot become fresh; the retry loop's "retry 401 once" rule bounds that
// case. The policy asks for CAE tokens (EnableCAE) on every request, so the
// forced refresh and the ordinary requests share one azidentity cache.
//
// Its errors are *AuthError, so that the client can tell a failure to get
// a token (nothing was sent) from a failure to reach Graph.
type freshCredential struct {
	cred    azcore.TokenCredential
	timeout time.Duration // of each token request, apart from the call's own
	forced  atomic.Bool
	now     func() time.Time // default time.Now
}

func (f *freshCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	forced := f.forced.Load()
	if forced && opts.Claims == "" {
		now := time.Now
		if f.now != nil {
			now = f.now
		}
		opts.Claims = `{"access_token":{"nbf":{"essential":true,"value":"` + strconv.FormatInt(now().Unix(), 10) + `"}}}`
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	tok, err := f.cred.GetToken(ctx, opts)
	switch {
	case err != nil:
		return azcore.AccessToken{}, &AuthError{Err: err}
	case tok.Token == "":
		return azcore.AccessToken{}, &AuthError{Err: errors.New("the credential returned an empty token")}
	case !validHeaderValue(tok.Token):
		return azcore.AccessToken{}, &AuthError{Err: errors.New("the credential returned a token with control characters")}
	}
	if forced {
		f.forced.Store(false)
	}
	return tok, nil
}
