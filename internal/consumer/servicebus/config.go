package servicebus

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
)

// Defaults of Config.
const (
	// DefaultMaxDeliveryCount is Service Bus's own default for a queue or
	// subscription.
	DefaultMaxDeliveryCount = 10

	// namespaceSuffix completes a bare SERVICEBUS_NAMESPACE name (public
	// cloud); a name with a dot is taken as fully qualified.
	namespaceSuffix = ".servicebus.windows.net"
	// maxReceive is the most messages the SDK lets one ReceiveMessages ask
	// for (its link credit limit).
	maxReceive = 5000
)

// Config names the Service Bus entity and how to reach it. Exactly one of
// Namespace and ConnectionString, and either Queue or Topic with
// Subscription, must be set.
type Config struct {
	// Namespace (SERVICEBUS_NAMESPACE) is the namespace to reach with
	// Credential: "<name>.servicebus.windows.net", or just "<name>".
	Namespace string
	// ConnectionString (SERVICEBUS_CONNECTION_STRING) authenticates with a
	// shared access key or signature instead of Credential.
	ConnectionString string
	// Queue (SERVICEBUS_QUEUE) is the queue of commands.
	Queue string
	// Topic and Subscription (SERVICEBUS_TOPIC, SERVICEBUS_SUBSCRIPTION):
	// the commands are read from the subscription; copies this package
	// sends (hand-backs, replays) go to the topic.
	Topic, Subscription string

	// Concurrency is the number of handlers running at once, and also the
	// most messages this source holds locked; default 16
	// (WORKER_CONCURRENCY).
	Concurrency int
	// MaxDeliveryCount must equal the entity's MaxDeliveryCount setting
	// (Service Bus's default 10): Message.Last is true on that delivery,
	// after which Service Bus dead-letters the message by itself.
	MaxDeliveryCount int
	// Sessions (SERVICEBUS_SESSIONS) reads a session-enabled entity: up to
	// Concurrency sessions at once, one message of a session at a time,
	// in order; such messages are InOrder and a hand-back abandons them.
	Sessions bool
	// Peek makes Run browse the entity instead of locking messages (a dry
	// run): every message is seen once and settling it does nothing, so
	// the commands stay for the real consumers.
	Peek bool

	// Credential is used with Namespace; default azidentity's
	// DefaultAzureCredential (workload identity, managed identity, or the
	// AZURE_* client secret or certificate variables).
	Credential azcore.TokenCredential
	// ClientOptions are passed to the SDK client (retry settings, a
	// websocket or proxy dialer); nil for the SDK's defaults.
	ClientOptions *azservicebus.ClientOptions
	// Limit, when set, caps the messages in flight below Concurrency at
	// what the worker can use now (see consumer.Slots); 0 pauses fetching.
	Limit func() int
}

// ConfigError names the setting that is wrong: the one type of every
// adapter, consumer.ConfigError.
type ConfigError = consumer.ConfigError

// Validate fills zero fields with their defaults, completes a bare
// namespace name, and reports the first setting that is wrong.
func (c *Config) Validate() error {
	if c.Concurrency == 0 {
		c.Concurrency = consumer.DefaultConcurrency
	}
	if c.MaxDeliveryCount == 0 {
		c.MaxDeliveryCount = DefaultMaxDeliveryCount
	}
	c.Namespace = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(c.Namespace), "sb://"), "/")
	if c.Namespace != "" && !strings.Contains(c.Namespace, ".") {
		c.Namespace += namespaceSuffix
	}
	bad := func(setting, format string, args ...any) error {
		return &ConfigError{Setting: setting, Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Namespace == "" && c.ConnectionString == "":
		return bad("SERVICEBUS_NAMESPACE", "or SERVICEBUS_CONNECTION_STRING must be set")
	case c.Namespace != "" && c.ConnectionString != "":
		return bad("SERVICEBUS_CONNECTION_STRING", "must not be set together with SERVICEBUS_NAMESPACE")
	case c.Namespace != "" && !validName(c.Namespace, 255):
		return bad("SERVICEBUS_NAMESPACE", "%q is not a host name", c.Namespace)
	case c.Queue != "" && (c.Topic != "" || c.Subscription != ""):
		return bad("SERVICEBUS_QUEUE", "must not be set together with SERVICEBUS_TOPIC or SERVICEBUS_SUBSCRIPTION")
	case c.Queue == "" && c.Topic == "" && c.Subscription == "":
		return bad("SERVICEBUS_QUEUE", "or SERVICEBUS_TOPIC with SERVICEBUS_SUBSCRIPTION must be set")
	case c.Queue != "" && !validName(c.Queue, 260):
		return bad("SERVICEBUS_QUEUE", "%q is not a queue name", c.Queue)
	case c.Queue == "" && c.Topic == "":
		return bad("SERVICEBUS_TOPIC", "must be set with SERVICEBUS_SUBSCRIPTION")
	case c.Queue == "" && c.Subscription == "":
		return bad("SERVICEBUS_SUBSCRIPTION", "must be set with SERVICEBUS_TOPIC")
	case c.Topic != "" && !validName(c.Topic, 260):
		return bad("SERVICEBUS_TOPIC", "%q is not a topic name", c.Topic)
	case c.Subscription != "" && (!validName(c.Subscription, 50) || strings.Contains(c.Subscription, "/")):
		return bad("SERVICEBUS_SUBSCRIPTION", "%q is not a subscription name", c.Subscription)
	case c.Concurrency < 1 || c.Concurrency > maxReceive:
		return bad("WORKER_CONCURRENCY", "must be 1 to %d, got %d", maxReceive, c.Concurrency)
	case c.Sessions && c.Peek:
		return bad("WORKER_DRY_RUN", "cannot browse a session-enabled entity (SERVICEBUS_SESSIONS=true)")
	case c.MaxDeliveryCount < 1:
		return bad("MaxDeliveryCount", "must be ≥ 1, got %d", c.MaxDeliveryCount)
	}
	return nil
}

// validName is a loose check that catches typos and pasted whitespace; the
// broker has the last word on entity names.
func validName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) < 0
}

// entityPath is the path of the entity commands are read from: the queue,
// or "<topic>/Subscriptions/<subscription>" (the SDK's spelling).
func (c *Config) entityPath() string {
	if c.Queue != "" {
		return c.Queue
	}
	return c.Topic + "/Subscriptions/" + c.Subscription
}

// sendTarget is where copies of a command go: the queue, or the topic.
func (c *Config) sendTarget() string {
	if c.Queue != "" {
		return c.Queue
	}
	return c.Topic
}

// newClient opens a client for cfg, which must be valid. The SDK connects
// lazily, on the first operation.
func newClient(cfg Config) (*azservicebus.Client, error) {
	if cfg.ConnectionString != "" {
		cl, err := azservicebus.NewClientFromConnectionString(cfg.ConnectionString, cfg.ClientOptions)
		if err != nil {
			// The SDK's parse errors name the bad key, never the secret.
			return nil, &ConfigError{Setting: "SERVICEBUS_CONNECTION_STRING", Problem: "cannot be parsed: " + err.Error()}
		}
		return cl, nil
	}
	cred := cfg.Credential
	if cred == nil {
		var err error
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err != nil {
			return nil, fmt.Errorf("servicebus: credential for %s: %w", cfg.Namespace, err)
		}
	}
	cl, err := azservicebus.NewClient(cfg.Namespace, cred, cfg.ClientOptions)
	if err != nil {
		return nil, fmt.Errorf("servicebus: client for %s: %w", cfg.Namespace, err)
	}
	return cl, nil
}

// newReceiver opens a PeekLock receiver on the entity, or on its
// dead-letter sub-queue.
func newReceiver(cl *azservicebus.Client, cfg Config, sub azservicebus.SubQueue) (*azservicebus.Receiver, error) {
	opts := &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock, SubQueue: sub}
	if cfg.Queue != "" {
		return cl.NewReceiverForQueue(cfg.Queue, opts)
	}
	return cl.NewReceiverForSubscription(cfg.Topic, cfg.Subscription, opts)
}
