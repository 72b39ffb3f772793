package graphsim_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/graphops/worker/internal/graphsim"
)

// BenchmarkResume measures the zero-latency resume path, the "Graph" of the
// worker's throughput benchmark: "handler" calls ServeHTTP in process,
// "loopback" goes through net/http over 127.0.0.1. Each iteration resumes a
// fresh instance of one of 1024 requests (AutoCreate), from parallel callers.
func BenchmarkResume(b *testing.B) {
	b.Run("handler", func(b *testing.B) {
		sim := graphsim.New(graphsim.Config{AutoCreate: true, MaxCalls: 1024})
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				req := httptest.NewRequest(http.MethodPost, resumeURL("req-"+strconv.FormatInt(i%1024, 10)),
					strings.NewReader(resumeBody("inst-"+strconv.FormatInt(i, 10))))
				req.Header.Set("Authorization", "Bearer t")
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				sim.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	})
	b.Run("loopback", func(b *testing.B) {
		sim := graphsim.New(graphsim.Config{AutoCreate: true, MaxCalls: 1024})
		base, err := sim.Start()
		if err != nil {
			b.Fatal(err)
		}
		defer sim.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		defer client.CloseIdleConnections()
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				req, err := http.NewRequest(http.MethodPost, base+resumeURL("req-"+strconv.FormatInt(i%1024, 10)),
					strings.NewReader(resumeBody("inst-"+strconv.FormatInt(i, 10))))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer t")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	})
}
