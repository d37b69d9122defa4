package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/memqueue"
)

type clientOrder struct {
	ID int `json:"id"`
}

// A client built from the host's configuration sends as the host reads:
// each function's messageEncoding, host.json's for other queues, the app
// settings for %Setting%, and the functions' argument types.
func TestClientOptionsFollowTheHost(t *testing.T) {
	reg := &functions.Registry{}
	noop := func(context.Context, clientOrder, *triggers.Message) error { return nil }
	functions.Add(reg, "Raw", functions.QueueTrigger("%RawQueue%"), noop, functions.MessageEncoding(bindings.None))
	ref := functions.Add(reg, "Broker", functions.SubscriptionTrigger("memqueue://client-options-broker"), noop)
	reg.SettingDefault("RawQueue", "Raw-Orders")
	cfg := DefaultConfig()
	cfg.PubSub.MessageEncoding = bindings.Base64
	settings := NewAppSettings(map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
	c, err := NewClient(cfg, settings, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, want := range map[string]bindings.Encoding{"raw-orders": bindings.None, "other": bindings.Base64,
		"memqueue://client-options-broker": bindings.Base64, "memqueue://nobody": bindings.Base64} {
		tg, err := c.Target(name, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.EncodingFor(tg); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	cfg.Queues.MessageEncoding = bindings.None
	opts, err := ClientOptions(cfg, settings, reg)
	if err != nil || opts.StorageEncoding("Storage", "other") != bindings.None || opts.StorageEncoding("Storage", "raw-orders") != bindings.None {
		t.Errorf("host.json's messageEncoding none for other queues: %v", err)
	}
	if fs := c.Functions(); len(fs) != 2 {
		t.Errorf("functions %q", fs)
	}

	ctx := context.Background()
	if _, err := client.Enqueue(ctx, c, ref, clientOrder{ID: 7}); err != nil {
		t.Fatal(err)
	}
	var ie *client.InputError
	if _, err := c.SendTo(ctx, "Broker", map[string]any{"id": "seven"}); !errors.As(err, &ie) || ie.Field != "id" {
		t.Errorf("the argument type is checked: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	msgs, _ := memqueue.New(memqueue.Default.Queue("client-options-broker"), nil).Receive(rctx, 10, time.Minute)
	if len(msgs) != 1 || string(msgs[0].Body) != "eyJpZCI6N30=" {
		t.Fatalf("got %d messages; want the one, base64 as extensions.pubsub says", len(msgs))
	}

	bad := &functions.Registry{}
	functions.Add(bad, "Bad", functions.QueueTrigger("%Unset%"), noop)
	if _, err := ClientOptions(cfg, settings, bad); err == nil {
		t.Error("a configuration problem was not reported")
	}
}
