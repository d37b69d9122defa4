package runtime

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// hostPattern is one allowedHosts entry.
type hostPattern struct {
	host     string // lower-case name or canonical IP; for a wildcard the suffix with its dot (".example.com")
	wildcard bool
	port     int // 0: any port
}

// CheckURL reports why rawURL may not receive callbacks, or nil if it may.
// The host uses it at start for static callback URLs. The error never
// contains the URL's query or userinfo.
func (cb *callbacks) CheckURL(rawURL string) error {
	_, err := cb.check(rawURL)
	return err
}

// check parses rawURL and applies the rules: http or https, no userinfo, a
// canonical host (the one the transport will dial) in the allowlist.
func (cb *callbacks) check(rawURL string) (*url.URL, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("no callback URL")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse's error quotes the whole URL: do not pass it on.
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not allowed: only http and https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, errors.New("the URL has no host")
	}
	if u.User != nil {
		return nil, errors.New("the URL carries userinfo (user@ or user:password@), which is not allowed")
	}
	host, port, err := canonicalURLHost(u)
	if err != nil {
		return nil, err
	}
	if port == 0 {
		port = 80
		if u.Scheme == "https" {
			port = 443
		}
	}
	for _, p := range cb.allowed {
		if p.matches(host, port) {
			return u, nil
		}
	}
	if len(cb.allowed) == 0 {
		return nil, fmt.Errorf("host %s is not allowed: jobhost.callbacks.allowedHosts is empty", u.Host)
	}
	return nil, fmt.Errorf("host %s is not in jobhost.callbacks.allowedHosts", u.Host)
}

func (p hostPattern) matches(host string, port int) bool {
	if p.port != 0 && p.port != port {
		return false
	}
	if p.wildcard {
		return len(host) > len(p.host) && strings.HasSuffix(host, p.host)
	}
	return host == p.host
}

// canonicalURLHost returns u's host, lower-cased (an IP in its canonical
// form), and its port (0 if none). It refuses hosts the dialer might read
// differently from the allowlist: percent-escapes, non-ASCII, trailing dots,
// numeric forms that are not a plain IP address (0x7f.1, 2130706433),
// bracketed IPv4, IPv6 zones, empty or non-canonical ports.
func canonicalURLHost(u *url.URL) (string, int, error) {
	name := u.Hostname()
	bracketed := strings.HasPrefix(u.Host, "[")
	var port int
	if i := strings.LastIndexByte(u.Host, ':'); i >= 0 && i > strings.LastIndexByte(u.Host, ']') {
		ps := u.Host[i+1:]
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != ps {
			return "", 0, fmt.Errorf("port %q is not valid", ps)
		}
		port = n
	}
	if bracketed {
		a, err := netip.ParseAddr(name)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, errors.New("the host is not a valid IPv6 address (zones are not allowed)")
		}
		return a.String(), port, nil
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if !a.Is4() {
			return "", 0, errors.New("an IPv6 host must be in brackets")
		}
		return a.String(), port, nil
	}
	if err := checkDNSName(name); err != nil {
		return "", 0, err
	}
	return strings.ToLower(name), port, nil
}

// checkDNSName accepts ASCII host names: dot-separated labels of letters,
// digits and inner hyphens, whose last label is not numeric (a numeric one
// makes it an IPv4 address in some resolvers).
func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("the host name is empty or too long")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("the host is not a canonical host name (empty label, trailing dot or misplaced hyphen)")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return errors.New("the host is not a canonical host name (only ASCII letters, digits, '-' and '.'; use punycode for international names)")
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return errors.New("the host looks numeric but is not a plain IPv4 address")
	}
	return nil
}

// numericLabel reports a label read as a number by IPv4 parsers: decimal,
// or hexadecimal with 0x.
func numericLabel(l string) bool {
	l = strings.ToLower(l)
	digits := "0123456789"
	if strings.HasPrefix(l, "0x") {
		l, digits = l[2:], "0123456789abcdef"
		if l == "" {
			return true
		}
	}
	for i := 0; i < len(l); i++ {
		if !strings.ContainsRune(digits, rune(l[i])) {
			return false
		}
	}
	return true
}

// parseHostPattern reads an allowedHosts entry: name, *.name, IPv4, IPv6
// (bare or bracketed), each optionally with :port when unambiguous.
func parseHostPattern(e string) (hostPattern, error) {
	e = strings.ToLower(strings.TrimSpace(e))
	if e == "" {
		return hostPattern{}, errors.New("empty entry")
	}
	if a, err := netip.ParseAddr(e); err == nil && a.Is6() { // bare IPv6: no port
		if a.Zone() != "" {
			return hostPattern{}, errors.New("IPv6 zones are not allowed")
		}
		return hostPattern{host: a.String()}, nil
	}
	host, portStr := e, ""
	if strings.HasPrefix(e, "[") {
		end := strings.IndexByte(e, ']')
		if end < 0 {
			return hostPattern{}, errors.New("missing ']'")
		}
		host, portStr = e[1:end], e[end+1:]
		if portStr != "" && portStr[0] != ':' {
			return hostPattern{}, errors.New("unexpected text after ']'")
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return hostPattern{}, errors.New("not an IPv6 address in brackets")
		}
		host = a.String()
	} else if i := strings.LastIndexByte(e, ':'); i >= 0 {
		host, portStr = e[:i], e[i:]
	}
	var p hostPattern
	if portStr != "" {
		ps := portStr[1:]
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != ps {
			return hostPattern{}, fmt.Errorf("port %q is not valid", ps)
		}
		p.port = n
	}
	switch {
	case strings.HasPrefix(e, "["):
		p.host = host
	case strings.HasPrefix(host, "*."):
		if err := checkDNSName(host[2:]); err != nil {
			return hostPattern{}, err
		}
		p.host, p.wildcard = host[1:], true
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.Is4() {
				return hostPattern{}, errors.New("an IPv6 address with a port must be in brackets")
			}
			p.host = a.String()
		} else if err := checkDNSName(host); err != nil {
			return hostPattern{}, err
		} else {
			p.host = host
		}
	}
	return p, nil
}

// safeURL returns rawURL fit for a log line: scheme, host and path, without
// userinfo, query or fragment (which may carry tokens).
func safeURL(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Opaque == "" {
		s := ""
		if u.Scheme != "" {
			s = u.Scheme + "://"
		}
		return s + u.Host + u.EscapedPath()
	}
	// Unparseable: cut at the query or fragment, then drop anything up to an
	// '@' in the authority.
	s := rawURL
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	rest, prefix := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/\\"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	return prefix + authority + path
}
