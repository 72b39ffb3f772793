package servicebus

import (
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
)

// Timing of the sources and scans tests build, short so that tests wait
// little for what they expect not to happen.
const (
	TestReceiveWait = 200 * time.Millisecond
	TestRetry       = 10 * time.Millisecond
)

// NewTestSource is New on fakes of the receiver and sender, with now as
// the clock of HandBack.
func NewTestSource(cfg Config, r receiver, s sender, now func() time.Time) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	src, err := newSource(cfg, r, s, nil)
	if err != nil {
		return nil, err
	}
	src.now = now
	src.receiveWait, src.peekIdle = TestReceiveWait, TestRetry
	src.retryMin, src.retryMax = TestRetry, 2*TestRetry
	src.ok.Store(true)
	return src, src.newRunner()
}

// MessageOf is the message Run would hand to a handler for rm.
func (s *Source) MessageOf(rm *azservicebus.ReceivedMessage) consumer.Message {
	return s.newMessage(rm)
}

// NewTestDeadLetters is NewDeadLetters on fakes; a scan ends after idle
// without a message.
func NewTestDeadLetters(cfg Config, r receiver, s sender, idle time.Duration) (*DeadLetters, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := newDeadLetters(cfg, r, s)
	d.idle = idle
	return d, nil
}
