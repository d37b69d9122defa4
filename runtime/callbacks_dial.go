package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// metadataAddrs are cloud instance metadata (and platform) endpoints.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, Azure IMDS, GCP (metadata.google.internal), OCI, ...
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("168.63.129.16"),   // Azure WireServer
}

// nat64 is the well-known NAT64 prefix, which embeds an IPv4 address.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// refusedAddr says why callbacks never dial a, unless the URL names a
// literally and the allowlist holds it; "" if they may.
func refusedAddr(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case slices.Contains(metadataAddrs, a):
		return "a cloud metadata address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	}
	return ""
}

// addressRefusedError is a dial refused by the address rules. It is not
// retried.
type addressRefusedError struct{ msg string }

func (e *addressRefusedError) Error() string { return e.msg }

func isAddressRefused(err error) bool {
	var r *addressRefusedError
	return errors.As(err, &r)
}

// dialContext is the callback transport's dialer. It resolves the host
// itself, refuses it if any address is link-local or a metadata address (an
// IP literal in the URL is let through when the allowlist names it), and
// connects only to the addresses it checked, so a second lookup cannot
// change them.
func (cb *callbacks) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := cb.vetAddrs(ctx, network, host)
	if err != nil {
		return nil, err
	}
	var first error
	for _, a := range addrs {
		c, err := cb.dial(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// vetAddrs returns the addresses host may be dialled at, or why none.
func (cb *callbacks) vetAddrs(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if why := refusedAddr(a); why != "" && !cb.literalIPs[a] {
			return nil, &addressRefusedError{fmt.Sprintf("address %s is %s, refused: it is not in jobhost.callbacks.allowedHosts", a, why)}
		}
		return []netip.Addr{a}, nil
	}
	ipNet := "ip"
	switch network {
	case "tcp4":
		ipNet = "ip4"
	case "tcp6":
		ipNet = "ip6"
	}
	addrs, err := cb.resolve(ctx, ipNet, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	for _, a := range addrs {
		if why := refusedAddr(a); why != "" {
			return nil, &addressRefusedError{fmt.Sprintf("host %s resolves to %s, %s: refused (such an address is reached only by a URL naming it, with the address in jobhost.callbacks.allowedHosts)", host, a, why)}
		}
	}
	return addrs, nil
}
