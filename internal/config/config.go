// Package config reads the worker's settings (docs/SPEC.md §5) from environment
// variables and the flags of `worker run` — a flag wins over its variable —
// and validates them, naming the variable that is wrong. It knows names,
// defaults and formats; what a setting does belongs to the package using it.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/graphops/worker/internal/dlq"
	"github.com/graphops/worker/internal/graphops"
)

// Config holds every setting of `worker run`.
type Config struct {
	Source string // WORKER_SOURCE: nats | servicebus

	NATSURL      string // NATS_URL; empty: embedded server under DataDir
	DataDir      string // WORKER_DATA_DIR
	Stream       string // NATS_STREAM
	Subjects     string // NATS_SUBJECTS (comma-separated)
	Durable      string // NATS_CONSUMER
	DLQStream    string // NATS_DLQ_STREAM
	DLQPrefix    string // NATS_DLQ_SUBJECT_PREFIX
	AckWait      time.Duration
	MaxDeliver   int
	NATSCreds    string // NATS_CREDS
	StreamMaxAge time.Duration
	JSReplicas   int

	SBNamespace        string
	SBConnectionString string
	SBQueue            string
	SBTopic            string
	SBSubscription     string
	SBMaxDeliveryCount int
	SBSessions         bool // SERVICEBUS_SESSIONS: the entity is session-enabled

	GraphBaseURL      string
	GraphTimeout      time.Duration
	GraphSettle       time.Duration
	GraphToken        string
	RoleRequestUpdate string // on | off

	Concurrency     int
	RetryMaxElapsed time.Duration
	HandbackAfter   time.Duration
	RetryInitial    time.Duration
	RetryMax        time.Duration
	ShutdownGrace   time.Duration
	DryRun          bool
	AdminAddr       string
	LogLevel        string

	OutcomeEvents string // OUTCOME_EVENTS: on | off
	OutcomeStream string // NATS_OUTCOME_STREAM
	OutcomePrefix string // NATS_OUTCOME_SUBJECT_PREFIX
	SBOutcomes    string // SERVICEBUS_OUTCOMES: queue or topic of outcome events

	LedgerStore     string // LEDGER_STORE: jetstream | redis (default: by source)
	LedgerBucket    string
	LedgerRetention time.Duration
	LedgerLease     time.Duration
	RedisAddr       string
	RedisPassword   string
	RedisDB         int
	RedisTLS        bool
}

// setting is one variable/flag.
type setting struct {
	env, help string
	def       string
	secret    bool
	set       func(c *Config, v string) error
}

func settings() []setting {
	str := func(f func(c *Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *f(c) = v; return nil }
	}
	dur := func(f func(c *Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("not a duration (like 30s or 10m): %q", v)
			}
			*f(c) = d
			return nil
		}
	}
	num := func(f func(c *Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("not a whole number: %q", v)
			}
			*f(c) = n
			return nil
		}
	}
	boolean := func(f func(c *Config) *bool) func(*Config, string) error {
		return func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("not true or false: %q", v)
			}
			*f(c) = b
			return nil
		}
	}
	return []setting{
		{"WORKER_SOURCE", "where commands come from: nats or servicebus", "nats", false, str(func(c *Config) *string { return &c.Source })},
		{"NATS_URL", "NATS server URL(s); empty runs an embedded NATS server with JetStream under WORKER_DATA_DIR", "", false, str(func(c *Config) *string { return &c.NATSURL })},
		{"NATS_CREDS", "NATS credentials file (optional)", "", false, str(func(c *Config) *string { return &c.NATSCreds })},
		{"WORKER_DATA_DIR", "data directory of the embedded NATS server", "./data", false, str(func(c *Config) *string { return &c.DataDir })},
		{"NATS_STREAM", "JetStream stream of commands", "GRAPHOPS", false, str(func(c *Config) *string { return &c.Stream })},
		{"NATS_SUBJECTS", "subjects of the command stream, comma-separated", "graphops.commands.>", false, str(func(c *Config) *string { return &c.Subjects })},
		{"NATS_CONSUMER", "durable pull consumer of the command stream", "graphops-worker", false, str(func(c *Config) *string { return &c.Durable })},
		{"NATS_DLQ_STREAM", "JetStream stream of dead letters", "GRAPHOPS_DLQ", false, str(func(c *Config) *string { return &c.DLQStream })},
		{"NATS_DLQ_SUBJECT_PREFIX", "subject prefix of dead letters (<prefix>.<short type>)", "graphops.dlq", false, str(func(c *Config) *string { return &c.DLQPrefix })},
		{"NATS_ACK_WAIT", "how long a delivery stays with a worker without a keep-alive; after a crash a command is picked up again within it", "30s", false, dur(func(c *Config) *time.Duration { return &c.AckWait })},
		{"NATS_MAX_DELIVER", "deliveries of one message before its last one is dead-lettered instead of handed back (-1: unlimited)", "50", false, num(func(c *Config) *int { return &c.MaxDeliver })},
		{"NATS_STREAM_MAX_AGE", "how long the command stream keeps a message (created streams only)", "336h", false, dur(func(c *Config) *time.Duration { return &c.StreamMaxAge })},
		{"NATS_REPLICAS", "replicas of the streams and buckets the worker creates", "1", false, num(func(c *Config) *int { return &c.JSReplicas })},
		{"SERVICEBUS_NAMESPACE", "Service Bus namespace (<name>.servicebus.windows.net), with azidentity", "", false, str(func(c *Config) *string { return &c.SBNamespace })},
		{"SERVICEBUS_CONNECTION_STRING", "Service Bus connection string (instead of SERVICEBUS_NAMESPACE)", "", true, str(func(c *Config) *string { return &c.SBConnectionString })},
		{"SERVICEBUS_QUEUE", "Service Bus queue of commands", "", false, str(func(c *Config) *string { return &c.SBQueue })},
		{"SERVICEBUS_TOPIC", "Service Bus topic of commands (with SERVICEBUS_SUBSCRIPTION)", "", false, str(func(c *Config) *string { return &c.SBTopic })},
		{"SERVICEBUS_SUBSCRIPTION", "Service Bus subscription of SERVICEBUS_TOPIC", "", false, str(func(c *Config) *string { return &c.SBSubscription })},
		{"SERVICEBUS_MAX_DELIVERY_COUNT", "the entity's MaxDeliveryCount: its last delivery is dead-lettered by the worker, not handed back", "10", false, num(func(c *Config) *int { return &c.SBMaxDeliveryCount })},
		{"SERVICEBUS_SESSIONS", "the queue or subscription requires sessions (SessionId = request id): the commands of a request are applied in order", "false", false, boolean(func(c *Config) *bool { return &c.SBSessions })},
		{"GRAPH_BASE_URL", "Microsoft Graph base URL", "https://graph.microsoft.com", false, str(func(c *Config) *string { return &c.GraphBaseURL })},
		{"GRAPH_TIMEOUT", "timeout of one Graph call", "30s", false, dur(func(c *Config) *time.Duration { return &c.GraphTimeout })},
		{"GRAPH_UNANSWERED_SETTLE", "after a write that got no answer (timeout, reset, 504), how long Graph may still apply it: the command is not read, resent or taken over before then", "2m", false, dur(func(c *Config) *time.Duration { return &c.GraphSettle })},
		{"GRAPH_TOKEN", "static bearer token, for development and tests only; otherwise azidentity (workload identity, managed identity, AZURE_CLIENT_SECRET / AZURE_CLIENT_CERTIFICATE_PATH)", "", true, str(func(c *Config) *string { return &c.GraphToken })},
		{"GRAPH_ROLE_REQUEST_UPDATE", "on | off: off dead-letters role request updates as validation_failed (the PIM iteration 2 API is retired)", "on", false, str(func(c *Config) *string { return &c.RoleRequestUpdate })},
		{"WORKER_CONCURRENCY", "cap on the commands a process works on at once (waits included); below it the number follows Graph's rate and latency (Little's law), so the default suits Graph at hundreds of writes/s answering in hundreds of ms", "256", false, num(func(c *Config) *int { return &c.Concurrency })},
		{"RETRY_MAX_ELAPSED", "retry budget of a command from its first attempt; then retries_exhausted", "10m", false, dur(func(c *Config) *time.Duration { return &c.RetryMaxElapsed })},
		{"RETRY_HANDBACK_AFTER", "a wait longer than this hands the message back to the broker with a delay", "30s", false, dur(func(c *Config) *time.Duration { return &c.HandbackAfter })},
		{"RETRY_INITIAL_INTERVAL", "first backoff after a failed call (exponential, with jitter)", "500ms", false, dur(func(c *Config) *time.Duration { return &c.RetryInitial })},
		{"RETRY_MAX_INTERVAL", "longest backoff between two calls", "30s", false, dur(func(c *Config) *time.Duration { return &c.RetryMax })},
		{"SHUTDOWN_GRACE", "on SIGTERM, time to finish or hand back in-flight commands", "25s", false, dur(func(c *Config) *time.Duration { return &c.ShutdownGrace })},
		{"WORKER_DRY_RUN", "validate and log the call each command would make; call and record nothing", "false", false, boolean(func(c *Config) *bool { return &c.DryRun })},
		{"ADMIN_ADDR", "address of /metrics, /healthz and /readyz", ":9464", false, str(func(c *Config) *string { return &c.AdminAddr })},
		{"LOG_LEVEL", "debug | info | warn | error", "info", false, str(func(c *Config) *string { return &c.LogLevel })},
		{"OUTCOME_EVENTS", "on | off: publish a graphops.command.outcome CloudEvent for every settled command, before it is acknowledged", "off", false, str(func(c *Config) *string { return &c.OutcomeEvents })},
		{"NATS_OUTCOME_STREAM", "JetStream stream of outcome events (created when missing)", "GRAPHOPS_OUTCOMES", false, str(func(c *Config) *string { return &c.OutcomeStream })},
		{"NATS_OUTCOME_SUBJECT_PREFIX", "subject prefix of outcome events (<prefix>.<short type>)", "graphops.outcomes", false, str(func(c *Config) *string { return &c.OutcomePrefix })},
		{"SERVICEBUS_OUTCOMES", "Service Bus queue or topic of outcome events (required with OUTCOME_EVENTS=on and WORKER_SOURCE=servicebus)", "", false, str(func(c *Config) *string { return &c.SBOutcomes })},
		{"LEDGER_STORE", "idempotency store: jetstream (default with nats) or redis (default with servicebus)", "", false, str(func(c *Config) *string { return &c.LedgerStore })},
		{"LEDGER_BUCKET", "JetStream KV bucket of the ledger", "GRAPHOPS_LEDGER", false, str(func(c *Config) *string { return &c.LedgerBucket })},
		{"LEDGER_RETENTION", "how long outcomes are remembered (longer than any redelivery window)", "168h", false, dur(func(c *Config) *time.Duration { return &c.LedgerRetention })},
		{"LEDGER_LEASE", "lease of a claim and of a request id; a crashed replica's work is taken over after it", "30s", false, dur(func(c *Config) *time.Duration { return &c.LedgerLease })},
		{"REDIS_ADDR", "Redis address of the ledger (LEDGER_STORE=redis)", "127.0.0.1:6379", false, str(func(c *Config) *string { return &c.RedisAddr })},
		{"REDIS_PASSWORD", "Redis password", "", true, str(func(c *Config) *string { return &c.RedisPassword })},
		{"REDIS_DB", "Redis database number", "0", false, num(func(c *Config) *int { return &c.RedisDB })},
		{"REDIS_TLS", "connect to Redis over TLS (Azure Cache for Redis, port 6380)", "false", false, boolean(func(c *Config) *bool { return &c.RedisTLS })},
	}
}

// FlagName is the flag of a variable: NATS_URL → nats-url.
func FlagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

// Load reads the settings from getenv and args (the flags of `worker run`)
// and validates them. The error is one line naming the setting.
func Load(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("worker run", flag.ContinueOnError)
	fs.SetOutput(usage)
	all := settings()
	vals := make(map[string]*string, len(all))
	for _, s := range all {
		v := new(string)
		vals[s.env] = v
		fs.StringVar(v, FlagName(s.env), "", s.help+" (env "+s.env+")")
	}
	fs.Usage = func() { Usage(usage) }
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c := &Config{}
	for _, s := range all {
		v, from := s.def, s.env
		if e := getenv(s.env); e != "" {
			v = e
		}
		if given[FlagName(s.env)] {
			v, from = *vals[s.env], "--"+FlagName(s.env)
		}
		if err := s.set(c, v); err != nil {
			if from != s.env {
				from += " (" + s.env + ")"
			}
			return nil, fmt.Errorf("%s: %w", from, err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Usage prints every setting with its variable, flag and default.
func Usage(w io.Writer) {
	fmt.Fprintln(w, "Settings of `worker run` (environment variable, or the flag, which wins):")
	for _, s := range settings() {
		def := s.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  %-30s --%-30s default %s\n      %s\n", s.env, FlagName(s.env), def, s.help)
	}
	fmt.Fprintln(w, `
Graph credentials without GRAPH_TOKEN (read by azidentity; environment only, no flags):
  AZURE_TENANT_ID, AZURE_CLIENT_ID    the app registration (workload identity, client secret or
                                      certificate); AZURE_CLIENT_ID alone picks a user-assigned
                                      managed identity
  AZURE_FEDERATED_TOKEN_FILE          workload identity (set by the AKS webhook)
  AZURE_CLIENT_SECRET                 a client secret
  AZURE_CLIENT_CERTIFICATE_PATH       a client certificate (PEM or PKCS#12), and
  AZURE_CLIENT_CERTIFICATE_PASSWORD   its password, if any
  AZURE_AUTHORITY_HOST                the Entra ID authority (national clouds), https only
  AZURE_ADDITIONALLY_ALLOWED_TENANTS  tenants besides AZURE_TENANT_ID tokens may be requested for
  With none of them, the pod's managed identity.`)
}

// Validate checks values and combinations, naming the variable at fault.
func (c *Config) Validate() error {
	var errs []error
	bad := func(env, format string, a ...any) { errs = append(errs, fmt.Errorf(env+": "+format, a...)) }
	switch c.Source {
	case "nats":
		if c.NATSURL == "" && c.DataDir == "" {
			bad("WORKER_DATA_DIR", "required when NATS_URL is empty (the embedded server keeps its data there)")
		}
		if c.NATSURL != "" {
			for _, u := range strings.Split(c.NATSURL, ",") {
				if p, err := url.Parse(strings.TrimSpace(u)); err != nil || p.Host == "" {
					bad("NATS_URL", "not a URL like nats://host:4222: %q", u)
				}
			}
		}
	case "servicebus":
		if (c.SBNamespace == "") == (c.SBConnectionString == "") {
			bad("SERVICEBUS_NAMESPACE", "set exactly one of SERVICEBUS_NAMESPACE and SERVICEBUS_CONNECTION_STRING")
		}
		if (c.SBQueue == "") == (c.SBTopic == "") {
			bad("SERVICEBUS_QUEUE", "set exactly one of SERVICEBUS_QUEUE and SERVICEBUS_TOPIC")
		}
		if c.SBTopic != "" && c.SBSubscription == "" {
			bad("SERVICEBUS_SUBSCRIPTION", "required with SERVICEBUS_TOPIC")
		}
		if c.SBMaxDeliveryCount < 1 {
			bad("SERVICEBUS_MAX_DELIVERY_COUNT", "must be at least 1 (the entity's MaxDeliveryCount), not %d", c.SBMaxDeliveryCount)
		}
	default:
		bad("WORKER_SOURCE", "must be nats or servicebus, not %q", c.Source)
	}
	if c.Source == "nats" {
		for env, v := range map[string]string{"NATS_STREAM": c.Stream, "NATS_DLQ_STREAM": c.DLQStream, "NATS_CONSUMER": c.Durable, "LEDGER_BUCKET": c.LedgerBucket} {
			if v == "" || strings.ContainsAny(v, " .*>\t/\\") {
				bad(env, "must be a non-empty name without spaces, dots, wildcards or slashes: %q", v)
			}
		}
		if c.Subjects == "" {
			bad("NATS_SUBJECTS", "required")
		}
		for _, s := range c.SubjectList() {
			if !dlq.ValidSubject(s, true) {
				bad("NATS_SUBJECTS", "not a subject filter (dot-separated tokens, * a whole token, > only last): %q", s)
			}
		}
		if !dlq.ValidSubject(c.DLQPrefix, false) {
			bad("NATS_DLQ_SUBJECT_PREFIX", "must be a subject prefix without wildcards: %q", c.DLQPrefix)
		}
		if c.AckWait < time.Second {
			bad("NATS_ACK_WAIT", "must be at least 1s, not %s", c.AckWait)
		}
		if c.StreamMaxAge < c.AckWait {
			bad("NATS_STREAM_MAX_AGE", "must be at least NATS_ACK_WAIT (%s), not %s", c.AckWait, c.StreamMaxAge)
		}
		if c.MaxDeliver == 0 || c.MaxDeliver < -1 {
			bad("NATS_MAX_DELIVER", "must be -1 (unlimited) or at least 1, not %d", c.MaxDeliver)
		}
		if c.JSReplicas < 1 || c.JSReplicas > 5 {
			bad("NATS_REPLICAS", "must be 1 to 5, not %d", c.JSReplicas)
		}
		if c.NATSCreds != "" {
			if f, err := os.Open(c.NATSCreds); err != nil {
				bad("NATS_CREDS", "cannot read the credentials file: %v", err)
			} else {
				f.Close()
			}
		}
	}
	if err := graphops.CheckBaseURL(c.GraphBaseURL); err != nil {
		bad("GRAPH_BASE_URL", "%v", err)
	}
	positive(&errs, "GRAPH_TIMEOUT", c.GraphTimeout)
	positive(&errs, "GRAPH_UNANSWERED_SETTLE", c.GraphSettle)
	if c.RoleRequestUpdate != "on" && c.RoleRequestUpdate != "off" {
		bad("GRAPH_ROLE_REQUEST_UPDATE", "must be on or off, not %q", c.RoleRequestUpdate)
	}
	switch c.OutcomeEvents {
	case "off":
	case "on":
		if c.Source == "servicebus" && c.SBOutcomes == "" {
			bad("SERVICEBUS_OUTCOMES", "required with OUTCOME_EVENTS=on on Service Bus")
		}
		if c.Source == "nats" && (c.OutcomeStream == "" || strings.ContainsAny(c.OutcomeStream, " .*>\t/\\")) {
			bad("NATS_OUTCOME_STREAM", "must be a non-empty name without spaces, dots, wildcards or slashes: %q", c.OutcomeStream)
		}
		if c.Source == "nats" && (c.OutcomePrefix == "" || strings.ContainsAny(c.OutcomePrefix, " *>")) {
			bad("NATS_OUTCOME_SUBJECT_PREFIX", "must be a subject prefix without wildcards: %q", c.OutcomePrefix)
		}
	default:
		bad("OUTCOME_EVENTS", "must be on or off, not %q", c.OutcomeEvents)
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		bad("WORKER_CONCURRENCY", "must be 1 to 4096, not %d", c.Concurrency)
	}
	positive(&errs, "RETRY_MAX_ELAPSED", c.RetryMaxElapsed)
	positive(&errs, "RETRY_HANDBACK_AFTER", c.HandbackAfter)
	positive(&errs, "RETRY_INITIAL_INTERVAL", c.RetryInitial)
	positive(&errs, "RETRY_MAX_INTERVAL", c.RetryMax)
	if c.RetryMax > 0 && c.RetryInitial > c.RetryMax {
		bad("RETRY_INITIAL_INTERVAL", "must not exceed RETRY_MAX_INTERVAL")
	}
	positive(&errs, "SHUTDOWN_GRACE", c.ShutdownGrace)
	if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
		bad("ADMIN_ADDR", "not host:port: %q", c.AdminAddr)
	}
	if _, err := c.Level(); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	switch c.LedgerStore {
	case "":
		c.LedgerStore = "jetstream"
		if c.Source == "servicebus" {
			c.LedgerStore = "redis"
		}
	case "jetstream":
		if c.Source != "nats" {
			bad("LEDGER_STORE", "jetstream needs WORKER_SOURCE=nats; use redis with servicebus")
		}
	case "redis":
	default:
		bad("LEDGER_STORE", "must be jetstream or redis, not %q", c.LedgerStore)
	}
	positive(&errs, "LEDGER_RETENTION", c.LedgerRetention)
	positive(&errs, "LEDGER_LEASE", c.LedgerLease)
	if c.LedgerStore == "redis" && c.RedisAddr == "" {
		bad("REDIS_ADDR", "required with LEDGER_STORE=redis")
	}
	if c.RedisDB < 0 {
		bad("REDIS_DB", "must not be negative, not %d", c.RedisDB)
	}
	if c.Source == "nats" && c.LedgerLease > 0 && c.AckWait > 0 && c.LedgerLease < c.AckWait/2 {
		bad("LEDGER_LEASE", "must be at least half of NATS_ACK_WAIT (%s)", c.AckWait)
	}
	if c.LedgerRetention > 0 && c.LedgerRetention < 2*c.RetryMaxElapsed {
		bad("LEDGER_RETENTION", "must be at least twice RETRY_MAX_ELAPSED, longer than any redelivery window")
	}
	if len(errs) > 0 {
		return errs[0] // one clear line: the first problem
	}
	return nil
}

// Level is the slog level of LOG_LEVEL.
func (c *Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, errors.New("must be debug, info, warn or error")
	}
	return l, nil
}

// SubjectList splits NATS_SUBJECTS.
func (c *Config) SubjectList() []string {
	var out []string
	for _, s := range strings.Split(c.Subjects, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func positive(errs *[]error, env string, d time.Duration) {
	if d <= 0 {
		*errs = append(*errs, fmt.Errorf("%s: must be a positive duration", env))
	}
}
