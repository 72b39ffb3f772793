//go:build bench

package main

import (
	"context"
	"io"

	"github.com/graphops/worker/internal/bench"
)

// benchMain runs the load harness. It is linked only into binaries built
// with -tags bench: production images carry no benchmark code.
func benchMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return bench.Main(ctx, args, stdout, stderr)
}
