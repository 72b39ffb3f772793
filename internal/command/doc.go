// Package command owns the command message of docs/SPEC.md §1–2: it reads a message
// body (CloudEvents 1.0, structured JSON mode, or plain JSON of the same
// shape) into a typed, validated Command, or explains in an *Error, with the
// dead-letter reason and the JSON path of the offending value, why it cannot.
//
// It is the gate before any Graph call, so it is strict: duplicate object keys
// are refused (a body could be validated with one value and read by Graph with
// the other), ids must be single safe URL path segments, enumerations must be
// ones Graph documents. It also computes the keys other packages work with:
// the request id that serializes Graph calls (docs/SPEC.md §3), the callout id of a
// resume and a hash of the body that is equal iff two bodies are JSON-equal.
//
// It does not talk to a broker, to Graph or to the ledger, does not decide
// whether a command is a duplicate or expired, and does not log.
package command
