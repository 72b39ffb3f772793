package servicebus

import (
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/graphops/worker/internal/cloudevent"
)

// eventOf returns the command as a structured CloudEvent (docs/SPEC.md §2): a
// binary-mode message's cloudEvents: properties and body read the way
// package cloudevent reads every binding. The dead letter of such a
// message is the original itself, body and properties unchanged.
func eventOf(rm *azservicebus.ReceivedMessage, body []byte) []byte {
	ct := ""
	if rm.ContentType != nil {
		ct = *rm.ContentType
	}
	return cloudevent.Structured(body, ct, cloudevent.FromAMQP(rm.ApplicationProperties))
}
