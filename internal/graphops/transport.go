package graphops

import (
	"crypto/tls"
	"net/http"
	"time"
)

// NewTransport returns the transport a Client uses by default: a clone of
// http.DefaultTransport (so proxy settings from the environment still apply)
// tuned for many concurrent calls to one host. There is no
// ResponseHeaderTimeout: the per-call timeout governs each call as a whole.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = true
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 0
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.MinVersion = tls.VersionTLS12
	return t
}
