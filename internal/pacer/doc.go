// Package pacer paces the Graph calls of one operation so that a fleet of
// worker replicas runs just under the rate Graph allows, with few 429s
// (docs/SPEC.md §3, Retries). Graph counts throttled calls against the budget, and
// every gate a throttle closes costs about a second of capacity (a
// Retry-After is at least a second), so the winning strategy is to learn
// the limit, stay just under it, and probe upward only rarely.
//
// It owns the departure schedule of calls (the gate a throttle closes, the
// rate, the slow start), the rate law that adapts to Graph's answers, and
// the state replicas share about it through a Fleet. It does not make Graph
// calls, classify answers, parse Retry-After, retry, or keep broker leases:
// its caller does, and reports each call's outcome.
//
// # Use
//
// One Pacer per operation and process. For each call: Reserve; when Delay
// is 0 the call may leave, otherwise Wait (keeping the broker lease alive
// meanwhile) or Cancel and hand the message back with that delay. After the
// call, report exactly one outcome: Succeeded, Throttled(retryAfter) or
// Failed. Run, in its own goroutine, shares what this replica learns with
// the others; without it (or without a Fleet) the pacer paces this process
// alone.
//
// # The algorithm
//
// In flight. InFlight tells the broker adapters how many commands the
// process can work on at once (worker.Admissible sums it over the
// operations, under the WORKER_CONCURRENCY cap): Little's law on the rate
// the pacer allows and the measured latency of Graph's answers (the time
// from a call's departure to its outcome), with headroom (twice the
// latency, plus a quarter of a second for the broker and the ledger around
// the call); twice the slow start's window while it lasts; no limit once
// open. A fixed concurrency C caps a replica at C / latency whatever the
// pacer allows (16 calls at 300ms: 53/s).
//
// Open. Before the first throttle there is no rate limit: Reserve takes
// every call at once. A fresh process only has a slow start: at most
// InitialWindow calls in flight, one more for each success (the window
// doubles every round trip and is gone after 1,024 calls or 10s), so that a
// backlog of thousands does not hit Graph at once and the first throttle
// costs a few 429s, not the fleet's whole concurrency. Against a slow Graph
// (answers take 50ms or more) the first answer opens a window of 16 and
// the window then grows four-fold every round trip: each round trip costs
// what Graph would have answered in it. The answers to one window come
// back together, successes and 429s a few milliseconds apart, so the
// places an answer frees are used a slack after it (a tenth of the
// latency, at least 25ms): a 429 of the same window closes the gate first,
// instead of the next window meeting Graph's empty bucket and drawing
// 429s whose Retry-After would keep the gate closed a round trip longer.
//
// The gate. A throttle closes the gate until now+Retry-After at once in
// this process, and in the fleet at its next sync: no call of the
// operation leaves before that instant, including calls booked earlier
// (the schedule is computed afresh at every look, and Wait looks again
// at its instant). When the gate opens, calls leave paced; replica i of n
// sends its first call (i + Jitter·u)/n of an interval after the opening
// (u random), so that replicas whose gates open together do not send
// together and Graph sees the fleet's calls evenly spread.
//
// Pacing. Calls leave one by one at the replica's rate: the fleet rate
// divided among the replicas in the fleet. The fleet rate is a function of
// time (a Curve) set by the last throttle, so that the replicas agree on it
// without talking:
//
//   - The throttle that ends the open phase leaves Graph's limit unknown,
//     but its burst suggests it. Each replica measures the bucket behind
//     the successes it had in the second before its first throttle (and
//     those answered late, while the gate is closed): the smallest bucket
//     that, refilled at ten times itself per second, let them all
//     through, so that the refill while they came is not counted. The
//     fleet takes the sum, in whole calls, as the bucket, guesses Graph's
//     limit at ten buckets per second (a bucket of a tenth of a second,
//     the stand-in's shape), and holds (1-Margin) under the guess for
//     half of HoldFor, then probes as after an estimate. A right guess
//     costs no second throttle; a high one drains Graph's bucket in the
//     first paced seconds, and that throttle's estimate (a full bucket
//     drained at a steady rate) cuts, at most as deep as Decrease, since
//     calls that reach a small bucket bunched drain it under a right
//     guess too; a low one is found by the probe. A success answered
//     while the gate is closed counts only if its call left with the
//     throttled one: when the slow start sends its next window as the
//     throttle comes back (a Graph answering in under 50ms, or one whose
//     answers spread wider than the slack), what of it succeeds is
//     Graph's refill, not its burst. A guess more than
//     OpenAbove too low (Graph's bucket holds much less than a tenth of a
//     second of its rate) lets the probe open the pacer: the fleet then
//     remembers that guesses fail against this Graph and ramps after
//     every later open phase, instead of holding at the same low guess
//     again. Against such a Graph the first one or two minutes run at a
//     fraction of R (0.2-0.7 in the simulation; TestAGuessRefutedLowIsNotMadeAgain).
//     Successes spread over more than a quarter of a second show a rate,
//     not a bucket: then the fleet rate starts at them, per second, and
//     grows RampGrowth fold every second until the next throttle.
//     Against a slow Graph the slow start's window grows once per round
//     trip, so the burst's successes come spread over several round
//     trips: up to four round trips of the measured latency are taken off
//     their span before it is compared with a quarter of a second (a ramp
//     at 16-fold a second with 300ms of feedback delay overshoots Graph's
//     limit threefold before the first 429 comes back).
//   - Every later throttle reveals the limit. When the gate opened Graph's
//     bucket was full; the fleet then sent at the known rate, and the
//     bucket ran dry when the throttled call left (one measured latency
//     before its answer). The estimate is the refill rate of the bucket
//     that runs dry exactly then; replicas that sent less than their
//     share (their own demand or concurrency held them back, not the
//     rate) count with what they sent. The fleet rate then holds at
//     (1-Margin) times the estimate for HoldFor and probes upward after,
//     slowly at first (cubic in time), so that a rising limit is found
//     again; a probe that reaches OpenAbove times the estimate without a
//     throttle opens the pacer. An estimate from a short drain is rough
//     (one call more or less moves it): it holds for less, down to an
//     eighth of HoldFor, and a ramp's, which errs high, further under, so
//     that the next probe measures the limit precisely. A hold's estimate
//     never cuts deeper than Decrease; when there is no estimate (the
//     episode cannot explain the throttle, or Graph's bucket holds one
//     call, which drains at the first call whatever the limit) the rate
//     is cut by Decrease from what the fleet really sent, the classic
//     multiplicative decrease. The rate never falls under MinRate. A
//     member that has not been seen for a second since the gate opened
//     counts as using its share: what it sent in the second before
//     counts the gate, not its demand.
//   - A 429 answered while the gate was already closed, or by a replica
//     that did not pace by the curve in force (it had just joined, or lost
//     the store), belongs to the throttle already known: it may extend the
//     gate, it does not cut the rate.
//
// Graph's early warning. Graph's identity and access throttling sends
// x-ms-throttle-limit-percentage once an application has spent more than
// 0.8 of its limit (0.8 to 1.8). SucceededWithUsage reports it: while open,
// the first warning ends the open phase without a gate (the fleet holds at
// Decrease times what it sent); while paced, a warning cuts the same way
// only when the usage rose by 0.02 under the law in force, since at a
// steady rate near the limit Graph warns on every answer. Without the
// header nothing changes (warning.go).
//
// Measured against a model of the project's Graph stand-in (a token bucket
// of R calls/s and burst R/10, throttled calls charged too), one or three
// replicas with 16 calls in flight each apply 0.975 R over the 60s from
// the first applied write (the load harness's window) from a cold start,
// the start-up costing 0.9-1.0s of R (the first throttle's gate), and
// 0.96-0.98 R over 120s and 300s, with 0.01-0.4% of calls answered 429,
// for R of 20, 100 and 500, Graph answers in order or overtaking each
// other (sim_test.go). Limits under 20/s do worse (a bucket of one or two
// calls drains at once, and its throttles tell little of the limit).
//
// The fleet. Replicas share one record per operation (a FleetState): the
// curve, the gate and the members with their heartbeat, whether the rate
// held them back, what they sent, and their share of the burst that ended
// the open phase (a replica that learns of that throttle from the fleet
// rather than from Graph reports its share too, if only as none, so that
// a replica that started late does not make the burst look larger). Each
// replica reads, merges and compare-and-swaps the record every
// SyncInterval and at once after a throttle. A
// replica silent for MemberLease is dropped and the others' shares grow;
// Run's end removes its replica at once. Calls never wait for the store: a
// slow or unreachable store leaves each replica pacing with what it last
// knew, cutting its own rate on its own throttles. Replica clocks are
// assumed synchronized to well under a second (NTP): gates and heartbeats
// are absolute times.
package pacer
