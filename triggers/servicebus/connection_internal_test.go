package servicebus

import (
	"context"
	"net/url"
	"testing"

	"github.com/jobhost/jobhost/triggers"
)

func TestResolveConnection(t *testing.T) {
	t.Parallel()
	const cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t="
	for _, c := range []struct {
		name       string
		connection string
		settings   map[string]string
		setting    string
		host       string
	}{
		{"named setting first", "SB", map[string]string{"SB": cs, "AzureWebJobsSB": "other.servicebus.windows.net", "SERVICEBUS_CONNECTION_STRING": cs}, "SB", ""},
		{"AzureWebJobs prefix", "SB", map[string]string{"AzureWebJobsSB": cs}, "AzureWebJobsSB", ""},
		{"already prefixed", "AzureWebJobsServiceBus", map[string]string{"AzureWebJobsServiceBus": cs}, "AzureWebJobsServiceBus", ""},
		{"fullyQualifiedNamespace", "SB", map[string]string{"SB__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, "SB__fullyQualifiedNamespace", "ns.servicebus.windows.net"},
		{"empty values skipped", "SB", map[string]string{"SB": "", "SB__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, "SB__fullyQualifiedNamespace", "ns.servicebus.windows.net"},
		{"host in the named setting", "SB", map[string]string{"SB": "https://ns.servicebus.windows.net/"}, "SB", "ns.servicebus.windows.net"},
		{"gocloud connection string", "", map[string]string{"SERVICEBUS_CONNECTION_STRING": cs, "AZURE_SERVICEBUS_HOSTNAME": "h.servicebus.windows.net"}, "SERVICEBUS_CONNECTION_STRING", ""},
		{"gocloud hostname", "", map[string]string{"AZURE_SERVICEBUS_HOSTNAME": "h.servicebus.windows.net"}, "AZURE_SERVICEBUS_HOSTNAME", "h.servicebus.windows.net"},
		{"SAS connection string", "", map[string]string{"SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1&skn=k"}, "SERVICEBUS_CONNECTION_STRING", ""},
	} {
		got, err := resolveConnection(triggers.OpenOptions{Connection: c.connection, Lookup: func(k string) (string, bool) { v, ok := c.settings[k]; return v, ok }})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.setting != c.setting || got.host != c.host || (c.host == "") != (got.connStr != "") {
			t.Errorf("%s: got setting %q host %q (connection string: %v), want %q %q", c.name, got.setting, got.host, got.connStr != "", c.setting, c.host)
		}
	}
}

func TestResolveConnectionEnvironment(t *testing.T) {
	t.Setenv("JOBHOST_SB_TEST__fullyQualifiedNamespace", "env.servicebus.windows.net")
	got, err := resolveConnection(triggers.OpenOptions{Connection: "JOBHOST_SB_TEST"})
	if err != nil || got.host != "env.servicebus.windows.net" {
		t.Fatalf("nil Lookup should read the environment: %+v, %v", got, err)
	}
}

// sharedRefs returns the reference count of the shared client for cs, or
// 0 when there is none.
func sharedRefs(cs string) int {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sc := shared[connKey(connection{connStr: cs})]; sc != nil {
		return sc.refs
	}
	return 0
}

// Drivers, publishers and poison administrations on one connection share a
// client, whatever settings hold it; the last Close closes it.
func TestSharedClient(t *testing.T) {
	t.Parallel()
	// A namespace no other test uses: the registry is process-wide.
	const cs = "Endpoint=sb://shared-client-test.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=c2hhcmVk"
	const other = "Endpoint=sb://shared-client-other.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=b3RoZXI="
	settings := map[string]string{"A": cs, "AzureWebJobsB": cs, "SERVICEBUS_CONNECTION_STRING": cs, "C": other}
	o := func(conn string) triggers.OpenOptions {
		return triggers.OpenOptions{Connection: conn, Lookup: func(k string) (string, bool) { v, ok := settings[k]; return v, ok }}
	}
	ctx := context.Background()
	queue := &url.URL{Scheme: Scheme, Host: "orders"}
	sub := &url.URL{Scheme: Scheme, Host: "events", RawQuery: "subscription=billing"}

	d1, err := OpenURL(ctx, queue, o("A"))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := OpenURL(ctx, sub, o("B"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := OpenPublisherURL(ctx, sub, o(""))
	if err != nil {
		t.Fatal(err)
	}
	pa, err := OpenPoisonURL(ctx, queue, o("A"))
	if err != nil {
		t.Fatal(err)
	}
	d3, err := OpenURL(ctx, queue, o("C"))
	if err != nil {
		t.Fatal(err)
	}
	if n := sharedRefs(cs); n != 4 {
		t.Fatalf("references to the shared client = %d, want 4", n)
	}
	if n := sharedRefs(other); n != 1 {
		t.Fatalf("references to the other connection's client = %d, want 1", n)
	}
	sharedMu.Lock()
	sc := shared[connKey(connection{connStr: cs})]
	sharedMu.Unlock()
	if pa.(*PoisonAdmin).counter == nil {
		t.Error("poison administration has no management client for Count")
	}
	if ac, err := sc.adminClient(); err != nil || ac != pa.(*PoisonAdmin).counter {
		t.Errorf("management client not shared: %v", err)
	}
	for i, c := range []struct {
		close func() error
		refs  int
	}{{d1.Close, 3}, {d1.Close, 3}, {pub.Close, 2}, {pa.Close, 1}, {pub.Close, 1}, {d2.Close, 0}} {
		if err := c.close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		if n := sharedRefs(cs); n != c.refs {
			t.Fatalf("after close %d: %d references, want %d", i, n, c.refs)
		}
	}
	// A new open after the last close makes a new client.
	d4, err := OpenURL(ctx, queue, o("A"))
	if err != nil {
		t.Fatal(err)
	}
	if d4.(*Driver).release == nil || sharedRefs(cs) != 1 {
		t.Error("reopen did not take a fresh shared client")
	}
	for _, d := range []triggers.Driver{d3, d4} {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if sharedRefs(cs)+sharedRefs(other) != 0 {
		t.Error("clients left after every Close")
	}
}
