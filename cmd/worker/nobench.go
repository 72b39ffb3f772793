//go:build !bench

package main

import (
	"context"
	"fmt"
	"io"
)

// benchMain says where the load harness is: not in this binary.
func benchMain(_ context.Context, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "worker bench: this binary was built without the load harness; run it with: go run -tags bench ./cmd/worker bench ...")
	return 2
}
