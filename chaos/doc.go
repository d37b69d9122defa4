// Package chaos is jobhost's fault-injection suite. It has no API: its tests
// run a real worker process (the test binary re-executed as a jobhost worker)
// against real brokers and break things around it — SIGKILL mid-run, Azurite
// stopped and restarted, the RabbitMQ, Redis and PostgreSQL connections cut
// through a TCP proxy,
// poison floods, functions that outlive their lease, SIGTERM with functions in
// flight, 1 to 8 hosts on one queue (Azurite, RabbitMQ, NATS JetStream)
// SIGKILLed at random while new ones join — and check what
// docs/reliability.md promises: nothing is lost, duplicates stay within what
// was in flight, poison bodies are unchanged.
//
// `go test ./chaos/` (part of make test) runs bounded counts in about a
// minute; JOBHOST_CHAOS=full (make chaos) runs the full counts and outage
// lengths. Azurite comes from node_modules, RabbitMQ from 127.0.0.1:5672,
// NATS JetStream from NATS_SERVER_URL (default nats://127.0.0.1:4222),
// Redis from REDIS_SERVER_URL (default redis://127.0.0.1:6379) and
// PostgreSQL from JOBHOST_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/test), as in the other packages:
// missing ones skip the tests loudly, or fail them with
// JOBHOST_REQUIRE_AZURITE=1 / JOBHOST_REQUIRE_BROKERS=1. The Redis and
// PostgreSQL servers are shared and never stopped: only the worker's
// connections to them are cut.
package chaos
