package runtime

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap"
)

func TestCallbackAllowlist(t *testing.T) {
	tests := []struct {
		allowed []string
		url     string
		ok      bool
	}{
		// host
		{[]string{"example.com"}, "https://example.com/cb", true},
		{[]string{"example.com"}, "http://example.com/cb?x=1", true},
		{[]string{"example.com"}, "https://example.org/cb", false},
		{[]string{"example.com"}, "https://example.com.evil.com/cb", false},
		{[]string{"example.com"}, "https://evilexample.com/cb", false},
		{[]string{"example.com"}, "https://a.example.com/cb", false},
		// case
		{[]string{"example.com"}, "https://EXAMPLE.Com/cb", true},
		{[]string{"Example.COM"}, "https://example.com/cb", true},
		// an entry without a port matches any port
		{[]string{"example.com"}, "https://example.com:8443/cb", true},
		// host:port, against the URL's port or the scheme's default
		{[]string{"example.com:8443"}, "https://example.com:8443/cb", true},
		{[]string{"example.com:8443"}, "https://example.com:9443/cb", false},
		{[]string{"example.com:8443"}, "https://example.com/cb", false},
		{[]string{"example.com:443"}, "https://example.com/cb", true},
		{[]string{"example.com:80"}, "http://example.com/cb", true},
		{[]string{"example.com:80"}, "https://example.com/cb", false},
		// wildcard: subdomains, not the domain itself
		{[]string{"*.example.com"}, "https://hooks.example.com/cb", true},
		{[]string{"*.example.com"}, "https://a.b.example.com/cb", true},
		{[]string{"*.example.com"}, "https://HOOKS.Example.com/cb", true},
		{[]string{"*.example.com"}, "https://example.com/cb", false},
		{[]string{"*.example.com"}, "https://badexample.com/cb", false},
		{[]string{"*.example.com"}, "https://example.com.evil.com/cb", false},
		{[]string{"*.example.com:8443"}, "https://a.example.com:8443/cb", true},
		{[]string{"*.example.com:8443"}, "https://a.example.com/cb", false},
		// userinfo tricks: the host dialed is what is compared, and userinfo is refused
		{[]string{"example.com"}, "http://example.com@evil.com/cb", false},
		{[]string{"example.com"}, "http://user:pw@example.com/cb", false},
		{[]string{"example.com"}, "http://@example.com/cb", false},
		{[]string{"example.com"}, "http://evil.com#@example.com/cb", false},
		{[]string{"example.com"}, "http://evil.com?@example.com/cb", false},
		{[]string{"example.com"}, `http://evil.com\@example.com/cb`, false},
		{[]string{"example.com"}, "http://example.com%2f@evil.com/cb", false},
		// non-http schemes
		{[]string{"example.com"}, "ftp://example.com/cb", false},
		{[]string{"example.com"}, "gopher://example.com/cb", false},
		{[]string{"example.com"}, "file:///etc/passwd", false},
		{[]string{"example.com"}, "javascript:alert(1)", false},
		{[]string{"example.com"}, "http:example.com", false},
		{[]string{"example.com"}, "//example.com/cb", false},
		{[]string{"example.com"}, "http:///cb", false},
		{[]string{"example.com"}, "", false},
		// empty allowlist refuses everything
		{nil, "https://example.com/cb", false},
		{nil, "http://127.0.0.1/cb", false},
		// non-canonical hosts
		{[]string{"example.com"}, "http://example.com./cb", false},
		{[]string{"example.com"}, "http://%65xample.com/cb", false},
		{[]string{"example.com"}, "http://example.com:/cb", false},
		{[]string{"example.com:80"}, "http://example.com:0080/cb", false},
		{[]string{"example.com"}, "http://example.com:99999/cb", false},
		{[]string{"example.com"}, "http://exa_mple.com/cb", false},
		{[]string{"*.example.com"}, "http://ex%C3%A4mple.example.com/cb", false},
		// IP addresses
		{[]string{"127.0.0.1"}, "http://127.0.0.1:8080/cb", true},
		{[]string{"127.0.0.1:8080"}, "http://127.0.0.1:8080/cb", true},
		{[]string{"127.0.0.1:8080"}, "http://127.0.0.1:8081/cb", false},
		{[]string{"127.0.0.1"}, "http://127.1/cb", false},
		{[]string{"127.0.0.1"}, "http://2130706433/cb", false},
		{[]string{"127.0.0.1"}, "http://0x7f.0.0.1/cb", false},
		{[]string{"127.0.0.1"}, "http://0x7f000001/cb", false},
		{[]string{"127.0.0.1"}, "http://0177.0.0.1/cb", false},
		{[]string{"127.0.0.1"}, "http://[127.0.0.1]/cb", false},
		{[]string{"::1"}, "http://[::1]:8080/cb", true},
		{[]string{"[::1]"}, "http://[::1]/cb", true},
		{[]string{"[::1]:8080"}, "http://[::1]:8080/cb", true},
		{[]string{"[::1]:8080"}, "http://[::1]:9090/cb", false},
		{[]string{"::1"}, "http://[0:0:0:0:0:0:0:1]/cb", true},
		{[]string{"::1"}, "http://[::1%25lo]/cb", false},
		{[]string{"::1"}, "http://[::2]/cb", false},
		// entries that are not host names are ignored
		{[]string{"http://example.com"}, "http://example.com/cb", false},
		{[]string{"example.com/path"}, "http://example.com/cb", false},
		{[]string{"*"}, "http://example.com/cb", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v %s", tt.allowed, tt.url), func(t *testing.T) {
			cb := newCallbacks(CallbackSettings{AllowedHosts: tt.allowed}, zap.NewNop())
			defer cb.Close(context.Background())
			err := cb.CheckURL(tt.url)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckURL(%q) with allowedHosts %q = %v, want ok=%v", tt.url, tt.allowed, err, tt.ok)
			}
		})
	}
}

func TestCallbackSafeURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@hooks.example.com/a/b?token=x#f": "https://hooks.example.com/a/b",
		"http://hooks.example.com:8080/cb":            "http://hooks.example.com:8080/cb",
		"http://[::1]:80/cb?x":                        "http://[::1]:80/cb",
		"http://u:p@host:99999999/cb?token=x":         "http://host:99999999/cb",
		"http://u:p@host:99999999?token=x":            "http://host:99999999",
		"http://%zz@host/cb?x":                        "http://host/cb",
		"not a url?token=x":                           "not%20a%20url",
	} {
		if got := safeURL(in); got != want {
			t.Errorf("safeURL(%q) = %q, want %q", in, got, want)
		}
	}
}
