package runtime

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeNet replaces a sender's resolver and dialer: names resolve through a
// map, never DNS, and only loopback addresses are really connected to; every
// other dial is recorded and fails.
type fakeNet struct {
	names map[string][]string

	mu      sync.Mutex
	lookups []string
	dialled []string // every address given to the dialer
}

var errNotDialled = errors.New("test: not connecting to a non-loopback address")

func (f *fakeNet) install(cb *callbacks) {
	connect := (&net.Dialer{}).DialContext
	cb.resolve = func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		f.mu.Lock()
		f.lookups = append(f.lookups, host)
		f.mu.Unlock()
		ss, ok := f.names[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host (test resolver)", Name: host, IsNotFound: true}
		}
		var as []netip.Addr
		for _, s := range ss {
			as = append(as, netip.MustParseAddr(s))
		}
		return as, nil
	}
	cb.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		f.mu.Lock()
		f.dialled = append(f.dialled, addr)
		f.mu.Unlock()
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().IsLoopback() {
			return nil, errNotDialled
		}
		return connect(ctx, network, addr)
	}
}

func (f *fakeNet) dials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dialled...)
}

// A host name that resolves to a link-local or metadata address is refused
// before any dial, even when the name is allowlisted (and the address too),
// and not retried.
func TestCallbackDialRefusesNamesResolvingToMetadata(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	cb, logs := newTestCallbacks(t, CallbackSettings{
		AllowedHosts: []string{"hooks.example.com", "metadata.google.internal", "*.example.net", "169.254.169.254"},
	})
	f := &fakeNet{names: map[string][]string{
		"hooks.example.com":        {"169.254.169.254"},
		"metadata.google.internal": {"169.254.169.254"},
		"v6.example.net":           {"fd00:ec2::254"},
		"ali.example.net":          {"100.100.100.200"},
		"ll.example.net":           {"169.254.10.1"},
		"ll6.example.net":          {"fe80::1"},
		"mapped.example.net":       {"::ffff:169.254.169.254"},
		"mixed.example.net":        {"127.0.0.1", "169.254.169.254"},
	}}
	f.install(cb)
	for name := range f.names {
		cb.Post("http://"+name+port+"/cb?token=SECRETQ", sampleCompletion("inv-"+name))
	}
	closeNow(t, cb)

	if d := f.dials(); len(d) != 0 {
		t.Errorf("dialled %q; want every name refused before dialling", d)
	}
	refused := logs.FilterMessage("callback refused").All()
	if len(refused) != len(f.names) {
		t.Fatalf("%d refusals, want %d: %s", len(refused), len(f.names), describeLogs(logs))
	}
	for _, e := range refused {
		m := e.ContextMap()
		name := strings.TrimPrefix(m["invocationId"].(string), "inv-")
		if r, _ := m["reason"].(string); !strings.Contains(r, "host "+name+" resolves to ") || m["attempts"] != int64(1) {
			t.Errorf("refusal of %s = %v", name, m)
		}
	}
	if len(f.lookups) != len(f.names) {
		t.Errorf("%d lookups for %d names: a refusal was retried", len(f.lookups), len(f.names))
	}
	if n := logs.FilterMessage("callback sent").Len() + logs.FilterMessage("callback failed").Len(); n != 0 {
		t.Errorf("%d sent or failed: %s", n, describeLogs(logs))
	}
	assertNoSecrets(t, logs)
}

// Loopback and private addresses behind an allowlisted name are dialled,
// the vetted address itself; the request still names the host.
func TestCallbackDialAllowsLoopbackAndPrivate(t *testing.T) {
	hosts := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hosts <- r.Host }))
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"hooks.example.com", "private.example.com"}, MaxAttempts: 1})
	f := &fakeNet{names: map[string][]string{
		"hooks.example.com":   {"127.0.0.1"},
		"private.example.com": {"10.1.2.3"},
	}}
	f.install(cb)
	if tr, ok := cb.client.Transport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Errorf("the callback transport must not use a proxy")
	}
	cb.Post("http://hooks.example.com"+port+"/cb", sampleCompletion("inv-lo"))
	if h := recv(t, hosts, "the request"); h != "hooks.example.com"+port {
		t.Errorf("Host = %q", h)
	}
	cb.Post("http://private.example.com"+port+"/cb", sampleCompletion("inv-private"))
	closeNow(t, cb)
	onlyEntry(t, logs, "callback sent")
	if e := onlyEntry(t, logs, "callback failed"); e["invocationId"] != "inv-private" || e["error"] != errNotDialled.Error() {
		t.Errorf("private failure = %v", e)
	}
	want := []string{"127.0.0.1" + port, "10.1.2.3" + port}
	if d := f.dials(); strings.Join(d, " ") != strings.Join(want, " ") {
		t.Errorf("dialled %q, want %q", d, want)
	}
}

// A metadata address named literally in both the URL and the allowlist is
// dialled; a literal the allowlist does not name is refused by the dialer.
func TestCallbackDialLiteralMetadataAddress(t *testing.T) {
	cb, logs := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"169.254.169.254", "[fd00:ec2::254]:8080"}, MaxAttempts: 1})
	f := &fakeNet{}
	f.install(cb)
	cb.Post("http://169.254.169.254/latest", sampleCompletion("inv-v4"))
	cb.Post("http://[fd00:ec2::254]:8080/latest", sampleCompletion("inv-v6"))
	closeNow(t, cb)
	if d := f.dials(); len(d) != 2 || !strings.Contains(strings.Join(d, " "), "169.254.169.254:80") ||
		!strings.Contains(strings.Join(d, " "), "[fd00:ec2::254]:8080") {
		t.Errorf("dialled %q, want both literals", d)
	}
	if n := logs.FilterMessage("callback failed").Len(); n != 2 {
		t.Errorf("%d failures (the test dialer's), want 2: %s", n, describeLogs(logs))
	}
	if len(f.lookups) != 0 {
		t.Errorf("literals looked up: %q", f.lookups)
	}

	for _, addr := range []string{"169.254.1.1:80", "[fe80::1]:80", "100.100.100.200:80", "[::ffff:169.254.169.254]:80"} {
		_, err := cb.dialContext(context.Background(), "tcp", addr)
		if !isAddressRefused(err) {
			t.Errorf("dialContext(%s) = %v, want refused", addr, err)
		}
	}
	if d := f.dials(); len(d) != 2 {
		t.Errorf("dialled %q: a refused literal reached the dialer", d)
	}
}

// The refusal reaches the log with the URL cut to scheme, host and path.
func TestCallbackDialRefusalError(t *testing.T) {
	cb, _ := newTestCallbacks(t, CallbackSettings{AllowedHosts: []string{"hooks.example.com"}})
	(&fakeNet{names: map[string][]string{"hooks.example.com": {"169.254.169.254"}}}).install(cb)
	u, _ := url.Parse("http://hooks.example.com/cb?token=SECRETQ")
	r := cb.attempt(u, []byte("{}"), "inv", nil)
	if !isAddressRefused(r.err) || r.retryable() || strings.Contains(r.err.Error(), "SECRETQ") {
		t.Errorf("attempt = %+v", r)
	}
}

func TestCallbackRefusedAddrRanges(t *testing.T) {
	for s, want := range map[string]bool{
		"169.254.0.1": true, "169.254.255.255": true, "169.254.169.254": true,
		"169.253.255.255": false, "169.255.0.0": false,
		"fe80::1": true, "febf:ffff::1": true, "fe80::1%eth0": true, "fec0::1": false,
		"fd00:ec2::254": true, "fd00:ec2::253": false,
		"100.100.100.200": true, "100.100.100.201": false, "168.63.129.16": true,
		"::ffff:169.254.169.254": true, "64:ff9b::a9fe:a9fe": true, "64:ff9b::a00:1": false,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false,
		"192.168.1.1": false, "fd12::1": false, "8.8.8.8": false,
	} {
		if got := refusedAddr(netip.MustParseAddr(s)) != ""; got != want {
			t.Errorf("refusedAddr(%s) refuses = %v, want %v", s, got, want)
		}
	}
}
