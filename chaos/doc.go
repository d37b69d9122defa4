// Package chaos is jobhost's fault-injection suite. It has no API: its tests
// run a real worker process (the test binary re-executed as a jobhost worker)
// against real brokers and break things around it — SIGKILL mid-run, Azurite
// stopped and restarted, the RabbitMQ connection cut through a TCP proxy,
// poison floods, functions that outlive their lease, SIGTERM with functions in
// flight — and check what docs/reliability.md promises: nothing is lost,
// duplicates stay within what was in flight, poison bodies are unchanged.
//
// `go test ./chaos/` (part of make test) runs bounded counts in about a
// minute; JOBHOST_CHAOS=full (make chaos) runs the full counts and outage
// lengths. Azurite comes from node_modules and RabbitMQ from 127.0.0.1:5672,
// as in the other packages: missing ones skip the tests loudly, or fail them
// with JOBHOST_REQUIRE_AZURITE=1 / JOBHOST_REQUIRE_BROKERS=1.
package chaos
