package command_test

import (
	"testing"

	"github.com/graphops/worker/internal/command"
)

// BenchmarkParse parses the seed commands the tests accept: the SPEC's
// resume and role request update, and Microsoft's two resume examples, as
// stored (indented) and as `worker dev` sends them (compact).
func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"resume-seed-verified", "resume-seed-denied", "resume-spec", "role-request-update-spec"} {
		raw := readTestdata(b, name+".json")
		b.Run(name, func(b *testing.B) { benchParse(b, raw) })
	}
	for _, ex := range command.Examples() {
		if ex.Name == "resume-seed-verified" {
			b.Run(ex.Name+"-compact", func(b *testing.B) { benchParse(b, ex.Data) })
		}
	}
}

func benchParse(b *testing.B, raw []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := command.Parse(raw, command.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
