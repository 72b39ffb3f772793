package dlq

// Reason is why a command was dead-lettered (docs/SPEC.md §4, `Graphops-Reason`).
type Reason string

// The reasons of docs/SPEC.md §2–4.
const (
	ReasonInvalidMessage   Reason = "invalid_message"
	ReasonValidationFailed Reason = "validation_failed"
	ReasonGraphRejected    Reason = "graph_rejected"
	ReasonConflict         Reason = "conflict"
	ReasonExpired          Reason = "expired"
	ReasonRetriesExhausted Reason = "retries_exhausted"
)

// Reasons lists every reason, in a stable order.
func Reasons() []Reason {
	return []Reason{ReasonInvalidMessage, ReasonValidationFailed, ReasonGraphRejected,
		ReasonConflict, ReasonExpired, ReasonRetriesExhausted}
}
