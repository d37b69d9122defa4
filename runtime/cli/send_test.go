package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers/azurequeue"
	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
	"github.com/jobhost/jobhost/triggers/rabbitmq/rabbittest"
)

// writeBytes writes a file of raw bytes into dir.
func writeBytes(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSendNoneRefusesNonXMLText: a Storage Queue message is XML text, so
// under --encoding none bytes that are not valid UTF-8 (or characters XML
// forbids) are refused, not silently turned into U+FFFD; base64 sends them.
func TestSendNoneRefusesNonXMLText(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	dir := t.TempDir()
	writeBytes(t, dir, "bad.bin", []byte{'{', 0xff, 0xfe, '}'})
	writeBytes(t, dir, "ctl.txt", []byte("a\x01b"))
	for file, want := range map[string]string{"bad.bin": "not valid UTF-8", "ctl.txt": "U+0001"} {
		code, out, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--file", file, "--encoding", "none")
		if code != ExitUsage || !strings.Contains(errs, want) || !strings.Contains(errs, "--encoding base64") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 naming %q and base64", file, code, out, errs, want)
		}
	}
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--file", "bad.bin", "--encoding", "base64"); code != ExitOK {
		t.Fatalf("base64: exit %d %s", code, errs)
	}
	drv := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	msgs, err := drv.Peek(context.Background(), 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the queue, want only the base64 one", len(msgs))
	}
	if p, err := bindings.Base64.Decode(msgs[0].Body); err != nil || string(p) != "{\xff\xfe}" {
		t.Errorf("base64 body %q does not carry the bytes: %v", msgs[0].Body, err)
	}
}

// TestSendNoneKeepsBytesOnBroker: a broker carries bytes, so --encoding
// none sends them exactly, valid UTF-8 or not.
func TestSendNoneKeepsBytesOnBroker(t *testing.T) {
	serverURL := rabbittest.Require(t)
	queue := rabbittest.DeclareQueue(t, false, nil)
	dir := t.TempDir()
	body := []byte{'{', 0xff, 0x00, 0xfe, '}'}
	writeBytes(t, dir, "bad.bin", body)
	env := []string{"RABBIT_SERVER_URL=" + serverURL}
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", "rabbit://"+queue, "--file", "bad.bin", "--encoding", "none"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	d, ok := rabbittest.Get(t, rabbittest.Dial(t), queue)
	if !ok || string(d.Body) != string(body) {
		t.Errorf("got %q (%v), want %q", d.Body, ok, body)
	}
}

// TestSendHelpSaysItCreates: send creates a missing destination whatever
// createQueues says, and its help says so.
func TestSendHelpSaysItCreates(t *testing.T) {
	_, _, errs := run(t, t.TempDir(), &functions.Registry{}, nil, "send", "-h")
	for _, want := range []string{"A missing destination is created", "createQueues", "Service Bus entities"} {
		if !strings.Contains(errs, want) {
			t.Errorf("send -h lacks %q:\n%s", want, errs)
		}
	}
	_, _, errs = run(t, t.TempDir(), &functions.Registry{}, nil, "--help")
	if !strings.Contains(errs, "creates a missing Storage Queue") {
		t.Errorf("usage does not say send creates queues:\n%s", errs)
	}
}

// TestPeekReportsInvisible: when a host holds every message (or a retry
// delays them) peek sees none but the queue is not empty: it says so.
func TestPeekReportsInvisible(t *testing.T) {
	srv := azuritetest.Shared(t)
	queue := srv.NewQueue(t)
	env := []string{"AzureWebJobsStorage=" + srv.ConnectionString}
	dir := t.TempDir()
	code, out, errs := run(t, dir, &functions.Registry{}, env, "peek", "--queue", queue)
	if code != ExitOK || !strings.Contains(out, "is empty") {
		t.Fatalf("empty queue: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, dir, &functions.Registry{}, env, "send", "--queue", queue, "--json", `{"id": 1}`); code != ExitOK {
		t.Fatal(errs)
	}
	drv := azurequeue.New(srv.ServiceClient(t), queue, azurequeue.Options{})
	msgs, err := drv.Receive(context.Background(), 1, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("lease: %d %v", len(msgs), err)
	}
	code, out, errs = run(t, dir, &functions.Registry{}, env, "peek", "--queue", queue)
	if code != ExitOK || strings.Contains(out, "is empty") || !strings.Contains(out, "1 message(s) are invisible (in flight or delayed)") {
		t.Errorf("leased message: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = run(t, dir, &functions.Registry{}, env, "peek", "--queue", queue, "--output", "json")
	var rows []peeked
	if code != ExitOK || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 0 || !strings.Contains(errs, "invisible") {
		t.Errorf("json: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestHintPlaceholderNotRedacted: the hint for a missing server URL shows
// its placeholder URL as written, not "amqp://user:REDACTED@host:port".
func TestHintPlaceholderNotRedacted(t *testing.T) {
	code, _, errs := run(t, t.TempDir(), &functions.Registry{}, nil, "send", "--queue", "rabbit://orders", "--json", `{}`)
	if code == ExitOK || !strings.Contains(errs, "amqp://user:password@host:port/vhost") {
		t.Errorf("exit %d, stderr %q; want the hint's placeholder URL as written", code, errs)
	}
}

// TestRedactTextKeepsOnlyPlaceholders: only the literal placeholder URL
// escapes redaction.
func TestRedactTextKeepsOnlyPlaceholders(t *testing.T) {
	for _, s := range []string{"dial amqp://guest:s3cret@broker:5672/: refused", "amqp://user:s3cret@host:port/x",
		"amqp://user:password@host:port/ then amqp://u:s3cret@h/"} {
		if got := redactText(s); strings.Contains(got, "s3cret") {
			t.Errorf("redactText(%q) = %q: password shown", s, got)
		}
	}
	if got := redactText("see amqp://user:password@host:port/vhost and amqp://u:s3cret@h/"); got !=
		"see amqp://user:password@host:port/vhost and amqp://u:REDACTED@h/" {
		t.Errorf("got %q", got)
	}
}
