//go:build crashtest

package worker

import (
	"os"
	"syscall"
)

// crashPoint kills the process with SIGKILL at the point named by
// GRAPHOPS_CRASH_AT: no deferred function, no flush, as a node failure would.
// Only binaries built with -tags crashtest contain this.
func crashPoint(p string) {
	if os.Getenv("GRAPHOPS_CRASH_AT") == p {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
