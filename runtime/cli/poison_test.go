package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	_ "github.com/jobhost/jobhost/triggers/pubsub/mempubsub" // mem://, whose poison tools work only in-process
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

// runIn runs the CLI with stdin (nil: no stdin at all).
func runIn(t *testing.T, dir string, reg *functions.Registry, environ []string, stdin *string, args ...string) (int, string, string) {
	t.Helper()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	var out, errb bytes.Buffer
	e := Env{Args: args, Stdout: &out, Stderr: &errb, Environ: environ, Registry: reg}
	if stdin != nil {
		e.Stdin = strings.NewReader(*stdin)
	}
	code := Run(context.Background(), e)
	return code, out.String(), errb.String()
}

func answer(s string) *string { return &s }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// poisonStorage puts texts on queue and moves them to its poison queue the
// way the host does (receive, DeadLetter), returning the poison copies' ids.
func poisonStorage(t *testing.T, srv *azuritetest.Server, queue string, texts ...string) []string {
	t.Helper()
	ctx := context.Background()
	d := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	for _, text := range texts {
		if _, err := d.Send(ctx, text); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for tries := 0; len(ids) < len(texts) && tries < 10; tries++ {
		msgs, err := d.Receive(ctx, 32, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			id, err := d.DeadLetter(ctx, m, "test")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	if len(ids) != len(texts) {
		t.Fatalf("poisoned %d of %d", len(ids), len(texts))
	}
	return ids
}

// drainStorage receives (and deletes) every message of queue.
func drainStorage(t *testing.T, srv *azuritetest.Server, queue string) []*triggers.Message {
	t.Helper()
	ctx := context.Background()
	d := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	var out []*triggers.Message
	for {
		msgs, err := d.Receive(ctx, 32, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			if err := d.Complete(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, msgs...)
	}
}

func storageCount(t *testing.T, srv *azuritetest.Server, queue string) int {
	t.Helper()
	n, err := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{}).ApproximateCount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func texts(msgs []*triggers.Message) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.Text())
	}
	slices.Sort(s)
	return s
}

// queues lists every queue with its count; a poison queue follows its
// source queue, is marked in the table and carries its source in JSON.
func TestQueuesListing(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	poisonStorage(t, srv, queue, b64(`{"id": 1}`), b64(`{"id": 2}`))
	if _, err := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{}).Send(context.Background(), b64(`{"id": 3}`)); err != nil {
		t.Fatal(err)
	}
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	code, out, errs := run(t, t.TempDir(), registry(), env, "queues", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rows []queueRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	i := slices.IndexFunc(rows, func(r queueRow) bool { return r.Name == queue })
	if i < 0 || i+1 >= len(rows) {
		t.Fatalf("queue %s missing or last: %+v", queue, rows)
	}
	want := []queueRow{{Name: queue, ApproximateMessages: 1},
		{Name: queue + "-poison", ApproximateMessages: 2, Poison: true, Source: queue}}
	if !slices.Equal(rows[i:i+2], want) {
		t.Errorf("rows %+v, want %+v", rows[i:i+2], want)
	}
	if !strings.Contains(out, `"poison": false`) || strings.Contains(out, `"source": ""`) {
		t.Errorf("JSON shape:\n%s", out)
	}

	code, out, errs = run(t, t.TempDir(), registry(), env, "queues")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(out, "\n")
	j := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, queue+" ") })
	if j < 0 || j+1 >= len(lines) || !strings.HasPrefix(lines[j+1], queue+"-poison ") ||
		!strings.Contains(lines[j+1], "POISON of "+queue) || !strings.Contains(lines[j+1], " 2 ") {
		t.Errorf("table:\n%s", out)
	}
	if !strings.Contains(out, "poison message(s) in") {
		t.Errorf("no poison summary:\n%s", out)
	}
}

// poison list shows the poison messages decoded (base64 by default), the
// undecodable ones as raw text, and leaves them where they are.
func TestPoisonListDecodes(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	ids := poisonStorage(t, srv, queue, b64(`{"id": 1}`), "not base64 {")
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString, "OrdersQueue=" + queue}
	code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", "%OrdersQueue%", "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rows []poisonRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(rows) != 2 {
		t.Fatalf("rows: %+v", rows)
	}
	slices.SortFunc(rows, func(a, b poisonRow) int { return strings.Compare(a.Text, b.Text) })
	if r := rows[0]; r.Text != b64(`{"id": 1}`) || r.Payload != `{"id": 1}` || r.DecodeError != "" || !slices.Contains(ids, r.ID) || r.InsertionTime == "" {
		t.Errorf("base64 row: %+v", r)
	}
	if r := rows[1]; r.Text != "not base64 {" || r.Payload != "" || r.DecodeError == "" {
		t.Errorf("raw row: %+v", r)
	}
	code, out, _ = run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", queue, "-n", "1")
	if code != ExitOK || !strings.Contains(out, "showing 1") || !strings.Contains(out, "2 message(s)") {
		t.Errorf("table (exit %d):\n%s", code, out)
	}
	code, out, _ = run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", queue)
	if code != ExitOK || !strings.Contains(out, `  {"id": 1}`) || !strings.Contains(out, "  not base64 {") {
		t.Errorf("table (exit %d):\n%s", code, out)
	}
	if n := storageCount(t, srv, queue+"-poison"); n != 2 {
		t.Errorf("listing changed the poison queue: %d messages", n)
	}

	// A queue that never poisoned anything has no poison queue yet.
	clean := srv.NewQueue(t)
	code, out, _ = run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", clean)
	if code != ExitOK || !strings.Contains(out, "does not exist") {
		t.Errorf("no poison queue (exit %d):\n%s", code, out)
	}
}

// requeue --all copies every message back byte for byte, then empties the
// poison queue; the copies are new messages (first delivery).
func TestPoisonRequeueAll(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	sent := []string{b64(`{"id": 1, "name": "ünïcödé"}`), "raw text, not base64 ?&<>", b64(`{"id": 3}`)}
	poisonStorage(t, srv, queue, sent...)
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}

	// Without --yes it asks; no answer keeps everything.
	code, out, errs := runIn(t, t.TempDir(), registry(), env, answer("\n"), "poison", "requeue", "--queue", queue, "--all")
	if code != ExitFailed || !strings.Contains(errs, "Requeue 3 message(s) from queue "+queue+"-poison to queue "+queue+"? [y/N]") ||
		!strings.Contains(errs, "aborted") || out != "" {
		t.Fatalf("unanswered: exit %d\n%s\n%s", code, out, errs)
	}

	code, out, errs = run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", queue, "--all", "--yes")
	if code != ExitOK || out != "requeued 3 message(s) from queue "+queue+"-poison to queue "+queue+"\n" {
		t.Fatalf("requeue: exit %d\n%s\n%s", code, out, errs)
	}
	if n := storageCount(t, srv, queue+"-poison"); n != 0 {
		t.Errorf("poison queue still has %d", n)
	}
	got := drainStorage(t, srv, queue)
	want := slices.Clone(sent)
	slices.Sort(want)
	if !slices.Equal(texts(got), want) {
		t.Errorf("source has %q, want %q", texts(got), want)
	}
	for _, m := range got {
		if m.DequeueCount != 1 {
			t.Errorf("message %s: DequeueCount %d, want 1 (a fresh message)", m.ID, m.DequeueCount)
		}
	}

	// JSON, and an empty poison queue is nothing to do.
	poisonStorage(t, srv, queue, "again")
	code, out, errs = runIn(t, t.TempDir(), registry(), env, answer("yes\n"), "poison", "requeue", "--queue", queue, "--all", "--output", "json")
	if code != ExitOK || strings.TrimSpace(out) != `{"requeued":1,"failed":0}` {
		t.Errorf("json: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", queue, "--all", "--yes", "--output", "json")
	if code != ExitOK || strings.TrimSpace(out) != `{"requeued":0,"failed":0}` {
		t.Errorf("empty: exit %d\n%s", code, out)
	}
}

// requeue --id moves that message only; the others stay visible in poison.
func TestPoisonRequeueID(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	ids := poisonStorage(t, srv, queue, "one", "two", "three")
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	code, out, errs := run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", queue, "--id", ids[1])
	if code != ExitOK || !strings.Contains(out, "requeued 1 message(s)") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if got := texts(drainStorage(t, srv, queue)); !slices.Equal(got, []string{"two"}) {
		t.Errorf("source has %q", got)
	}
	// The others were released at once: visible to a peek.
	msgs, err := azurequeue.New(srv.ServiceClient(t), queue+"-poison", azurequeue.Options{}).Peek(context.Background(), 32)
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(msgs); !slices.Equal(got, []string{"one", "three"}) {
		t.Errorf("poison has %q visible", got)
	}
	code, _, errs = run(t, t.TempDir(), registry(), env, "poison", "requeue", "--queue", queue, "--id", "no-such-id")
	if code != ExitFailed || !strings.Contains(errs, "no-such-id is not in queue "+queue+"-poison") {
		t.Errorf("unknown id: exit %d %s", code, errs)
	}
	if n := storageCount(t, srv, queue+"-poison"); n != 2 {
		t.Errorf("poison has %d, want 2", n)
	}
}

// purge asks unless --yes; only y or yes deletes.
func TestPoisonPurge(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	poisonStorage(t, srv, queue, "one", "two")
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	for _, in := range []*string{nil, answer(""), answer("n\n"), answer("nope\n")} {
		code, out, errs := runIn(t, t.TempDir(), registry(), env, in, "poison", "purge", "--queue", queue)
		if code != ExitFailed || !strings.Contains(errs, "Delete 2 message(s) from queue "+queue+"-poison? [y/N]") ||
			!strings.Contains(errs, "aborted") || out != "" {
			t.Errorf("answer %v: exit %d\n%s\n%s", in, code, out, errs)
		}
	}
	if n := storageCount(t, srv, queue+"-poison"); n != 2 {
		t.Fatalf("declined purge deleted: %d left", n)
	}
	code, out, errs := runIn(t, t.TempDir(), registry(), env, answer("Y\n"), "poison", "purge", "--queue", queue)
	if code != ExitOK || out != "purged 2 message(s) from queue "+queue+"-poison\n" {
		t.Fatalf("yes: exit %d\n%s\n%s", code, out, errs)
	}
	if n := storageCount(t, srv, queue+"-poison"); n != 0 {
		t.Errorf("%d left", n)
	}
	poisonStorage(t, srv, queue, "three")
	code, out, errs = run(t, t.TempDir(), registry(), env, "poison", "purge", "--queue", queue, "--yes", "--output", "json")
	if code != ExitOK || strings.TrimSpace(out) != `{"purged":1}` || strings.Contains(errs, "[y/N]") {
		t.Errorf("--yes: exit %d\n%s\n%s", code, out, errs)
	}
	if n := storageCount(t, srv, queue+"-poison"); n != 0 {
		t.Errorf("%d left", n)
	}
}

func TestPoisonBadUsage(t *testing.T) {
	env := []string{devStorage, "RABBIT_SERVER_URL=amqp://guest:guest@127.0.0.1:5672/"}
	for _, args := range [][]string{
		{"poison"}, {"poison", "frob"}, {"poison", "list"}, {"poison", "list", "--queue", "q1", "extra"},
		{"poison", "list", "--queue", "q1", "-n", "0"}, {"poison", "list", "--queue", "q1", "-n", "33"},
		{"poison", "list", "--queue", "q1", "--output", "xml"}, {"poison", "list", "--queue", "Bad--Name"},
		{"poison", "list", "--queue", "q1-poison"}, {"poison", "list", "--queue", "%Unset%"},
		{"poison", "requeue", "--queue", "q1"}, {"poison", "requeue", "--queue", "q1", "--all", "--id", "x"},
		{"poison", "requeue", "--queue", "q1", "--all", "--output", "yaml"}, {"poison", "purge", "--queue", "q1", "--nope"},
		{"poison", "purge", "--queue", "rabbit://orders?deadletter=native"},
		{"queues", "--output", "xml"}, {"queues", "extra"},
	} {
		if code, out, errs := run(t, t.TempDir(), registry(), env, args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want 2\n%s%s", args, code, out, errs)
		}
	}
	for scheme, want := range map[string]string{
		"mem://orders":      "inside one process",
		"kafka://orders":    `add import _ "github.com/jobhost/jobhost/triggers/pubsub/kafka"`,
		"memqueue://orders": "inside one process",
	} {
		code, _, errs := run(t, t.TempDir(), registry(), env, "poison", "list", "--queue", scheme)
		if code != ExitUsage || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d %s, want %q", scheme, code, errs, want)
		}
	}
	if code, _, errs := run(t, t.TempDir(), registry(), nil, "queues"); code != ExitUsage || !strings.Contains(errs, "AzureWebJobsStorage") {
		t.Errorf("queues without a connection: exit %d %s", code, errs)
	}
	if code, _, errs := run(t, t.TempDir(), registry(), env, "queues", "--help"); !strings.Contains(errs, "Storage Queues only") {
		t.Errorf("queues --help (exit %d):\n%s", code, errs)
	}
	if code, _, errs := run(t, t.TempDir(), registry(), env, "poison", "--help"); code != ExitOK || !strings.Contains(errs, "poison requeue") {
		t.Errorf("poison --help (exit %d):\n%s", code, errs)
	}
}

// Neither an account key nor a broker password reaches the output.
func TestPoisonSecretsNotEchoed(t *testing.T) {
	const key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
	const password = "s3cr3t-pass"
	for _, c := range []struct {
		env  []string
		args []string
	}{
		{[]string{"AzureWebJobsStorage=AccountName=acct;AccountKey=" + key + ";garbage"}, []string{"poison", "list", "--queue", "orders"}},
		{[]string{"AzureWebJobsStorage=AccountName=acct;AccountKey=" + key + ";garbage"}, []string{"queues"}},
		{[]string{"RABBIT_SERVER_URL=amqp://guest:" + password + "@127.0.0.1:1/"}, []string{"poison", "purge", "--queue", "rabbit://orders", "--yes"}},
		{[]string{"RABBIT_SERVER_URL=amqp://guest:" + password + "@127.0.0.1:1/%zz"}, []string{"poison", "list", "--queue", "rabbit://orders"}},
	} {
		code, out, errs := run(t, t.TempDir(), registry(), c.env, c.args...)
		if code == ExitOK || strings.Contains(out+errs, key) || strings.Contains(out+errs, password) {
			t.Errorf("%q: exit %d, output:\n%s%s", c.args, code, out, errs)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := &progressBar{w: &buf, total: 300}
	p.set(120)
	p.done()
	if got := buf.String(); got != "\r[############                  ] 120/300\n" {
		t.Errorf("%q", got)
	}
	// Not a terminal: silent.
	c := &command{Env: Env{Stderr: &buf}}
	if c.progress(1000).w != nil {
		t.Error("progress bar on a buffer")
	}
}
