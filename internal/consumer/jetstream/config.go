package jetstream

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/graphops/worker/internal/consumer"
	"github.com/graphops/worker/internal/dlq"
)

// Defaults of Config (docs/SPEC.md §3, §4, §5).
const (
	DefaultStream     = "GRAPHOPS"
	DefaultSubject    = "graphops.commands.>"
	DefaultDurable    = "graphops-worker"
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 50
	// DefaultStreamMaxAge is the longest callback timeout of an access
	// package custom extension: a command older than that is useless, and
	// keeping it that long lets a dry-run consumer read what the real one
	// already acknowledged.
	DefaultStreamMaxAge = 14 * 24 * time.Hour
	// DefaultMaxAckPending is the server's own default.
	DefaultMaxAckPending = 1000

	// minMsgSize is the smallest stream message limit allowed: the stream
	// must not refuse a command the worker would dead-letter for its size.
	minMsgSize = 1 << 20
)

// Config names the stream and the durable consumer and sets their limits.
// Zero fields take the defaults; Validate fills them in.
type Config struct {
	// Stream is the stream holding the commands; default "GRAPHOPS".
	Stream string
	// Subjects of the stream; default ["graphops.commands.>"]. The consumer
	// reads the whole stream, whatever the subject.
	Subjects []string
	// Durable is the pull consumer's name; default "graphops-worker". A dry
	// run uses a durable of its own, so that it does not take commands from
	// the real consumers.
	Durable string
	// AckWait is how long the server waits for an Ack or a KeepAlive before
	// it redelivers; default 30s (after a crash a command is picked up again
	// within AckWait).
	AckWait time.Duration
	// MaxDeliver is how often a message is delivered at most; default 50,
	// -1 for no limit. Message.Last is true on delivery MaxDeliver.
	MaxDeliver int
	// Concurrency is the number of handlers running at once, and also the
	// most messages this source holds unsettled; default 16
	// (WORKER_CONCURRENCY).
	Concurrency int
	// MaxAckPending caps the messages delivered and not yet settled across
	// every replica reading the durable; default the larger of 1000 and
	// 2×Concurrency. It must not be below Concurrency.
	MaxAckPending int
	// MaxMsgSize is the stream's largest message; default -1: the server's
	// max_payload less what a dead letter adds to a message (16 KiB), so
	// that whatever the stream accepts can be dead-lettered. Otherwise at
	// least 1 MiB.
	MaxMsgSize int32
	// StreamMaxAge is how long the stream keeps a message, acknowledged or
	// not; default 14 days.
	StreamMaxAge time.Duration
	// Replicas of the stream; default 1.
	Replicas int
	// AckAsync makes Ack fire-and-forget (jetstream Msg.Ack). By default Ack
	// waits for the server's confirmation (Msg.DoubleAck), so a handler
	// learns of an ack lost in a broker restart.
	AckAsync bool
	// Limit, when set, caps the messages in flight below Concurrency at
	// what the worker can use now (see consumer.Slots); 0 pauses fetching.
	Limit func() int
	// DeadLetters is where Message.DeadLetter stores dead letters (the
	// dead-letter stream, *dlq.Store); without it DeadLetter fails.
	DeadLetters DeadLetters
}

// DeadLetters stores a dead letter; a Put with a dedupID given before
// stores nothing new (*dlq.Store).
type DeadLetters interface {
	Put(ctx context.Context, e dlq.Entry, dedupID string) (uint64, error)
}

// ConfigError names the setting that is wrong: the one type of every
// adapter, consumer.ConfigError.
type ConfigError = consumer.ConfigError

// Validate fills zero fields with their defaults and reports the first
// setting that is wrong.
func (c *Config) Validate() error {
	c.setDefaults()
	bad := func(setting, format string, args ...any) error {
		return &ConfigError{Setting: setting, Problem: fmt.Sprintf(format, args...)}
	}
	if err := checkName(c.Stream); err != "" {
		return bad("Stream", "%q %s", c.Stream, err)
	}
	if err := checkName(c.Durable); err != "" {
		return bad("Durable", "%q %s", c.Durable, err)
	}
	for _, s := range c.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") || strings.HasPrefix(s, ".") ||
			strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
			return bad("Subjects", "%q is not a valid NATS subject", s)
		}
	}
	switch {
	case c.AckWait < time.Second:
		return bad("AckWait", "must be at least 1s, got %s", c.AckWait)
	case c.MaxDeliver < -1:
		return bad("MaxDeliver", "must be ≥ 1, or -1 for no limit, got %d", c.MaxDeliver)
	case c.Concurrency < 1:
		return bad("WORKER_CONCURRENCY", "must be ≥ 1, got %d", c.Concurrency)
	case c.MaxAckPending < c.Concurrency:
		return bad("MaxAckPending", "must be ≥ WORKER_CONCURRENCY (%d), got %d", c.Concurrency, c.MaxAckPending)
	case c.MaxMsgSize != -1 && c.MaxMsgSize < minMsgSize:
		return bad("MaxMsgSize", "must be -1 (server limit) or at least %d bytes, got %d", minMsgSize, c.MaxMsgSize)
	case c.StreamMaxAge < c.AckWait:
		return bad("StreamMaxAge", "must be at least AckWait (%s), got %s", c.AckWait, c.StreamMaxAge)
	case c.Replicas < 1 || c.Replicas > 5:
		return bad("Replicas", "must be between 1 and 5, got %d", c.Replicas)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if len(c.Subjects) == 0 {
		c.Subjects = []string{DefaultSubject}
	}
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.Concurrency == 0 {
		c.Concurrency = consumer.DefaultConcurrency
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = max(DefaultMaxAckPending, 2*c.Concurrency)
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = -1
	}
	if c.StreamMaxAge == 0 {
		c.StreamMaxAge = DefaultStreamMaxAge
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
}

// checkName returns why name cannot name a stream or consumer, "" if it can.
func checkName(name string) string {
	if strings.ContainsAny(name, ".*> \t\r\n/\\") {
		return "must not contain '.', '*', '>', '/', '\\' or whitespace"
	}
	return ""
}
