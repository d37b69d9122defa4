package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/functions"
)

// The command tables' help, usage errors and exit statuses, for the
// program and each group.
func TestCommandTablesHelpAndUsage(t *testing.T) {
	dir := t.TempDir()
	reg := &functions.Registry{}
	top := fmt.Sprintf(usage, "jobhost")
	poison := fmt.Sprintf(poisonHelp, "jobhost")
	ops := fmt.Sprintf(operationsHelp, "jobhost")
	for _, tc := range []struct {
		args []string
		code int
		errs string // the whole of stderr
	}{
		{nil, ExitUsage, top},
		{[]string{"-h"}, ExitOK, top},
		{[]string{"--help"}, ExitOK, top},
		{[]string{"help"}, ExitOK, top},
		{[]string{"frobnicate"}, ExitUsage, "jobhost: unknown command \"frobnicate\"\n" + top},
		{[]string{"poison"}, ExitUsage, poison},
		{[]string{"poison", "help"}, ExitOK, poison},
		{[]string{"poison", "-h"}, ExitOK, poison},
		{[]string{"poison", "frobnicate"}, ExitUsage, "jobhost poison: unknown subcommand \"frobnicate\" (list, requeue or purge)\n"},
		{[]string{"operations"}, ExitUsage, ops},
		{[]string{"operations", "help"}, ExitOK, ops},
		{[]string{"operations", "frobnicate"}, ExitUsage, "jobhost operations: unknown subcommand \"frobnicate\" (list, show, cancel, purge or migrate)\n"},
		{[]string{"run", "extra"}, ExitUsage, "jobhost run: unexpected argument \"extra\"\n"},
		{[]string{"functions", "--output", "xml"}, ExitUsage, "jobhost functions: --output must be table or json, got \"xml\"\n"},
		{[]string{"poison", "list", "extra"}, ExitUsage, "jobhost poison list: unexpected argument \"extra\"\n"},
		{[]string{"poison", "purge", "--output", "xml"}, ExitUsage, "jobhost poison purge: --output must be table or json, got \"xml\"\n"},
		{[]string{"operations", "show", "a", "b"}, ExitUsage, "jobhost operations show: unexpected argument \"b\" (one operation id at a time)\n"},
		{[]string{"operations", "migrate", "--output", "xml"}, ExitUsage, "jobhost operations migrate: --output must be table or json, got \"xml\"\n"},
	} {
		code, out, errs := runIn(t, dir, reg, nil, nil, tc.args...)
		if code != tc.code || out != "" || errs != tc.errs {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", tc.args, code, out, errs, tc.code, tc.errs)
		}
	}

	// A subcommand's --help: its group's help, then its flags. Poison's
	// subcommands answer it with exit status 2 (as a flag error),
	// operations' with 0.
	for _, tc := range []struct {
		args  []string
		code  int
		help  string
		flags []string
	}{
		{[]string{"poison", "list", "--help"}, ExitUsage, poison, []string{"-queue", "-connection", "-encoding", "-n", "-output", "-host-json", "-settings", "-dev"}},
		{[]string{"poison", "requeue", "-h"}, ExitUsage, poison, []string{"-queue", "-all", "-id", "-yes", "-output"}},
		{[]string{"poison", "purge", "--help"}, ExitUsage, poison, []string{"-queue", "-yes", "-output"}},
		{[]string{"operations", "show", "--help"}, ExitOK, ops, []string{"-output", "-host-json", "-settings", "-dev"}},
	} {
		code, out, errs := runIn(t, dir, reg, nil, nil, tc.args...)
		name := strings.Join(tc.args[:2], " ")
		if code != tc.code || out != "" || !strings.HasPrefix(errs, tc.help+"\nflags of "+name+":\n") {
			t.Errorf("%q: exit %d (want %d), stdout %q, stderr:\n%s", tc.args, code, tc.code, out, errs)
		}
		for _, f := range tc.flags {
			if !strings.Contains(errs, "\n  "+f+" ") && !strings.Contains(errs, "\n  "+f+"\n") {
				t.Errorf("%q lacks the flag %s", tc.args, f)
			}
		}
	}

	// The program's commands' --help is the flag package's, or their own.
	for args, want := range map[string]string{
		"run --help":    "Usage of run:\n",
		"send --help":   fmt.Sprintf(sendHelp, "jobhost"),
		"queues --help": fmt.Sprintf(queuesHelp, "jobhost"),
	} {
		if code, _, errs := runIn(t, dir, reg, nil, nil, strings.Fields(args)...); code != ExitUsage || !strings.HasPrefix(errs, want) || strings.Contains(errs, "flags of") {
			t.Errorf("%s: exit %d, stderr:\n%s", args, code, errs)
		}
	}
}

func TestCommandTableNames(t *testing.T) {
	for _, tc := range []struct {
		subs []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"a", "b"}, "a or b"},
		{[]string{"a", "b", "c"}, "a, b or c"},
	} {
		tab := commandTable{name: "x"}
		for _, s := range tc.subs {
			tab.subs = append(tab.subs, subcommand{name: s})
		}
		if got := tab.names(); got != tc.want {
			t.Errorf("names(%q) = %q, want %q", tc.subs, got, tc.want)
		}
	}
}

// Every driver with poison tools (triggers.PoisonAdmin) or delays
// (triggers.DelayPublisher) is named in the help of poison and send.
func TestHelpNamesEveryScheme(t *testing.T) {
	dir := t.TempDir()
	reg := &functions.Registry{}
	_, _, poison := runIn(t, dir, reg, nil, nil, "poison", "--help")
	for _, want := range []string{"rabbit://Q", "nats://S", "redis://S", "postgres://Q", "azuresb://Q", "Redis: read", "PostgreSQL: read"} {
		if !strings.Contains(poison, want) {
			t.Errorf("poison --help lacks %q", want)
		}
	}
	_, _, send := runIn(t, dir, reg, nil, nil, "send", "--help")
	for _, want := range []string{"rabbit://, nats://, redis://, postgres://, azuresb://", "a Redis stream", "PostgreSQL's queue tables", "Redis's\ndelayed set", "PostgreSQL's run_at"} {
		if !strings.Contains(send, want) {
			t.Errorf("send --help lacks %q", want)
		}
	}
}
