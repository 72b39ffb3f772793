package graphops_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/graphops/worker/internal/graphops"
)

// fakeSTS is a Microsoft Entra token endpoint on loopback TLS, enough for
// azidentity/MSAL: the tenant's OpenID configuration and a token endpoint
// issuing a new random access token per request.
type fakeSTS struct {
	srv    *httptest.Server
	mu     sync.Mutex
	forms  []url.Values
	tokens []string
	status int // token endpoint status; 0 means 200
}

func newFakeSTS(t *testing.T) *fakeSTS {
	t.Helper()
	s := &fakeSTS{}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *fakeSTS) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	base := "https://" + r.Host
	switch {
	case r.Method == http.MethodGet && len(parts) == 4 && parts[1] == "v2.0" && parts[3] == "openid-configuration":
		tenant := parts[0]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"authorization_endpoint": base + "/" + tenant + "/oauth2/v2.0/authorize",
			"token_endpoint":         base + "/" + tenant + "/oauth2/v2.0/token",
			"issuer":                 base + "/" + tenant + "/v2.0",
		})
	case r.Method == http.MethodPost && len(parts) == 4 && parts[1] == "oauth2" && parts[3] == "token":
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw := make([]byte, 16)
		_, _ = rand.Read(raw)
		token := "sts-" + hex.EncodeToString(raw)
		s.mu.Lock()
		s.forms = append(s.forms, r.PostForm)
		s.tokens = append(s.tokens, token)
		status := s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status != 0 {
			w.WriteHeader(status)
			_, _ = fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"token_type":"Bearer","access_token":%q,"expires_in":3600}`, token)
	default:
		http.NotFound(w, r)
	}
}

func (s *fakeSTS) seen() ([]url.Values, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.forms...), append([]string(nil), s.tokens...)
}

// clientOptions trusts the STS's certificate and turns off azcore's retries
// so that failure tests stay fast. The authority host is the test's
// AZURE_AUTHORITY_HOST, as the AKS webhook sets it.
func (s *fakeSTS) clientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Transport: s.srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1}}
}

// azureEnv gives the test exactly the credential variables of m: every
// other one azidentity or MSAL reads is unset, and all are restored after.
func azureEnv(t *testing.T, m map[string]string) {
	t.Helper()
	for _, k := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
		"AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
		"AZURE_ADDITIONALLY_ALLOWED_TENANTS", "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_TOKEN_CREDENTIALS",
		"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(k, "") // registers the restore
		if v, ok := m[k]; ok {
			os.Setenv(k, v)
		} else {
			os.Unsetenv(k)
		}
	}
}

func TestClientSecretTokensFromAzidentityReachGraph(t *testing.T) {
	sts := newFakeSTS(t)
	azureEnv(t, map[string]string{
		"AZURE_TENANT_ID":      "tenant-1",
		"AZURE_CLIENT_ID":      "client-1",
		"AZURE_CLIENT_SECRET":  "s3cret-value",
		"AZURE_AUTHORITY_HOST": sts.srv.URL,
	})
	cred, err := graphops.NewCredential(graphops.AuthConfig{ClientOptions: sts.clientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	e := newEnv(t, nil, func(c *graphops.Config) { c.Credential = cred })
	call := func() {
		t.Helper()
		if _, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil); err != nil {
			t.Fatalf("Resume: %v", err)
		}
	}

	call()
	call()
	forms, tokens := sts.seen()
	if len(tokens) != 1 {
		t.Fatalf("STS issued %d tokens for two calls, want 1 (the token is kept)", len(tokens))
	}
	f := forms[0]
	if f.Get("client_secret") != "s3cret-value" || f.Get("client_id") != "client-1" || f.Get("grant_type") != "client_credentials" {
		t.Errorf("token request form = %v", f)
	}
	if !strings.Contains(" "+f.Get("scope")+" ", " "+graphops.Scope+" ") {
		t.Errorf("scope = %q, want it to include %s", f.Get("scope"), graphops.Scope)
	}
	for i, r := range e.rec.all() {
		if got := r.Header.Get("Authorization"); got != "Bearer "+tokens[0] {
			t.Errorf("call %d sent Authorization %q, want Bearer <the STS token>", i, got)
		}
	}

	t.Run("after InvalidateToken the next call carries a newly issued token", func(t *testing.T) {
		e.client.InvalidateToken()
		call()
		call() // and keeps using it
		forms, tokens := sts.seen()
		if len(tokens) != 2 {
			t.Fatalf("STS issued %d tokens, want 2", len(tokens))
		}
		// The forced refresh asks for a token not before now, which is what
		// makes azidentity skip its cache; ordinary requests do not.
		if !strings.Contains(forms[1].Get("claims"), `"nbf"`) || strings.Contains(forms[0].Get("claims"), `"nbf"`) {
			t.Errorf("claims = %q then %q, want nbf only on the refresh", forms[0].Get("claims"), forms[1].Get("claims"))
		}
		reqs := e.rec.all()
		for _, r := range reqs[2:] {
			if got := r.Header.Get("Authorization"); got != "Bearer "+tokens[1] {
				t.Errorf("after invalidation Authorization = %q, want the new token", got)
			}
		}
	})
}

func TestWorkloadIdentityTokensFromAzidentityReachGraph(t *testing.T) {
	sts := newFakeSTS(t)
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	const assertion = "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig"
	if err := os.WriteFile(file, []byte(assertion), 0o600); err != nil {
		t.Fatal(err)
	}
	azureEnv(t, map[string]string{
		"AZURE_TENANT_ID":            "tenant-wi",
		"AZURE_CLIENT_ID":            "client-wi",
		"AZURE_FEDERATED_TOKEN_FILE": file,
		// Also a secret: workload identity must still come first.
		"AZURE_CLIENT_SECRET":  "ignored",
		"AZURE_AUTHORITY_HOST": sts.srv.URL,
	})
	cred, err := graphops.NewCredential(graphops.AuthConfig{ClientOptions: sts.clientOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	e := newEnv(t, nil, func(c *graphops.Config) { c.Credential = cred })
	if _, err := e.client.UpdateRoleRequest(context.Background(), pimID, roleReq, []byte(`{}`), nil); err != nil {
		t.Fatalf("UpdateRoleRequest: %v", err)
	}
	forms, tokens := sts.seen()
	if len(forms) != 1 {
		t.Fatalf("STS saw %d token requests", len(forms))
	}
	f := forms[0]
	if f.Get("client_assertion") != assertion || f.Get("client_id") != "client-wi" ||
		f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_secret") != "" {
		t.Errorf("token request form = %v", f)
	}
	if !strings.Contains(f.Get("scope"), graphops.Scope) {
		t.Errorf("scope = %q", f.Get("scope"))
	}
	if got := e.rec.all()[0].Header.Get("Authorization"); got != "Bearer "+tokens[0] {
		t.Errorf("Authorization = %q, want Bearer <the STS token>", got)
	}
}

// fakeManagedIdentity is an App Service managed identity endpoint on
// loopback (IDENTITY_ENDPOINT and IDENTITY_HEADER), as MSAL calls it.
func fakeManagedIdentity(t *testing.T) (*httptest.Server, func() []url.Values) {
	t.Helper()
	var mu sync.Mutex
	var seen []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "mi-secret" {
			http.Error(w, "no identity header", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		seen = append(seen, r.URL.Query())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access_token":"mi-token","expires_on":"%d","resource":%q,"token_type":"Bearer"}`,
			time.Now().Add(time.Hour).Unix(), r.URL.Query().Get("resource"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []url.Values {
		mu.Lock()
		defer mu.Unlock()
		return append([]url.Values(nil), seen...)
	}
}

// TestNewCredentialChoosesFromTheEnvironment sets the variables as a pod
// would have them and checks, by the token request that reaches the local
// token endpoints, which of azidentity's credentials answered.
func TestNewCredentialChoosesFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	certPath := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certPath, selfSignedPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "azure-identity-token")
	const assertion = "service-account-token"
	if err := os.WriteFile(tokenFile, []byte(assertion), 0o600); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range ids {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		static  string
		want    string // "managed", "user-assigned", "secret", "certificate", "workload" or "static"
		wantErr string // substring naming the variable
	}{
		{name: "nothing set means managed identity", env: map[string]string{}, want: "managed"},
		{name: "a client id alone means a user-assigned managed identity", env: map[string]string{"AZURE_CLIENT_ID": "c"}, want: "user-assigned"},
		{name: "a secret means a client secret credential", env: with(map[string]string{"AZURE_CLIENT_SECRET": "s"}), want: "secret"},
		{name: "a certificate path means a client certificate credential", env: with(map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": certPath}), want: "certificate"},
		{name: "a federated token file means workload identity, before a secret", env: with(map[string]string{"AZURE_FEDERATED_TOKEN_FILE": tokenFile, "AZURE_CLIENT_SECRET": "s"}), want: "workload"},
		{name: "a secret without a tenant names AZURE_TENANT_ID", env: map[string]string{"AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}, wantErr: "AZURE_TENANT_ID"},
		{name: "a secret without a client id names AZURE_CLIENT_ID", env: map[string]string{"AZURE_TENANT_ID": "t", "AZURE_CLIENT_SECRET": "s"}, wantErr: "AZURE_CLIENT_ID"},
		{name: "a federated token file without a tenant names AZURE_TENANT_ID", env: map[string]string{"AZURE_CLIENT_ID": "c", "AZURE_FEDERATED_TOKEN_FILE": "/x"}, wantErr: "AZURE_TENANT_ID"},
		{name: "a federated token file without a client id names AZURE_CLIENT_ID", env: map[string]string{"AZURE_TENANT_ID": "t", "AZURE_FEDERATED_TOKEN_FILE": "/x"}, wantErr: "AZURE_CLIENT_ID"},
		{name: "a missing certificate file names AZURE_CLIENT_CERTIFICATE_PATH", env: with(map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": filepath.Join(dir, "nope.pem")}), wantErr: "AZURE_CLIENT_CERTIFICATE_PATH"},
		{name: "an unreadable certificate names AZURE_CLIENT_CERTIFICATE_PATH", env: with(map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": garbage}), wantErr: "AZURE_CLIENT_CERTIFICATE_PATH"},
		{name: "a plain-http authority host names AZURE_AUTHORITY_HOST", env: with(map[string]string{"AZURE_CLIENT_SECRET": "s", "AZURE_AUTHORITY_HOST": "http://login.example"}), wantErr: "AZURE_AUTHORITY_HOST"},
		{name: "a static token wins over everything", env: with(map[string]string{"AZURE_CLIENT_SECRET": "s"}), static: "static-tok", want: "static"},
		{name: "a static token with a line break names GRAPH_TOKEN", static: "a\r\nb", wantErr: "GRAPH_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := newFakeSTS(t)
			mi, miSeen := fakeManagedIdentity(t)
			env := map[string]string{"AZURE_AUTHORITY_HOST": sts.srv.URL, "IDENTITY_ENDPOINT": mi.URL, "IDENTITY_HEADER": "mi-secret"}
			for k, v := range tt.env {
				env[k] = v
			}
			azureEnv(t, env)
			cred, err := graphops.NewCredential(graphops.AuthConfig{StaticToken: tt.static,
				ClientOptions: sts.clientOptions(), DisableInstanceDiscovery: true})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{graphops.Scope}})
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			forms, _ := sts.seen()
			got := "nothing"
			switch {
			case tok.Token == "static-tok":
				got = "static"
			case len(miSeen()) == 1 && miSeen()[0].Get("client_id") == "c":
				got = "user-assigned"
			case len(miSeen()) == 1:
				got = "managed"
			case len(forms) != 1:
			case forms[0].Get("client_secret") == "s":
				got = "secret"
			case forms[0].Get("client_assertion") == assertion:
				got = "workload"
			case forms[0].Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
				got = "certificate"
			}
			if got != tt.want {
				t.Errorf("the token came from %s (STS forms %v, managed identity calls %v), want %s", got, forms, miSeen(), tt.want)
			}
		})
	}
}

func TestAStaticTokenIsSentButNeverPrinted(t *testing.T) {
	cred, err := graphops.NewCredential(graphops.AuthConfig{StaticToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil, func(c *graphops.Config) { c.Credential = cred })
	if _, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if got := e.rec.all()[0].Header.Get("Authorization"); got != "Bearer "+testToken {
		t.Errorf("Authorization = %q", got)
	}
	cfg := graphops.Config{Credential: cred, BaseURL: "https://graph.microsoft.com"}
	for _, s := range []string{fmt.Sprint(cred), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%#v", cred)} {
		if strings.Contains(s, testToken) {
			t.Errorf("printing shows the token: %s", s)
		}
	}
}

// TestTokensNeverReachLogsOrErrors runs successes and every kind of failure
// with a known token, logs them through a JSON slog handler as a worker
// would, and looks for the token in the output and in every Error() string.
func TestTokensNeverReachLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	var errs []error
	logCall := func(what string, res graphops.Result, err error) {
		if err != nil {
			errs = append(errs, err)
			var ge *graphops.Error
			if errors.As(err, &ge) {
				logger.Warn(what, "err", err, "status", ge.Status, "graph_request_id", ge.GraphRequestID, "body", string(ge.Body), "verdict", graphops.Classify(err).Class.String())
			} else {
				logger.Error(what, "err", err, "verdict", graphops.Classify(err).Class.String())
			}
			return
		}
		logger.Info(what, "result", res)
	}

	graph := newEnv(t, statusFromHeaders)
	for _, status := range []string{"200", "401", "404", "429", "503"} {
		res, err := graph.client.Resume(ctx, resumeID, []byte(`{}`), map[string]string{"X-Test-Status": status})
		logCall("resume "+status, res, err)
	}
	read := newEnv(t, answer(404, `{"error":{"code":"NotFound","message":"no such request"}}`))
	_, _, err := read.client.GetAssignmentRequest(ctx, resumeID)
	logCall("read", graphops.Result{}, err)
	_, err = graph.client.Resume(ctx, "bad/id", []byte(`{}`), nil)
	logCall("bad id", graphops.Result{}, err)

	slow := newEnv(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
		func(c *graphops.Config) { c.Timeout = 100 * time.Millisecond })
	res, err := slow.client.UpdateRoleRequest(ctx, pimID, roleReq, []byte(`{}`), nil)
	logCall("timeout", res, err)

	// A real azidentity credential whose token service refuses the client.
	sts := newFakeSTS(t)
	sts.status = http.StatusUnauthorized
	azureEnv(t, map[string]string{"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": testToken, "AZURE_AUTHORITY_HOST": sts.srv.URL})
	cred, cerr := graphops.NewCredential(graphops.AuthConfig{ClientOptions: sts.clientOptions(), DisableInstanceDiscovery: true})
	if cerr != nil {
		t.Fatal(cerr)
	}
	refused := newEnv(t, nil, func(c *graphops.Config) { c.Credential = cred })
	res, err = refused.client.Resume(ctx, resumeID, []byte(`{}`), nil)
	logCall("sts refused", res, err)
	if v := graphops.Classify(err); v.Class != graphops.ClassPermanent {
		t.Errorf("an STS refusal classified %v", v.Class)
	}
	static, _ := graphops.NewCredential(graphops.AuthConfig{StaticToken: testToken})
	logger.Info("credential", "cred", static)

	if len(errs) < 7 {
		t.Fatalf("only %d failures were exercised", len(errs))
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), testToken) {
			t.Errorf("Error() contains the token: %s", err)
		}
	}
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("the logs contain the token:\n%s", logs.String())
	}
	// The fake Graph did receive it: the check above is meaningful.
	if got := graph.rec.all()[0].Header.Get("Authorization"); got != "Bearer "+testToken {
		t.Fatalf("Authorization = %q", got)
	}
}

// selfSignedPEM returns a PEM certificate and RSA key, as
// AZURE_CLIENT_CERTIFICATE_PATH expects.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "graphops-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, key)})
	return b.Bytes()
}

func mustPKCS8(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInvalidateTokenForcesExactlyOneRefresh(t *testing.T) {
	e := newEnv(t, nil)
	resume := func() error {
		_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
		return err
	}
	_ = resume()
	e.client.InvalidateToken()
	e.cred.mu.Lock()
	e.cred.err = errors.New("token service down")
	e.cred.mu.Unlock()
	if err := resume(); err == nil {
		t.Fatal("want the failing refresh to surface")
	}
	e.cred.mu.Lock()
	e.cred.err = nil
	e.cred.mu.Unlock()
	_ = resume() // the refresh failed, so this one must still force it
	_ = resume() // and this one uses the token it brought

	reqs := e.cred.requests()
	if len(reqs) != 3 {
		t.Fatalf("credential asked %d times, want 3", len(reqs))
	}
	wantForced := []bool{false, true, true}
	for i, o := range reqs {
		if len(o.Scopes) != 1 || o.Scopes[0] != graphops.Scope || !o.EnableCAE {
			t.Errorf("request %d options = %+v, want scope %s with CAE", i, o, graphops.Scope)
		}
		if forced := o.Claims != ""; forced != wantForced[i] {
			t.Errorf("request %d forced = %v (claims %q), want %v", i, forced, o.Claims, wantForced[i])
		}
	}
}

// A Continuous Access Evaluation challenge is answered by azcore's
// bearer-token policy: a token with the challenge's claims, and the request
// sent once more (Graph refused the first one, so nothing is applied
// twice). The Observer sees both calls.
func TestACAEChallengeIsAnsweredWithItsClaims(t *testing.T) {
	const claims = `{"access_token":{"nbf":{"essential":true,"value":"1733400000"}}}`
	var mu sync.Mutex
	calls := 0
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", `+
				`client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="`+base64.StdEncoding.EncodeToString([]byte(claims))+`"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if _, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	reqs := e.cred.requests()
	if len(reqs) != 2 || reqs[0].Claims != "" || reqs[1].Claims != claims {
		t.Fatalf("token requests %+v, want an ordinary one and then one with the challenge's claims", reqs)
	}
	if n := len(e.rec.all()); n != 2 {
		t.Errorf("Graph saw %d requests, want 2", n)
	}
	if got := fmt.Sprint(e.obs.list()); got != "[{resume 401} {resume 204}]" {
		t.Errorf("observer saw %s", got)
	}
}

// A 401 without a CAE challenge is the caller's: it is returned, not
// resent, and after InvalidateToken the next call brings a forced refresh.
func TestAPlain401IsReturnedForTheRetryLoop(t *testing.T) {
	e := newEnv(t, answer(http.StatusUnauthorized, `{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired."}}`,
		"WWW-Authenticate", `Bearer realm="", error="invalid_token"`))
	_, err := e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
	if v := graphops.Classify(err); v.Class != graphops.ClassUnauthorized {
		t.Fatalf("err = %v (%v), want a 401 for the retry loop", err, v.Class)
	}
	if n := len(e.rec.all()); n != 1 {
		t.Fatalf("Graph saw %d requests, want 1", n)
	}
	e.client.InvalidateToken()
	_, _ = e.client.Resume(context.Background(), resumeID, []byte(`{}`), nil)
	reqs := e.cred.requests()
	if len(reqs) != 2 || reqs[0].Claims != "" || !strings.Contains(reqs[1].Claims, `"nbf"`) {
		t.Fatalf("token requests %+v, want an ordinary one and then a forced refresh", reqs)
	}
}
