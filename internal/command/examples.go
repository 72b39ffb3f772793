package command

import (
	"bytes"
	"embed"
	"encoding/json"
)

// The examples are the seed commands of Microsoft's documentation and the
// SPEC, and one bad command: `worker dev` submits them, tests reuse them.
//
//go:embed testdata/resume-seed-verified.json testdata/resume-seed-denied.json testdata/role-request-update-spec.json testdata/bad-id-path-traversal.json
var examples embed.FS

// Example is a command message.
type Example struct {
	Name string
	Data []byte // compact JSON, one line
}

// Examples returns the example commands in a stable order: the two resume
// examples of the REST documentation, the SPEC's role request update, and a
// resume whose request id tries to leave its path segment.
func Examples() []Example {
	names := []string{"resume-seed-verified", "resume-seed-denied", "role-request-update-spec", "bad-id-path-traversal"}
	out := make([]Example, 0, len(names))
	for _, n := range names {
		raw, err := examples.ReadFile("testdata/" + n + ".json")
		if err != nil {
			panic(err) // embedded at build time: cannot happen
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			panic(err)
		}
		out = append(out, Example{Name: n, Data: b.Bytes()})
	}
	return out
}
