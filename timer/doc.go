// Package timer is the core of jobhost's timer trigger, with the semantics
// of the Azure Functions / WebJobs timer trigger: NCRONTAB and TimeSpan
// schedules ([Parse]) evaluated in the WEBSITE_TIME_ZONE time zone
// ([LocationFromSettings]) so that daylight-saving changes neither skip nor
// double a run; a schedule status ({"Last", "Next", "LastUpdated"}, [Status])
// kept in a [StatusStore] so that a run missed while no host was up is
// caught up once ([Decide]); and a singleton lease ([Locker]) so that one
// host fires each tick. A [Runner] ties these together for one function.
//
// Implementations of StatusStore and Locker live in subpackages:
// timer/timerblob (Azure Blob Storage, the layout Functions uses) and
// timer/timerpg (PostgreSQL); [MemoryStatusStore] and [MemoryLocker] serve
// tests and single-process hosts. timer/timertest has a fake clock and a
// conformance suite for Locker and StatusStore implementations.
//
// docs/timers.md describes the behaviour for users.
package timer
