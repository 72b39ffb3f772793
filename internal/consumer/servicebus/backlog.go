package servicebus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

// Errors of the backlog readers that change what the worker reports rather
// than being retried.
var (
	// ErrBacklogNotPermitted: the identity may not read the entity's
	// runtime properties (they need the Manage right or the Azure Service
	// Bus Data Owner role), so graphops_backlog_messages stays absent.
	ErrBacklogNotPermitted = errors.New("servicebus: the identity may not read the entity's runtime properties (needs Manage or Azure Service Bus Data Owner)")
	// ErrSessionEntity: the entity requires sessions and cannot be peeked
	// as a whole, so graphops_oldest_message_age_seconds stays absent.
	ErrSessionEntity = errors.New("servicebus: the entity requires sessions and cannot be peeked as a whole")
)

// BacklogEntity names the entity commands are read from: Queue, or Topic
// with Subscription.
type BacklogEntity struct {
	Queue, Topic, Subscription string
}

// ReadActiveMessages returns the entity's active message count from its
// runtime properties: the commands waiting or locked by a worker, not the
// dead-lettered or scheduled ones. Every replica reads the same count.
func ReadActiveMessages(ctx context.Context, ac *admin.Client, e BacklogEntity) (int64, error) {
	if e.Queue != "" {
		resp, err := ac.GetQueueRuntimeProperties(ctx, e.Queue, nil)
		if err != nil {
			return 0, backlogError(e.Queue, err)
		}
		if resp == nil {
			return 0, fmt.Errorf("servicebus: queue %s not found", e.Queue)
		}
		return int64(resp.ActiveMessageCount), nil
	}
	resp, err := ac.GetSubscriptionRuntimeProperties(ctx, e.Topic, e.Subscription, nil)
	if err != nil {
		return 0, backlogError(e.Topic+"/"+e.Subscription, err)
	}
	if resp == nil {
		return 0, fmt.Errorf("servicebus: subscription %s/%s not found", e.Topic, e.Subscription)
	}
	return int64(resp.ActiveMessageCount), nil
}

// RequiresSession reads whether the entity is session-enabled; it needs the
// same right as ReadActiveMessages.
func RequiresSession(ctx context.Context, ac *admin.Client, e BacklogEntity) (bool, error) {
	var requires *bool
	if e.Queue != "" {
		resp, err := ac.GetQueue(ctx, e.Queue, nil)
		if err != nil {
			return false, backlogError(e.Queue, err)
		}
		if resp != nil {
			requires = resp.RequiresSession
		}
	} else {
		resp, err := ac.GetSubscription(ctx, e.Topic, e.Subscription, nil)
		if err != nil {
			return false, backlogError(e.Topic+"/"+e.Subscription, err)
		}
		if resp != nil {
			requires = resp.RequiresSession
		}
	}
	return requires != nil && *requires, nil
}

// peeker is the part of *azservicebus.Receiver PeekOldest uses.
type peeker interface {
	PeekMessages(ctx context.Context, maxMessageCount int, options *azservicebus.PeekMessagesOptions) ([]*azservicebus.ReceivedMessage, error)
}

// peekWindow is how many messages one peek looks at to find an active one:
// scheduled copies (hand-backs with a delay) and deferred messages sit in
// the same sequence and are not waiting to be worked on.
const peekWindow = 32

// PeekOldest returns the age of the oldest active message at now: the first
// peekable one from the start of the entity (a peek does not lock, so
// messages a worker holds count too). It is 0 when nothing active is found
// in the first peekWindow messages. r must be a receiver of the entity
// itself, not of its dead-letter sub-queue.
func PeekOldest(ctx context.Context, r peeker, now time.Time) (time.Duration, error) {
	from := int64(0) // from the start every time: the receiver keeps a cursor otherwise
	msgs, err := r.PeekMessages(ctx, peekWindow, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
	if err != nil {
		if sessionRefusal(err) {
			return 0, fmt.Errorf("%w: %w", ErrSessionEntity, err)
		}
		return 0, fmt.Errorf("servicebus: peek: %w", err)
	}
	return oldestActive(msgs, now), nil
}

// oldestActive is the age of the earliest enqueued active message, 0 when
// there is none.
func oldestActive(msgs []*azservicebus.ReceivedMessage, now time.Time) time.Duration {
	var oldest time.Time
	for _, m := range msgs {
		if m == nil || m.State != azservicebus.MessageStateActive || m.EnqueuedTime == nil {
			continue
		}
		if oldest.IsZero() || m.EnqueuedTime.Before(oldest) {
			oldest = *m.EnqueuedTime
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest), 0)
}

// backlogError marks a refusal of the management API as
// ErrBacklogNotPermitted: the ATOM API answers 401 to a key without Manage
// and 403 to an Entra identity without a data-owner role.
func backlogError(entity string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %s: %w", ErrBacklogNotPermitted, entity, err)
	}
	return fmt.Errorf("servicebus: runtime properties of %s: %w", entity, err)
}

// sessionRefusal recognises Service Bus refusing a receiver without a
// session on a session-enabled entity. The SDK has no code for it; the
// broker's description names sessions ("It is not possible for an entity
// that requires sessions to create a non-sessionful message receiver").
func sessionRefusal(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "requires sessions") || strings.Contains(msg, "non-sessionful")
}
