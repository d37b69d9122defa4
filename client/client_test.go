package client_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

type order struct {
	ID    int    `json:"id"`
	Owner string `json:"owner,omitempty"`
}

// memName returns a memqueue queue name unique to the test.
var memSeq atomic.Int64

func memName(t *testing.T) string {
	return fmt.Sprintf("client-%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), memSeq.Add(1))
}

func newClient(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	if o.Lookup == nil {
		o.Lookup = func(string) (string, bool) { return "", false }
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive takes up to n visible messages from memqueue queue name,
// waiting at most wait for the first.
func receive(t *testing.T, name string, n int, wait time.Duration) []*triggers.Message {
	t.Helper()
	d := memqueue.New(memqueue.Default.Queue(name), nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	msgs, err := d.Receive(ctx, n, time.Minute)
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return msgs
}

func TestSendEncodesAsOutputs(t *testing.T) {
	name := memName(t)
	var sent []string
	c := newClient(t, client.Options{OnSent: func(conn, q string) { sent = append(sent, conn+"|"+q) }})
	ctx := context.Background()
	for _, v := range []any{order{ID: 1}, "text as is", []byte{0xff, 0}} {
		if _, err := c.Send(ctx, "memqueue://"+name, v); err != nil {
			t.Fatal(err)
		}
	}
	msgs := receive(t, name, 10, time.Second)
	if len(msgs) != 3 || string(msgs[0].Body) != `{"id":1}` || string(msgs[1].Body) != "text as is" || string(msgs[2].Body) != "\xff\x00" {
		t.Fatalf("got %d messages %q", len(msgs), bodies(msgs))
	}
	if len(sent) != 3 || sent[0] != "|memqueue://"+name {
		t.Errorf("OnSent saw %q", sent)
	}
	if _, err := c.Send(ctx, "memqueue://"+name, make(chan int)); !errors.Is(err, client.ErrNotEncodable) || !client.Unsendable(err) {
		t.Errorf("a channel: %v", err)
	}
}

func bodies(msgs []*triggers.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Body))
	}
	return out
}

// URLs are sent as the function reading them decodes, else URLEncoding.
func TestURLEncodingRule(t *testing.T) {
	a, b := memName(t), memName(t)
	b64 := bindings.Base64
	c := newClient(t, client.Options{
		Lookup:    func(n string) (string, bool) { return map[string]string{"BQueue": "memqueue://" + b}[n], n == "BQueue" },
		Functions: []client.Function{{Name: "B", Queue: "%BQueue%", Encoding: &b64}},
	})
	ctx := context.Background()
	if _, err := c.Send(ctx, "memqueue://"+a, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, "%BQueue%", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendTo(ctx, "b", "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, "memqueue://"+a, "z", client.Encoding(bindings.Base64)); err != nil {
		t.Fatal(err)
	}
	if got := bodies(receive(t, a, 10, time.Second)); fmt.Sprint(got) != "[x eg==]" {
		t.Errorf("no function reads %s: %q, want none then the Encoding option's base64", a, got)
	}
	if got := bodies(receive(t, b, 10, time.Second)); fmt.Sprint(got) != "[eA== eQ==]" {
		t.Errorf("function B reads %s with base64: %q", b, got)
	}
	c2 := newClient(t, client.Options{URLEncoding: bindings.Base64})
	if p, err := c2.Prepare(mustTarget(t, "memqueue://"+a, ""), []byte("x")); err != nil || string(p.Body()) != "eA==" || p.Encoding() != bindings.Base64 {
		t.Errorf("URLEncoding base64: %v", err)
	}
}

func mustTarget(t *testing.T, name, conn string) client.Target {
	t.Helper()
	tg, err := client.ParseTarget(name, conn)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestTargets(t *testing.T) {
	c := newClient(t, client.Options{Lookup: func(n string) (string, bool) { return "Orders-EU", n == "Q" }})
	tg, err := c.Target("%Q%", "")
	if err != nil || tg.Name() != "orders-eu" || !tg.IsStorage() || tg.Connection() != "Storage" || tg.URL() != nil {
		t.Errorf("%%Q%%: %+v %v", tg, err)
	}
	tg = mustTarget(t, "memqueue://secret@orders?key=s3cret", "Conn")
	if tg.IsStorage() || tg.Connection() != "Conn" || strings.Contains(tg.String(), "s3cret") || tg.URL().Scheme != "memqueue" {
		t.Errorf("URL target: %q %q", tg.String(), tg.Connection())
	}
	for expr, want := range map[string]string{"%Nope%": "Nope", "Bad--Name": "", "gopher://x": "gopher", "x": ""} {
		if _, err := c.Target(expr, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error naming %q", expr, err, want)
		}
	}
	if _, err := c.Prepare(client.Target{}, nil); err == nil {
		t.Error("the zero Target was accepted")
	}
}

// Storage Queue checks need no server: they are made before sending.
func TestStorageChecksBeforeSending(t *testing.T) {
	none := bindings.None
	c := newClient(t, client.Options{Functions: []client.Function{{Name: "Raw", Queue: "raw-q", Encoding: &none}}})
	q := mustTarget(t, "Orders", "")
	p, err := c.Prepare(q, []byte(`{"id":1}`))
	if err != nil || p.Encoding() != bindings.Base64 || string(p.Body()) != base64.StdEncoding.EncodeToString([]byte(`{"id":1}`)) || p.Size() != len(p.Body()) {
		t.Fatalf("base64 by default: %v", err)
	}
	if p, err := c.Prepare(mustTarget(t, "raw-q", ""), []byte(`{"id":1}`)); err != nil || string(p.Body()) != `{"id":1}` {
		t.Errorf("the function's messageEncoding none: %v", err)
	}
	if p, err := c.Prepare(mustTarget(t, "raw-q", "Other"), []byte(`x`)); err != nil || p.Encoding() != bindings.Base64 {
		t.Errorf("another connection's raw-q is not the function's: %v", err)
	}
	big := []byte(strings.Repeat("x", 48*1024+1)) // 65540 bytes in base64
	var tooLarge *client.TooLargeError
	if _, err := c.Prepare(q, big); !errors.As(err, &tooLarge) || tooLarge.Size != 65540 || tooLarge.Limit != client.MaxStorageMessage || tooLarge.Queue != "orders" || !client.Unsendable(err) {
		t.Errorf("over 64 KiB: %v", err)
	}
	var notXML *client.NotXMLError
	if _, err := c.Prepare(q, []byte("a\x01b"), client.Encoding(bindings.None)); !errors.As(err, &notXML) || !strings.Contains(notXML.Reason, "U+0001") {
		t.Errorf("not XML text: %v", err)
	}
	if _, err := c.Prepare(q, []byte("{}"), client.Properties(map[string]string{"a": "b"})); !errors.Is(err, client.ErrNoProperties) {
		t.Errorf("properties on a Storage Queue: %v", err)
	}
	if _, err := c.Prepare(q, []byte("not json"), client.WithMeta(bindings.Meta{OperationID: "x"})); !errors.Is(err, bindings.ErrNotJSON) || !client.Unsendable(err) {
		t.Errorf("metadata on a non-JSON Storage Queue payload: %v", err)
	}
	p, err = c.Prepare(q, []byte(`{"id":1}`), client.WithMeta(bindings.Meta{OperationID: "op"}), client.Encoding(bindings.None))
	if err != nil || string(p.Body()) != `{"$jobhost":{"operationId":"op"},"id":1}` {
		t.Errorf("metadata in the body: %q %v", p.Body(), err)
	}
	if _, err := c.Prepare(q, nil, client.Encoding("rot13")); err == nil {
		t.Error("an unknown encoding was accepted")
	}
}

// A batch with one value that cannot be sent sends none.
func TestBatchAllOrNothing(t *testing.T) {
	name := memName(t)
	c := newClient(t, client.Options{})
	ctx := context.Background()
	_, err := c.SendBatch(ctx, "memqueue://"+name, []any{order{ID: 1}, func() {}, order{ID: 3}})
	if !errors.Is(err, client.ErrNotEncodable) || !strings.Contains(err.Error(), "value 2 of 3") {
		t.Fatalf("got %v", err)
	}
	if n := memqueue.Default.Queue(name).Len(); n != 0 {
		t.Fatalf("%d messages sent", n)
	}
	ids, err := c.SendBatch(ctx, "memqueue://"+name, []any{order{ID: 1}, order{ID: 2}})
	if err != nil || len(ids) != 2 || ids[0] == "" {
		t.Fatalf("%q %v", ids, err)
	}
	q := client.NewQueue[order](c, "memqueue://"+name, client.Properties(map[string]string{"k": "v"}))
	if _, err := q.SendBatch(ctx, []order{{ID: 3}, {ID: 4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Send(ctx, order{ID: 5}); err != nil {
		t.Fatal(err)
	}
	msgs := receive(t, name, 10, time.Second)
	if got := bodies(msgs); fmt.Sprint(got) != `[{"id":1} {"id":2} {"id":3} {"id":4} {"id":5}]` || msgs[4].Properties["k"] != "v" {
		t.Errorf("got %q", got)
	}
}

func TestMetaInProperties(t *testing.T) {
	name := memName(t)
	c := newClient(t, client.Options{})
	if _, err := c.Send(context.Background(), "memqueue://"+name, order{ID: 1}, client.WithMeta(bindings.Meta{OperationID: "op-1"}),
		client.Properties(map[string]string{"x": "y"})); err != nil {
		t.Fatal(err)
	}
	msgs := receive(t, name, 1, time.Second)
	if len(msgs) != 1 || string(msgs[0].Body) != `{"id":1}` || bindings.MetaFromProps(msgs[0].Properties).OperationID != "op-1" || msgs[0].Properties["x"] != "y" {
		t.Errorf("got %+v", msgs)
	}
}

func TestDelayMemqueue(t *testing.T) {
	name := memName(t)
	c := newClient(t, client.Options{})
	start := time.Now()
	if _, err := c.Send(context.Background(), "memqueue://"+name, "later", client.Delay(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var got []*triggers.Message
	for deadline := time.Now().Add(10 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		got = receive(t, name, 1, 2*time.Second)
	}
	if len(got) != 1 || time.Since(start) < 300*time.Millisecond {
		t.Errorf("got %d messages after %s", len(got), time.Since(start))
	}
}

// noDelay is a broker whose publishers cannot delay, counting opens.
type noDelay struct {
	mu              sync.Mutex
	open, max, sent int
	fail            error
}

type noDelayPub struct {
	b      *noDelay
	closed bool
}

func (p *noDelayPub) Publish(context.Context, []byte, map[string]string) (string, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.fail != nil {
		return "", p.b.fail
	}
	p.b.sent++
	return fmt.Sprint(p.b.sent), nil
}

func (p *noDelayPub) Close() error {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.b.open--
	}
	return nil
}

func registerNoDelay(t *testing.T, scheme string) *noDelay {
	b := &noDelay{}
	restore := triggers.Replace(triggers.Scheme{Name: scheme,
		Subscription: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Driver, error) {
			return nil, errors.New("unused")
		},
		Publisher: func(context.Context, *url.URL, triggers.OpenOptions) (triggers.Publisher, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.open++
			b.max = max(b.max, b.open)
			return &noDelayPub{b: b}, nil
		}})
	t.Cleanup(restore)
	return b
}

func TestDelayUnsupported(t *testing.T) {
	b := registerNoDelay(t, "nodelay")
	c := newClient(t, client.Options{})
	ctx := context.Background()
	name := memName(t)
	_, err := c.SendBatch(ctx, "memqueue://"+name, []any{"a"}, client.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a := mustTarget(t, "nodelay://a", "")
	p1, _ := c.Prepare(mustTarget(t, "memqueue://"+name, ""), []byte("now"))
	p2, _ := c.Prepare(a, []byte("later"), client.Delay(time.Second))
	if _, err := c.SendPrepared(ctx, p1, p2); !errors.Is(err, client.ErrDelayUnsupported) || !client.Unsendable(err) {
		t.Fatalf("got %v", err)
	}
	if b.sent != 0 || memqueue.Default.Queue(name).Len() != 1 {
		t.Errorf("sent %d and %d; want nothing of the batch", b.sent, memqueue.Default.Queue(name).Len()-1)
	}
	if _, err := c.SendPayload(ctx, a, []byte("no delay")); err != nil || b.sent != 1 {
		t.Errorf("without a delay: %v", err)
	}
}

// Publishers are kept per target, at most MaxPublishers, all closed by
// Close; sends after Close fail.
func TestPublishersBounded(t *testing.T) {
	b := registerNoDelay(t, "countpub2")
	c, err := client.New(client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range client.MaxPublishers + 20 {
		for range 2 {
			if _, err := c.Send(ctx, fmt.Sprintf("countpub2://t%d", i), "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Open(ctx, mustTarget(t, "countpub2://t0", "")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if b.max > client.MaxPublishers || b.open != 0 || b.sent != 2*(client.MaxPublishers+20) {
		t.Errorf("max open %d, open after Close %d, sent %d", b.max, b.open, b.sent)
	}
	if _, err := c.Send(ctx, "countpub2://t0", "x"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestSendToAndEnqueue(t *testing.T) {
	reg := &functions.Registry{}
	name := memName(t)
	ref := functions.Add(reg, "ProcessOrder", functions.SubscriptionTrigger("memqueue://"+name),
		func(context.Context, order, *triggers.Message) error { return nil })
	def := reg.Functions()[0]
	c := newClient(t, client.Options{Functions: []client.Function{{Name: def.Name, Queue: def.Trigger.Queue, Validate: def.Validate}}})
	ctx := context.Background()
	if _, err := client.Enqueue(ctx, c, ref, order{ID: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendTo(ctx, "processorder", map[string]any{"id": 8}); err != nil {
		t.Fatal(err)
	}
	var ie *client.InputError
	if _, err := c.SendTo(ctx, "ProcessOrder", map[string]any{"id": "eight"}); !errors.As(err, &ie) || ie.Field != "id" {
		t.Errorf("a bad input: %v", err)
	}
	if _, err := c.SendTo(ctx, "Nope", 1); !errors.Is(err, client.ErrUnknownFunction) {
		t.Errorf("unknown function: %v", err)
	}
	if _, err := client.Enqueue(ctx, c, functions.NewRef[order]("Nope"), order{}); !errors.Is(err, client.ErrUnknownFunction) {
		t.Errorf("unknown ref: %v", err)
	}
	if got := bodies(receive(t, name, 10, time.Second)); fmt.Sprint(got) != `[{"id":7} {"id":8}]` {
		t.Errorf("got %q", got)
	}
	if fs := c.Functions(); len(fs) != 1 || fs[0] != "ProcessOrder" {
		t.Errorf("Functions() = %q", fs)
	}
}

func TestNewChecksFunctions(t *testing.T) {
	if _, err := client.New(client.Options{Functions: []client.Function{{Name: "A", Queue: "a"}, {Name: "a", Queue: "b"}, {Queue: "c"}}}); err == nil ||
		!strings.Contains(err.Error(), "more than once") || !strings.Contains(err.Error(), "empty name") {
		t.Errorf("got %v", err)
	}
	// A queue that does not resolve fails only the calls addressing it.
	c := newClient(t, client.Options{Functions: []client.Function{{Name: "A", Queue: "%Unset%"}}})
	if _, err := c.SendTo(context.Background(), "A", 1); err == nil || !strings.Contains(err.Error(), "Unset") {
		t.Errorf("got %v", err)
	}
}
