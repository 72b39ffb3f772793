// Package dlq owns dead letters (docs/SPEC.md §4, §8): the broker-neutral Entry
// and its docs/SPEC.md §4 headers, what an operator does with dead letters (`worker
// dlq list|show|replay|purge`), written once over Backend, and the
// JetStream backend (the dead-letter stream, Store). The Service Bus
// backend is the entity's own dead-letter sub-queue (servicebus.DeadLetters).
// It does not decide when a command is dead-lettered or why (the worker
// does), and it does not wire commands into the `worker` binary.
package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is returned for a sequence that holds no dead letter.
var ErrNotFound = errors.New("not found")

// Config names the dead-letter stream. Zero fields take their defaults.
type Config struct {
	// Stream is the JetStream stream of dead letters. Default "GRAPHOPS_DLQ".
	Stream string
	// SubjectPrefix: a dead letter is published on <SubjectPrefix>.<short
	// type>, and the stream New creates listens on <SubjectPrefix>.>.
	// Default "graphops.dlq".
	SubjectPrefix string
	// Replicas of the stream when New creates it. Default 1.
	Replicas int
	// CommandSubjects are the subject filters Replay may republish to: the
	// subjects of the command stream. A dead letter whose original subject
	// matches none of them is not replayed, so that a forged or corrupted
	// header cannot make Replay publish anywhere else.
	// Default ["graphops.commands.>"].
	CommandSubjects []string
}

// Config defaults.
const (
	DefaultStream         = "GRAPHOPS_DLQ"
	DefaultSubjectPrefix  = "graphops.dlq"
	DefaultCommandSubject = "graphops.commands.>"
)

// Validate fills in the defaults of zero fields, then returns an error naming
// the first field that is wrong.
func (c *Config) Validate() error {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if len(c.CommandSubjects) == 0 {
		c.CommandSubjects = []string{DefaultCommandSubject}
	}
	if strings.ContainsAny(c.Stream, ".*>/\\") || strings.IndexFunc(c.Stream, isSpaceOrControl) >= 0 {
		return fmt.Errorf("dlq: Stream %q: a stream name may not contain '.', '*', '>', '/', '\\' or whitespace", c.Stream)
	}
	if !ValidSubject(c.SubjectPrefix, false) {
		return fmt.Errorf("dlq: SubjectPrefix %q: not a subject without wildcards", c.SubjectPrefix)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("dlq: Replicas %d: must be between 1 and 5", c.Replicas)
	}
	for _, s := range c.CommandSubjects {
		if !ValidSubject(s, true) {
			return fmt.Errorf("dlq: CommandSubjects %q: not a subject filter", s)
		}
	}
	return nil
}

// Store is the dead-letter stream.
type Store struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
	filter string // every dead-letter subject: <SubjectPrefix>.>

	// deleteMsg removes one message; a field so that a test can make the
	// delete after a replay's publish fail.
	deleteMsg func(ctx context.Context, seq uint64) error
}

// New returns the store on the stream of cfg, creating the stream when it is
// missing. An existing stream is used as it is (an operator may have tuned
// it), provided its subjects cover the subject prefix.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, js: js, filter: cfg.SubjectPrefix + ".>"}
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, s.streamConfig())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another replica created it in the meantime.
			stream, err = js.Stream(ctx, cfg.Stream)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", cfg.Stream, err)
	}
	subjects := stream.CachedInfo().Config.Subjects
	covered := false
	for _, sub := range subjects {
		if subsetMatch(s.filter, sub) {
			covered = true
			break
		}
	}
	if !covered {
		return nil, fmt.Errorf("dlq: stream %s exists with subjects %v, which do not cover %s", cfg.Stream, subjects, s.filter)
	}
	if sc := stream.CachedInfo().Config; sc.MaxMsgSize != -1 {
		// A stream made by hand with a message size limit would refuse
		// the dead letters of commands the command stream accepts
		// (docs/SPEC.md §4): lift it, as the worker does its command
		// stream's.
		sc.MaxMsgSize = -1
		if stream, err = js.UpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("dlq: stream %s: lift its message size limit: %w", cfg.Stream, err)
		}
	}
	s.stream = stream
	s.deleteMsg = stream.DeleteMsg
	return s, nil
}

func (s *Store) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "graphops dead letters: commands the worker could not apply, waiting for an operator (worker dlq)",
		Subjects:    []string{s.filter},
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		// No age, count or size limit: a dead letter waits for an operator.
		MaxAge:   0,
		MaxMsgs:  -1,
		MaxBytes: -1,
		// Unlimited: the server's max_payload is then the only bound, so
		// the stream never refuses a message the command stream accepted
		// (docs/SPEC.md §4 asks for at least 1 MiB).
		MaxMsgSize: -1,
		// Covers a Put retried after a crash between the Put and the ack
		// of the original message.
		Duplicates: 10 * time.Minute,
		// List and Get read with direct gets: no consumer is created.
		AllowDirect: true,
	}
}

// Stream is the name of the dead-letter stream.
func (s *Store) Stream() string { return s.cfg.Stream }

// Subject is the subject a dead letter of the given short type is published
// on; "<prefix>.unknown" for a type that is not one of docs/SPEC.md §1.
func (s *Store) Subject(shortTypeName string) string {
	return s.cfg.SubjectPrefix + "." + shortType(shortTypeName)
}

// Put stores e (its Seq and Stored are ignored) and returns its sequence.
// A non-empty dedupID is sent as Nats-Msg-Id: a Put retried with the same id
// within 10 minutes stores nothing and returns the first Put's sequence.
func (s *Store) Put(ctx context.Context, e Entry, dedupID string) (uint64, error) {
	msg := &nats.Msg{Subject: s.Subject(e.Type), Header: NATSHeader(e), Data: e.Payload}
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(s.cfg.Stream)}
	if dedupID != "" {
		opts = append(opts, jetstream.WithMsgID(dedupID))
	}
	ack, err := s.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return 0, fmt.Errorf("dlq: store dead letter on %s: %w", msg.Subject, err)
	}
	return ack.Sequence, nil
}

// Get returns the dead letter at seq, or ErrNotFound. A dead letter whose
// headers cannot all be parsed is returned as far as it could be read, so
// that an operator can still see, replay or delete it.
func (s *Store) Get(ctx context.Context, seq uint64) (Entry, error) {
	m, err := s.getRaw(ctx, seq)
	if err != nil {
		return Entry{}, fmt.Errorf("dlq: dead letter %d: %w", seq, err)
	}
	return s.entryOf(m), nil
}

// entryOf reads a stored dead letter as far as it can be read, so that an
// operator can still see, replay or delete one whose headers do not all
// parse. The headers a direct get adds are not the dead letter's.
func (s *Store) entryOf(m *jetstream.RawStreamMsg) Entry {
	e, _ := EntryFromMsg(m.Data, m.Header, m.Sequence, m.Time)
	e.Where = m.Subject
	for _, name := range directGetHeaders() {
		delete(e.Extra, name)
	}
	if len(e.Extra) == 0 {
		e.Extra = nil
	}
	return e
}

// getRaw returns the stored message at seq when it is a dead letter.
func (s *Store) getRaw(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	if seq == 0 {
		// Not a sequence; the server would read the request as empty.
		return nil, ErrNotFound
	}
	m, err := s.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if !subsetMatch(m.Subject, s.filter) {
		// A stream shared with other subjects: not a dead letter.
		return nil, ErrNotFound
	}
	return m, nil
}

// List calls fn for each dead letter, in sequence order, up to the last one
// stored when List started; it stops at fn's first error and returns it.
// It reads one message at a time with direct gets (message gets on a stream
// without direct access), so it holds one dead letter in memory and leaves
// no consumer behind.
func (s *Store) List(ctx context.Context, fn func(Entry) error) error {
	return s.each(ctx, func(m *jetstream.RawStreamMsg) error {
		return fn(s.entryOf(m))
	})
}

// each calls fn for each stored dead letter up to the last one present when
// it starts.
func (s *Store) each(ctx context.Context, fn func(*jetstream.RawStreamMsg) error) error {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("dlq: stream %s: %w", s.cfg.Stream, err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	for next := max(first, 1); next <= last; {
		m, err := s.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(s.filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dlq: read dead letters from %d: %w", next, err)
		}
		if m.Sequence > last {
			return nil
		}
		if err := fn(m); err != nil {
			return err
		}
		next = m.Sequence + 1
	}
	return nil
}

// Delete removes the dead letter at seq; ErrNotFound when there is none.
func (s *Store) Delete(ctx context.Context, seq uint64) error {
	if err := s.delete(ctx, seq); err != nil {
		return fmt.Errorf("dlq: dead letter %d: %w", seq, err)
	}
	return nil
}

func (s *Store) delete(ctx context.Context, seq uint64) error {
	err := s.deleteMsg(ctx, seq)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrMsgNotFound) || isNoMessage(err):
		return ErrNotFound
	}
	return fmt.Errorf("delete: %w", err)
}

// isNoMessage recognizes the server's answer to deleting a sequence that
// holds no message ("no message found" for a deleted one, "stream store EOF"
// past the last one): the client reports it as a failed delete and keeps
// only the server's words.
func isNoMessage(err error) bool {
	if !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "no message found") || strings.Contains(msg, "store EOF")
}

// Purge removes every dead letter and returns how many it removed.
func (s *Store) Purge(ctx context.Context) (uint64, error) {
	return s.purge(ctx, 0)
}

// purge removes the dead letters below sequence before (all of them when
// before is 0), so that a purge confirmed for N dead letters does not also
// remove those stored while the operator was answering.
//
// It sends the purge request itself because the client's Stream.Purge drops
// the count the server answers with.
func (s *Store) purge(ctx context.Context, before uint64) (uint64, error) {
	req, err := json.Marshal(jetstream.StreamPurgeRequest{Subject: s.filter, Sequence: before})
	if err != nil {
		return 0, err
	}
	opts := s.js.Options()
	if _, ok := ctx.Deadline(); !ok {
		timeout := opts.DefaultTimeout
		if timeout <= 0 {
			timeout = 5 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	msg, err := s.js.Conn().RequestWithContext(ctx, apiPrefix(opts)+"STREAM.PURGE."+s.cfg.Stream, req)
	if err != nil {
		return 0, fmt.Errorf("dlq: purge %s: %w", s.cfg.Stream, err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error,omitempty"`
		Success bool                `json:"success"`
		Purged  uint64              `json:"purged"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("dlq: purge %s: reading the answer: %w", s.cfg.Stream, err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("dlq: purge %s: %w", s.cfg.Stream, resp.Error)
	}
	if !resp.Success {
		return 0, fmt.Errorf("dlq: purge %s: the server did not confirm", s.cfg.Stream)
	}
	return resp.Purged, nil
}

// apiPrefix is the JetStream API prefix the client uses, "$JS.API." unless
// it was created with an API prefix or a domain.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// ValidSubject reports whether s is a NATS subject; wildcards ('*' as a
// token, '>' as the last token) only when filter is true.
func ValidSubject(s string, filter bool) bool {
	if s == "" || strings.IndexFunc(s, isSpaceOrControl) >= 0 {
		return false
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return false
		case t == "*" || (t == ">" && i == len(tokens)-1):
			if !filter {
				return false
			}
		case strings.ContainsAny(t, "*>"):
			return false
		}
	}
	return true
}

// subsetMatch reports whether every subject that sub matches is matched by
// filter. For a literal sub it is the ordinary subject match.
func subsetMatch(sub, filter string) bool {
	st, ft := strings.Split(sub, "."), strings.Split(filter, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		switch t := st[i]; {
		case f == "*":
			if t == ">" {
				return false
			}
		case t == "*" || t == ">" || t != f:
			return false
		}
	}
	return len(st) == len(ft)
}

func isSpaceOrControl(r rune) bool {
	return r == ' ' || r == '\t' || r == '\r' || r == '\n' || r < 0x20 || r == 0x7f
}

// directGetHeaders are the headers a direct get adds to the stored message.
func directGetHeaders() []string {
	return []string{"Nats-Stream", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Subject", "Nats-Num-Pending", "Nats-Last-Sequence"}
}
