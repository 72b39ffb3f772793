package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// commandSet is a batch of distinct resume commands: each has its own
// CloudEvent id, assignment request id and callout instance, so that no two
// share a request lease and each is one effective write in the simulator.
type commandSet struct {
	requestIDs []string
	messages   [][]byte
}

// newCommands returns n resume commands whose ids are unique to this call
// (a random run tag), so that batches never collide in a shared simulator or
// a shared Redis ledger.
func newCommands(n int) (commandSet, error) {
	var tag [8]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return commandSet{}, fmt.Errorf("bench: run tag: %w", err)
	}
	run := binary.BigEndian.Uint64(tag[:])
	cs := commandSet{requestIDs: make([]string, n), messages: make([][]byte, n)}
	for i := range n {
		// GUID-shaped ids, as Graph's are: run tag, kind, index.
		id := func(kind int) string {
			return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(run>>32), uint16(run>>16), uint16(run)&0xfff, kind, i)
		}
		cs.requestIDs[i] = id(1)
		msg := map[string]any{
			"specversion":     "1.0",
			"id":              id(2),
			"source":          "urn:graphops:bench",
			"type":            "graphops.accessPackageAssignmentRequest.resume",
			"datacontenttype": "application/json",
			"data": map[string]any{
				"accessPackageAssignmentRequestId": cs.requestIDs[i],
				"body": map[string]any{
					"source": "Contoso.SodCheckProcess",
					"type":   "microsoft.graph.accessPackageCustomExtensionStage.assignmentRequestCreated",
					"data": map[string]any{
						"@odata.type":                        "microsoft.graph.accessPackageAssignmentRequestCallbackData",
						"stage":                              "assignmentRequestCreated",
						"customExtensionStageInstanceId":     id(3),
						"customExtensionStageInstanceDetail": "load harness",
					},
				},
			},
		}
		b, err := json.Marshal(msg)
		if err != nil {
			return commandSet{}, fmt.Errorf("bench: command: %w", err)
		}
		cs.messages[i] = b
	}
	return cs, nil
}

// publish sends every message to subject with asynchronous publishes and
// waits until the server has stored them all.
func publish(ctx context.Context, js jetstream.JetStream, subject string, msgs [][]byte) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		// A stall means the server is slow, not wrong: wait for it.
		f, err := js.PublishAsync(subject, m, jetstream.WithStallWait(30*time.Second))
		if err != nil {
			return fmt.Errorf("bench: publish: %w", err)
		}
		futures = append(futures, f)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	select {
	case <-js.PublishAsyncComplete():
	case <-wctx.Done():
		return fmt.Errorf("bench: publish: %d of %d not confirmed: %w", js.PublishAsyncPending(), len(msgs), wctx.Err())
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bench: publish: %w", err)
		}
	}
	return nil
}
