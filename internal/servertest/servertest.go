// Package servertest holds the rule the test helpers of the brokers and
// servers (pgtest, redistest, rabbittest, jstest, azuritetest) share for a
// server that is not there: the test is skipped with a loud message, or
// fails when the environment variable that requires the server
// (JOBHOST_REQUIRE_BROKERS, or azuritetest's JOBHOST_REQUIRE_AZURITE) is 1.
// It also names the brokers' test queues (UniqueName).
package servertest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// EnvRequire set to 1 turns an unreachable broker or server into a test
// failure instead of a skip.
const EnvRequire = "JOBHOST_REQUIRE_BROKERS"

// stderr is where Unavailable shouts; tests replace it.
var stderr io.Writer = os.Stderr

// shouted holds the names of the servers Unavailable has shouted about.
var shouted sync.Map

// Unavailable ends t for want of the server called name: it fails t with
// msg when the environment variable env is 1, and otherwise skips t with
// msg, also printed as "!!! msg" on stderr the first time the process
// skips for that server, so that a run without it does not pass unnoticed.
func Unavailable(t testing.TB, name, env, msg string) {
	t.Helper()
	if os.Getenv(env) == "1" {
		t.Fatal(msg)
	}
	if _, done := shouted.LoadOrStore(name, true); !done {
		fmt.Fprintln(stderr, "!!! "+msg)
	}
	t.Skip(msg)
}

// Probe checks, once per process, that a server answers.
type Probe struct {
	// Name is the server's name as messages shout it: "REDIS".
	Name string
	// Check dials the server; nil means it answers. It runs once, on the
	// first Err or Require.
	Check func() error

	once sync.Once
	err  error
}

// Err runs the check the first time, and returns its result.
func (p *Probe) Err() error {
	p.once.Do(func() { p.err = p.Check() })
	return p.err
}

// Require returns when the check passed, and otherwise skips t (fails it,
// with JOBHOST_REQUIRE_BROKERS=1: see Unavailable) with the message
// "<Name> NOT AVAILABLE at <where>: <error>. <hint>; set
// JOBHOST_REQUIRE_BROKERS=1 to fail instead of skipping.". where names
// the server (a URL without its password), hint says how to get one.
func (p *Probe) Require(t testing.TB, where, hint string) {
	t.Helper()
	err := p.Err()
	if err == nil {
		return
	}
	Unavailable(t, p.Name, EnvRequire, fmt.Sprintf("%s NOT AVAILABLE at %s: %v. %s; set %s=1 to fail instead of skipping.",
		p.Name, where, err, hint, EnvRequire))
}

// nonName is what UniqueName replaces in a test's name.
var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// UniqueName returns a new name for a test's queue or stream that mentions
// the test: "jobhost-test", the test's name in lower case (its last 60
// characters, each run of other characters than letters and digits a
// '-') and 12 random hex digits, sep between them ("jobhost-test-" +
// "testsend-sub" + "-" + "1a2b3c4d5e6f").
func UniqueName(t testing.TB, sep string) string {
	b := make([]byte, 6)
	rand.Read(b)
	tn := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(tn) > 60 {
		tn = tn[len(tn)-60:]
	}
	return "jobhost-test" + sep + tn + sep + hex.EncodeToString(b)
}
