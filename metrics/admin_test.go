package metrics_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/graphops/worker/metrics"
)

func TestHealthzAnswersOKWhileTheProcessIsAlive(t *testing.T) {
	// Liveness must not follow readiness: a broker outage must not get the
	// pod restarted.
	a := startAdmin(t, metrics.New(), func() error { return errors.New("broker: not connected") })
	status, body, _ := get(t, a, "/healthz")
	if status != http.StatusOK || body != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\"", status, body)
	}
}

func TestReadyzFollowsTheReadyCheck(t *testing.T) {
	var reason atomic.Pointer[string]
	ready := func() error {
		if r := reason.Load(); r != nil {
			return errors.New(*r)
		}
		return nil
	}
	m := metrics.New()
	a := startAdmin(t, m, ready)
	readyGauge := func() float64 { return series(scrape(t, a))[key("graphops_ready")] }

	steps := []struct {
		name       string
		reason     string // "" = ready
		wantStatus int
		wantBody   string
		wantGauge  float64
	}{
		{"a connected worker is ready", "", http.StatusOK, "ready", 1},
		{"a draining worker answers 503 with the reason", "draining", http.StatusServiceUnavailable, "draining", 0},
		{"a worker that lost the ledger names it", "ledger: not connected", http.StatusServiceUnavailable, "ledger: not connected", 0},
		{"a worker that reconnects is ready again", "", http.StatusOK, "ready", 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.reason == "" {
				reason.Store(nil)
			} else {
				r := s.reason
				reason.Store(&r)
			}
			status, body, header := get(t, a, "/readyz")
			if status != s.wantStatus || body != s.wantBody {
				t.Errorf("GET /readyz = %d %q, want %d %q", status, body, s.wantStatus, s.wantBody)
			}
			if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", ct)
			}
			if g := readyGauge(); g != s.wantGauge {
				t.Errorf("graphops_ready = %v, want %v", g, s.wantGauge)
			}
		})
	}
}

func TestReadyzWithoutACheckIsReady(t *testing.T) {
	a := startAdmin(t, metrics.New(), nil)
	if status, body, _ := get(t, a, "/readyz"); status != http.StatusOK || body != "ready" {
		t.Fatalf("GET /readyz = %d %q, want 200 \"ready\"", status, body)
	}
}

func TestAdminRoutes(t *testing.T) {
	a := startAdmin(t, metrics.New(), nil)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"an unknown path is not found", http.MethodGet, "/debug/pprof/", http.StatusNotFound},
		{"a POST to a probe is refused", http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
		{"a HEAD probe is answered", http.MethodHead, "/readyz", http.StatusOK},
		{"metrics are served", http.MethodGet, "/metrics", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://"+a.Addr()+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}

func TestStartFailsNamingADMIN_ADDRWhenTheAddressIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	a := metrics.NewAdmin(metrics.AdminConfig{Addr: ln.Addr().String()}, metrics.New(), nil)
	err = a.Start()
	if err == nil {
		_ = a.Shutdown(context.Background())
		t.Fatal("Start on a taken address succeeded")
	}
	if !strings.HasPrefix(err.Error(), "ADMIN_ADDR") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("error %q should name ADMIN_ADDR and the address", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans several lines", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %q does not wrap EADDRINUSE", err)
	}
	if a.Addr() != "" {
		t.Errorf("Addr() = %q after a failed Start, want \"\"", a.Addr())
	}
}

func TestAdminConfigValidateNamesADMIN_ADDR(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		wantErr bool
	}{
		{"the default is valid", "", false},
		{"a port on every interface is valid", ":9464", false},
		{"a loopback port is valid", "127.0.0.1:0", false},
		{"an IPv6 address is valid", "[::1]:9464", false},
		{"a missing port is refused", "localhost", true},
		{"a named port is refused", ":http", true},
		{"a port out of range is refused", ":70000", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := metrics.AdminConfig{Addr: tt.addr}.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate(%q) = %v, wantErr %v", tt.addr, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "ADMIN_ADDR") {
				t.Errorf("error %q does not name ADMIN_ADDR", err)
			}
		})
	}
}

func TestShutdownStopsServing(t *testing.T) {
	a := metrics.NewAdmin(metrics.AdminConfig{Addr: "127.0.0.1:0"}, metrics.New(), nil)
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start = %v, want nil", err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	addr := a.Addr()
	if status, _, _ := get(t, a, "/healthz"); status != http.StatusOK {
		t.Fatalf("GET /healthz = %d before shutdown", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /healthz after Shutdown answered %d, want a refused connection", resp.StatusCode)
	}
	if err := a.Start(); err == nil {
		t.Error("Start after Shutdown succeeded; an Admin is single-use")
	}
}

func TestDefaultAdminAddrIsTheSpecPort(t *testing.T) {
	if metrics.DefaultAdminAddr != ":9464" {
		t.Fatalf("DefaultAdminAddr = %q, SPEC §5 says :9464", metrics.DefaultAdminAddr)
	}
}
