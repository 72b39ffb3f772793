package jetstream_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/graphops/worker/internal/consumer/jetstream"
)

func TestValidateFillsDefaults(t *testing.T) {
	var c jetstream.Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := jetstream.Config{
		Stream:        "GRAPHOPS",
		Subjects:      []string{"graphops.commands.>"},
		Durable:       "graphops-worker",
		AckWait:       30 * time.Second,
		MaxDeliver:    50,
		Concurrency:   16,
		MaxAckPending: 1000,
		MaxMsgSize:    -1,
		StreamMaxAge:  14 * 24 * time.Hour,
		Replicas:      1,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestValidateKeepsMaxAckPendingAtLeastTwiceConcurrency(t *testing.T) {
	c := jetstream.Config{Concurrency: 800}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxAckPending != 1600 {
		t.Errorf("MaxAckPending = %d, want 1600", c.MaxAckPending)
	}
}

func TestValidateNamesTheBadSetting(t *testing.T) {
	tests := []struct {
		name    string
		cfg     jetstream.Config
		setting string
	}{
		{"a stream name with a dot is refused", jetstream.Config{Stream: "GRAPH.OPS"}, "Stream"},
		{"a durable name with a space is refused", jetstream.Config{Durable: "graphops worker"}, "Durable"},
		{"an empty subject is refused", jetstream.Config{Subjects: []string{"graphops.commands.>", ""}}, "Subjects"},
		{"a subject with an empty token is refused", jetstream.Config{Subjects: []string{"graphops..x"}}, "Subjects"},
		{"a negative ack wait is refused", jetstream.Config{AckWait: -time.Second}, "AckWait"},
		{"an ack wait under a second is refused", jetstream.Config{AckWait: 10 * time.Millisecond}, "AckWait"},
		{"max deliver below -1 is refused", jetstream.Config{MaxDeliver: -2}, "MaxDeliver"},
		{"a negative concurrency is refused", jetstream.Config{Concurrency: -1}, "WORKER_CONCURRENCY"},
		{"max ack pending below concurrency is refused", jetstream.Config{Concurrency: 32, MaxAckPending: 16}, "MaxAckPending"},
		{"a message size under 1 MiB is refused", jetstream.Config{MaxMsgSize: 256 << 10}, "MaxMsgSize"},
		{"a stream max age under the ack wait is refused", jetstream.Config{StreamMaxAge: time.Second}, "StreamMaxAge"},
		{"six replicas are refused", jetstream.Config{Replicas: 6}, "Replicas"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var ce *jetstream.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v, want a *ConfigError", err)
			}
			if ce.Setting != tt.setting {
				t.Errorf("Setting = %q, want %q (error %q)", ce.Setting, tt.setting, err)
			}
		})
	}
}

func TestValidateAcceptsTheDocumentedSpecialValues(t *testing.T) {
	tests := []struct {
		name string
		cfg  jetstream.Config
	}{
		{"unlimited deliveries", jetstream.Config{MaxDeliver: -1}},
		{"a 1 MiB message size", jetstream.Config{MaxMsgSize: 1 << 20}},
		{"one handler", jetstream.Config{Concurrency: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}
