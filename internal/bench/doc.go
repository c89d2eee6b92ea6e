// Package bench is fanout's benchmark and chaos driver, behind
// cmd/fanout-bench (`make bench`, `make chaos`, `make chaos-long`) and the
// short chaos test in internal/e2e.
//
// Benchmarks (RunBench) run on the real broker (Apache Kafka) and the real
// store (FerretDB on PostgreSQL) of deploy/local, each figure beside its
// baseline measured in the same run, and write docs/benchmarks.md,
// docs/benchmarks.json and SVG latency plots.
//
// The chaos run (RunChaos) starts a broker and a FerretDB of its own
// (restarting the shared ones would break whoever else uses them), puts
// toxiproxy links in front of both, runs every role as a child process of
// the fanout binary, kills and restarts them at random, restarts the broker
// and the store once, injects faults into the downstream simulators and
// finally checks a ledger of what every target received.
//
// Every loop here is bounded by a count or a deadline, and every
// goroutine has an owner that waits for it.
package bench
