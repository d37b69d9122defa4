// Package tcpproxy is a TCP proxy for tests that cut a broker's link: it
// forwards connections from 127.0.0.1:<random> to a target, and can close
// every proxied connection and refuse new ones, as a broker that is down,
// until it is restored on the same port.
package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proxy forwards TCP connections from 127.0.0.1:<random> to a target, and
// can cut the link: close every proxied connection and refuse new ones (the
// listener is closed, so dials get "connection refused", as from a broker
// that is down) until it is restored on the same port.
type Proxy struct {
	target string
	addr   string // where clients connect

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// New starts a proxy to target, stopped when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by cut
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

// track registers c, or reports false (and closes c) when the link is cut.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) forward(client net.Conn) {
	if !p.track(client) {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(server) {
		client.Close()
		return
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			server.Close()
			p.mu.Lock()
			delete(p.conns, client)
			delete(p.conns, server)
			p.mu.Unlock()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(server, client); closeBoth() })
	wg.Go(func() { _, _ = io.Copy(client, server); closeBoth() })
	wg.Wait()
}

// Addr is where clients connect (host:port).
func (p *Proxy) Addr() string { return p.addr }

// Cut closes the listener and every proxied connection.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Restore listens on the same address again.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("proxy: listen on %s again: %v", p.addr, err)
		}
		time.Sleep(100 * time.Millisecond) // the port is briefly busy: not synchronisation
	}
}
