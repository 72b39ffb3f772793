package servicebus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/consumer"
)

// Session timing (Config.Sessions). An accepted session whose receive
// brings nothing within sessionWait is released, so that another replica
// (or this one, later) takes its next commands; accepting waits at most
// acceptWait for a session with messages.
const (
	sessionWait = time.Second
	acceptWait  = 2 * time.Second
)

// session is an accepted Service Bus session: its receiver holds the
// session lock, and one of its messages at a time is with a handler, so
// that the commands of one request id are applied in the order they were
// sent (docs/SPEC.md §4). The session is released when that message's handler
// returns (message.Done): keeping it idle for its next message would mean
// a lock nothing renews meanwhile and a receive that may time out on the
// session's link.
type session struct {
	r  *azservicebus.SessionReceiver
	id string
}

// sessions counts the sessions this source holds: never more than
// Concurrency.
type sessions struct {
	mu   sync.Mutex
	held int
}

// reserve counts one more session if fewer than limit are held.
func (ss *sessions) reserve(limit int) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.held >= limit {
		return false
	}
	ss.held++
	return true
}

func (ss *sessions) unreserve() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.held--
}

// release closes a session (its lock goes back to Service Bus, and an
// unsettled message of it is delivered again) and stops counting it.
func (ss *sessions) release(s *session) {
	ss.unreserve()
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	_ = s.r.Close(ctx)
}

// receiveSessions accepts up to n sessions and delivers the first message
// of each, as soon as it comes: a session accepted early must not wait
// (its lock running) for the accepts after it. A session that brings
// nothing is released.
func (s *Source) receiveSessions(ctx context.Context, n int, deliver func(consumer.Leased)) error {
	type result struct {
		sess *session
		msgs []*azservicebus.ReceivedMessage
		err  error
	}
	results := make(chan result, n)
	type accepted struct {
		count int
		err   error
	}
	acceptDone := make(chan accepted, 1)
	go func() {
		var a accepted
		for a.count < n && s.sessions.reserve(s.cfg.Concurrency) {
			r, err := s.acceptSession(ctx)
			if err != nil || r == nil {
				s.sessions.unreserve()
				a.err = err
				break
			}
			a.count++
			sess := &session{r: r, id: r.SessionID()}
			go func() {
				rctx, cancel := context.WithTimeout(ctx, sessionWait)
				defer cancel()
				// One at a time: the next command of the session waits
				// until this one is settled.
				msgs, err := sess.r.ReceiveMessages(rctx, 1, nil)
				if err != nil && rctx.Err() != nil && ctx.Err() == nil {
					err = nil // nothing within sessionWait
				}
				results <- result{sess, msgs, err}
			}()
			if ctx.Err() != nil {
				break
			}
		}
		acceptDone <- a
	}()

	var errs []error
	received, launched := 0, -1 // launched is known once the accepts end
	for launched < 0 || received < launched {
		select {
		case a := <-acceptDone:
			launched = a.count
			if a.err != nil {
				errs = append(errs, a.err)
			}
		case r := <-results:
			received++
			if len(r.msgs) == 0 {
				s.sessions.release(r.sess)
				if r.err != nil && ctx.Err() == nil {
					errs = append(errs, fmt.Errorf("session %s: %w", r.sess.id, r.err))
				}
				continue
			}
			m := s.newMessage(r.msgs[0]) // at most one was asked for
			m.sess = r.sess
			deliver(m)
		}
	}
	return errors.Join(errs...)
}

// acceptSession accepts the next session with messages; nil, nil when
// none has any within acceptWait.
func (s *Source) acceptSession(ctx context.Context) (*azservicebus.SessionReceiver, error) {
	actx, cancel := context.WithTimeout(ctx, acceptWait)
	defer cancel()
	var r *azservicebus.SessionReceiver
	var err error
	if s.cfg.Queue != "" {
		r, err = s.client.AcceptNextSessionForQueue(actx, s.cfg.Queue, nil)
	} else {
		r, err = s.client.AcceptNextSessionForSubscription(actx, s.cfg.Topic, s.cfg.Subscription, nil)
	}
	if err != nil {
		var sbErr *azservicebus.Error
		if actx.Err() != nil || (errors.As(err, &sbErr) && sbErr.Code == azservicebus.CodeTimeout) {
			return nil, nil // no session waiting
		}
		return nil, fmt.Errorf("accept a session of %s: %w", s.cfg.entityPath(), err)
	}
	return r, nil
}
