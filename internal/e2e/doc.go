// Package e2e holds process-level tests of the worker's exactly-once
// guarantees (docs/SPEC.md §3, §6): the real `worker` binary, built with -tags
// crashtest, runs as child processes against a broker and the Graph
// simulator hosted by the test, is killed at its crash points, run as
// several replicas, drained with SIGTERM under load, and has its dead
// letters replayed with the CLI. Every test runs on both brokers (issue 11):
// an embedded JetStream with the KV ledger, and Service Bus with the Redis
// ledger (REDIS_ADDR, default 127.0.0.1:6379; databases 1-15, one per test
// at a time). Service Bus is sbemu, our AMQP 1.0 model of it
// (internal/consumer/servicebus/sbemu, which needs Debian's
// python3-qpid-proton), not Azure: commands are sent with the real SDK,
// and the worker talks to it through its unchanged Service Bus adapter.
// The package owns no code the worker uses; it only observes the worker
// from outside (the simulator, the broker, the ledger, /metrics, /readyz
// and the logs).
package e2e
