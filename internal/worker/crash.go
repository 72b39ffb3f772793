//go:build !crashtest

package worker

// crashPoint marks the places where a crash is most dangerous. The crash
// tests build the worker with -tags crashtest to die there for real; in a
// normal build it does nothing and costs nothing.
func crashPoint(string) {}
