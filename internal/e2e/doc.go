// Package e2e holds process-level tests of the worker's exactly-once
// guarantees (SPEC §3, §6): the real `worker` binary, built with -tags
// crashtest, runs as child processes against an embedded JetStream and the
// Graph simulator hosted by the test, is killed at its crash points, run as
// several replicas and drained with SIGTERM under load. It owns no code the
// worker uses; it only observes the worker from outside (the simulator, the
// broker, the ledger, /metrics, /readyz and the logs).
package e2e
