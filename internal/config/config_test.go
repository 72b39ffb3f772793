package config_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/graphops/worker/internal/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsMatchTheSpec(t *testing.T) {
	c, err := config.Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"WORKER_SOURCE", c.Source, "nats"},
		{"NATS_URL", c.NATSURL, ""},
		{"WORKER_DATA_DIR", c.DataDir, "./data"},
		{"NATS_STREAM", c.Stream, "GRAPHOPS"},
		{"NATS_SUBJECTS", c.Subjects, "graphops.commands.>"},
		{"NATS_CONSUMER", c.Durable, "graphops-worker"},
		{"NATS_DLQ_STREAM", c.DLQStream, "GRAPHOPS_DLQ"},
		{"GRAPH_BASE_URL", c.GraphBaseURL, "https://graph.microsoft.com"},
		{"GRAPH_TIMEOUT", c.GraphTimeout, 30 * time.Second},
		{"RETRY_MAX_ELAPSED", c.RetryMaxElapsed, 10 * time.Minute},
		{"RETRY_HANDBACK_AFTER", c.HandbackAfter, 30 * time.Second},
		{"SHUTDOWN_GRACE", c.ShutdownGrace, 25 * time.Second},
		{"ADMIN_ADDR", c.AdminAddr, ":9464"},
		{"NATS_ACK_WAIT", c.AckWait, 30 * time.Second},
		{"LEDGER_RETENTION", c.LedgerRetention, 7 * 24 * time.Hour},
		{"LEDGER_STORE", c.LedgerStore, "jetstream"},
		{"WORKER_DRY_RUN", c.DryRun, false},
		// A cap: 100 writes/s answered in 300ms need about 85 (pacer.InFlight).
		{"WORKER_CONCURRENCY", c.Concurrency, 256},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s defaults to %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestAFlagWinsOverItsVariable(t *testing.T) {
	c, err := config.Load([]string{"--worker-concurrency", "7"}, env(map[string]string{"WORKER_CONCURRENCY": "3", "GRAPH_TIMEOUT": "5s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != 7 || c.GraphTimeout != 5*time.Second {
		t.Fatalf("concurrency %d timeout %s; want 7 (flag) and 5s (env)", c.Concurrency, c.GraphTimeout)
	}
}

func TestBadConfigurationNamesTheSetting(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"an unknown source", map[string]string{"WORKER_SOURCE": "kafka"}, nil, "WORKER_SOURCE"},
		{"a timeout that is not a duration", map[string]string{"GRAPH_TIMEOUT": "soon"}, nil, "GRAPH_TIMEOUT"},
		{"a flag that is not a duration", nil, []string{"--retry-max-elapsed", "x"}, "--retry-max-elapsed (RETRY_MAX_ELAPSED)"},
		{"zero concurrency", map[string]string{"WORKER_CONCURRENCY": "0"}, nil, "WORKER_CONCURRENCY"},
		{"a plain-http Graph on a remote host", map[string]string{"GRAPH_BASE_URL": "http://graph.example.com"}, nil, "GRAPH_BASE_URL"},
		{"a bad role switch", map[string]string{"GRAPH_ROLE_REQUEST_UPDATE": "maybe"}, nil, "GRAPH_ROLE_REQUEST_UPDATE"},
		{"service bus without an entity", map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_NAMESPACE": "x.servicebus.windows.net"}, nil, "SERVICEBUS_QUEUE"},
		{"a jetstream ledger with service bus", map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_NAMESPACE": "x", "SERVICEBUS_QUEUE": "q", "LEDGER_STORE": "jetstream"}, nil, "LEDGER_STORE"},
		{"a bad log level", map[string]string{"LOG_LEVEL": "loud"}, nil, "LOG_LEVEL"},
		{"an admin address without a port", map[string]string{"ADMIN_ADDR": "localhost"}, nil, "ADMIN_ADDR"},
		{"a wildcard stream name", map[string]string{"NATS_STREAM": "A.>"}, nil, "NATS_STREAM"},
		{"max deliver zero", map[string]string{"NATS_MAX_DELIVER": "0"}, nil, "NATS_MAX_DELIVER"},
		{"an empty subject token", map[string]string{"NATS_SUBJECTS": "acme..commands.>"}, nil, "NATS_SUBJECTS"},
		{"a subject with a space", map[string]string{"NATS_SUBJECTS": "acme commands"}, nil, "NATS_SUBJECTS"},
		{"a > before the last token", map[string]string{"NATS_SUBJECTS": "acme.>.x"}, nil, "NATS_SUBJECTS"},
		{"a dead-letter prefix ending in a dot", map[string]string{"NATS_DLQ_SUBJECT_PREFIX": "acme."}, nil, "NATS_DLQ_SUBJECT_PREFIX"},
		{"an ack wait under a second", map[string]string{"NATS_ACK_WAIT": "500ms"}, nil, "NATS_ACK_WAIT"},
		{"a stream that keeps messages less than the ack wait", map[string]string{"NATS_STREAM_MAX_AGE": "10s"}, nil, "NATS_STREAM_MAX_AGE"},
		{"a zero max delivery count", map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_NAMESPACE": "x", "SERVICEBUS_QUEUE": "q", "SERVICEBUS_MAX_DELIVERY_COUNT": "0"}, nil, "SERVICEBUS_MAX_DELIVERY_COUNT"},
		{"a negative Redis database", map[string]string{"REDIS_DB": "-1"}, nil, "REDIS_DB"},
		{"a credentials file that is not there", map[string]string{"NATS_CREDS": "/nonexistent/user.creds"}, nil, "NATS_CREDS"},
		{"a Graph URL with user info", map[string]string{"GRAPH_BASE_URL": "https://some-secret@graph.microsoft.com"}, nil, "GRAPH_BASE_URL"},
		{"a Graph URL with a query", map[string]string{"GRAPH_BASE_URL": "https://graph.microsoft.com/?sig=some-secret"}, nil, "GRAPH_BASE_URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(tc.args, env(tc.env), io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line starting with %s", err, tc.want)
			}
		})
	}
}

func TestServiceBusDefaultsToARedisLedger(t *testing.T) {
	c, err := config.Load(nil, env(map[string]string{"WORKER_SOURCE": "servicebus", "SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://x/", "SERVICEBUS_QUEUE": "q"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.LedgerStore != "redis" {
		t.Fatalf("ledger %q, want redis", c.LedgerStore)
	}
}

func TestUsageListsEveryVariableOfTheSpec(t *testing.T) {
	var b strings.Builder
	config.Usage(&b)
	for _, v := range []string{"WORKER_SOURCE", "NATS_URL", "WORKER_DATA_DIR", "SERVICEBUS_NAMESPACE", "SERVICEBUS_CONNECTION_STRING",
		"SERVICEBUS_QUEUE", "SERVICEBUS_TOPIC", "SERVICEBUS_SUBSCRIPTION", "GRAPH_BASE_URL", "GRAPH_TIMEOUT", "GRAPH_TOKEN",
		"WORKER_CONCURRENCY", "RETRY_MAX_ELAPSED", "SHUTDOWN_GRACE", "WORKER_DRY_RUN", "ADMIN_ADDR", "LOG_LEVEL",
		"RETRY_HANDBACK_AFTER", "GRAPH_ROLE_REQUEST_UPDATE", "--nats-url"} {
		if !strings.Contains(b.String(), v) {
			t.Errorf("usage does not mention %s", v)
		}
	}
}

// TestUsageNamesTheAzureVariables: --help documents every variable the
// worker reads (docs/SPEC.md §8), azidentity's included.
func TestUsageNamesTheAzureVariables(t *testing.T) {
	var b strings.Builder
	config.Usage(&b)
	for _, v := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_SECRET",
		"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_AUTHORITY_HOST", "AZURE_ADDITIONALLY_ALLOWED_TENANTS"} {
		if !strings.Contains(b.String(), v) {
			t.Errorf("--help does not name %s", v)
		}
	}
}

// TestABadGraphURLIsNotEchoedWithItsSecrets: GRAPH_BASE_URL's error names
// the setting without quoting user info or a query, which may be
// credentials.
func TestABadGraphURLIsNotEchoedWithItsSecrets(t *testing.T) {
	for _, u := range []string{"http://admin:some-secret@example.com", "https://some-secret@graph.microsoft.com",
		"http://127.0.0.1:1/?sig=some-secret", "https://graph.microsoft.com/#some-secret", "ht tp://some-secret"} {
		_, err := config.Load(nil, env(map[string]string{"GRAPH_BASE_URL": u}), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), "GRAPH_BASE_URL") || strings.Contains(err.Error(), "some-secret") {
			t.Errorf("%s: error %v, want one naming GRAPH_BASE_URL without the secret", u, err)
		}
	}
}
