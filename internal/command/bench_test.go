package command_test

import (
	"testing"

	"github.com/graphops/worker/internal/command"
)

// BenchmarkParse parses the seed resume command (Microsoft's example 1).
func BenchmarkParse(b *testing.B) {
	raw := readTestdata(b, "resume-seed-verified.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := command.Parse(raw, command.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
