package outcome

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamConfig names the outcome stream (docs/SPEC.md §9).
type JetStreamConfig struct {
	Stream        string // NATS_OUTCOME_STREAM, default GRAPHOPS_OUTCOMES
	SubjectPrefix string // default graphops.outcomes
	Replicas      int
}

// JetStream publishes outcome events on a stream.
type JetStream struct {
	js  jetstream.JetStream
	cfg JetStreamConfig
}

// NewJetStream creates the outcome stream when it is missing and returns a
// publisher to it. An existing stream is used as it is: its limits are the
// operator's (a full stream makes commands wait, docs/SPEC.md §9).
func NewJetStream(ctx context.Context, js jetstream.JetStream, cfg JetStreamConfig) (*JetStream, error) {
	if cfg.Stream == "" {
		cfg.Stream = "GRAPHOPS_OUTCOMES"
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = "graphops.outcomes"
	}
	_, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: cfg.Stream, Subjects: []string{cfg.SubjectPrefix + ".>"},
			Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1),
			MaxAge: 14 * 24 * time.Hour, Duplicates: 10 * time.Minute,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("outcome stream %s: %w", cfg.Stream, err)
	}
	return &JetStream{js: js, cfg: cfg}, nil
}

// Publish publishes e with Nats-Msg-Id set to its id, so that the stream
// keeps one copy of a repeated publication within its duplicate window.
func (p *JetStream) Publish(ctx context.Context, e Event) error {
	m := nats.NewMsg(p.cfg.SubjectPrefix + "." + e.Type)
	m.Data = e.Body
	m.Header.Set(nats.MsgIdHdr, e.ID)
	m.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("outcome stream %s: %w", p.cfg.Stream, err)
	}
	return nil
}
