// Package outcome tells producers what became of their commands (docs/SPEC.md §9,
// the cmdlets' -PassThru): it builds the graphops.command.outcome CloudEvent
// of a settled command and publishes it on the broker the command came
// from. It does not decide outcomes, keep the ledger or settle messages; the
// worker calls it after the ledger write and before the acknowledgement.
package outcome

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// EventType and EventSource are the CloudEvents attributes of every event.
const (
	EventType   = "graphops.command.outcome"
	EventSource = "urn:graphops:worker"
)

// namespace makes event ids: a name-based (SHA-1) UUID of the command's
// source, id and outcome under it, so that a repeated publication of one
// outcome is the same event (docs/SPEC.md §9).
var namespace = uuid.MustParse("5b1f6c1e-9f4e-4c2a-8a63-6f0b7e1d2c30")

// Data is the event's data (docs/SPEC.md §9).
type Data struct {
	CommandID     string `json:"command_id"`
	CommandSource string `json:"command_source"`
	Type          string `json:"type"` // short type, "unknown" when unreadable
	RequestID     string `json:"request_id"`
	Outcome       string `json:"outcome"` // applied, duplicate, dead_lettered
	Reason        string `json:"reason,omitempty"`
	Description   string `json:"description,omitempty"`
	DuplicateOf   string `json:"duplicate_of,omitempty"`
	Reconciled    bool   `json:"reconciled"`
	Attempts      int    `json:"attempts"`
	// Of the last write call, present when there was one.
	GraphStatus     *int   `json:"graph_status,omitempty"` // 0 when its answer was lost
	GraphRequestID  string `json:"graph_request_id,omitempty"`
	ClientRequestID string `json:"client_request_id,omitempty"`
}

// LastCall sets the fields describing the last write call: status 0 means
// the call got no answer.
func (d *Data) LastCall(status int, graphRequestID, clientRequestID string) {
	d.GraphStatus = &status
	d.GraphRequestID, d.ClientRequestID = graphRequestID, clientRequestID
}

// ID is the event id of a command's outcome.
func ID(commandSource, commandID, outcome string) string {
	return uuid.NewSHA1(namespace, []byte(commandSource+"\x00"+commandID+"\x00"+outcome)).String()
}

// Event is one outcome event, encoded.
type Event struct {
	ID      string
	Type    string // the command's short type, for the subject
	Request string // the command's request id (Service Bus SessionId)
	Body    []byte // the structured-mode CloudEvent
}

// envelope is the structured-mode CloudEvent.
type envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            Data      `json:"data"`
}

// New builds the event of d at now.
func New(d Data, now time.Time) (Event, error) {
	if d.Type == "" {
		d.Type = "unknown"
	}
	id := ID(d.CommandSource, d.CommandID, d.Outcome)
	body, err := json.Marshal(envelope{SpecVersion: "1.0", ID: id, Source: EventSource, Type: EventType,
		Subject: d.CommandID, Time: now.UTC().Truncate(time.Millisecond), DataContentType: "application/json", Data: d})
	if err != nil {
		return Event{}, fmt.Errorf("outcome: encode event: %w", err)
	}
	return Event{ID: id, Type: d.Type, Request: d.RequestID, Body: body}, nil
}
