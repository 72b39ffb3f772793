// Package bench is the load harness of `worker bench`: it measures the
// worker as shipped against the Graph simulator and writes the figures of
// docs/PERFORMANCE.md.
//
// Two modes:
//
//   - Throughput: one process hosts an embedded NATS server (loopback TCP),
//     the simulator with zero latency and the worker (app.Run). Each round
//     publishes N distinct resume commands before anything consumes them,
//     then drains them twice: once through a bare loop (pull → HTTP POST →
//     ack, nothing else) and once through the worker, and compares
//     applied/s. Every loop gets new streams and a new, empty simulator, so
//     that no loop inherits another's state. The ledger is on, as in the product; its operations per
//     command and their latency come from the worker's /metrics.
//   - Pacing: the harness hosts NATS and a rate-limited simulator (R writes/s,
//     throttled calls charged) and starts K worker processes; it measures
//     applied/s and the share of write calls answered 429 over time, checks
//     exactly-once at the end, and draws the timeline as SVG.
//
// It owns the harness: load generation, the bare loop, timing, statistics,
// exactly-once checks and the SVG. It does not own the worker's behaviour,
// the simulator or the broker: it drives them through their public entry
// points.
package bench
