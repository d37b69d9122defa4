package harness

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
)

// wireProxy is a TCP proxy in front of Redis or PostgreSQL that counts
// what its clients ask: Redis commands (by name) or PostgreSQL statements
// (simple queries and extended-protocol executes) and round trips (simple
// queries and Syncs). One child connects through it, so its counts are
// that child's alone, unlike the servers' own counters (INFO commandstats,
// pg_stat_database), which count every client.
type wireProxy struct {
	ln     net.Listener
	Port   int
	target string
	parse  func(r *bufio.Reader, count func(string)) error

	mu     sync.Mutex
	counts map[string]int64
	conns  []net.Conn
}

func startWireProxy(target string, parse func(r *bufio.Reader, count func(string)) error) (*wireProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &wireProxy{ln: ln, Port: ln.Addr().(*net.TCPAddr).Port, target: target, parse: parse, counts: map[string]int64{}}
	go p.serve()
	return p, nil
}

func (p *wireProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *wireProxy) handle(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, s)
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(c, s)
		c.Close()
	}()
	// Everything read from the client is written to the server as it is
	// read; the parser only looks at it.
	r := bufio.NewReaderSize(io.TeeReader(c, s), 64<<10)
	err = p.parse(r, p.count)
	if err != nil {
		// Not understood (or closed): keep forwarding without counting.
		_, _ = io.Copy(io.Discard, r)
	}
	s.Close()
	c.Close()
}

func (p *wireProxy) count(name string) {
	p.mu.Lock()
	p.counts[name]++
	p.mu.Unlock()
}

// snapshot returns the counts so far.
func (p *wireProxy) snapshot() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.counts)
}

func (p *wireProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// countDelta returns b - a per key (keys with no change left out).
func countDelta(a, b map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, v := range b {
		if n := v - a[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}

func sumCounts(m map[string]int64) int64 {
	var t int64
	for _, v := range m {
		t += v
	}
	return t
}

// parseRESP reads RESP requests (arrays of bulk strings, or inline
// commands) and counts each by its command name, upper-cased.
func parseRESP(r *bufio.Reader, count func(string)) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			continue
		}
		if line[0] != '*' {
			f := strings.Fields(string(line))
			if len(f) > 0 {
				count(strings.ToUpper(f[0]))
			}
			continue
		}
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil {
			return err
		}
		name := ""
		for i := range n {
			hdr, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			hdr = bytes.TrimRight(hdr, "\r\n")
			if len(hdr) == 0 || hdr[0] != '$' {
				return errors.New("resp: bulk string expected")
			}
			size, err := strconv.Atoi(string(hdr[1:]))
			if err != nil {
				return err
			}
			if i == 0 {
				b := make([]byte, size+2)
				if _, err := io.ReadFull(r, b); err != nil {
					return err
				}
				name = strings.ToUpper(string(b[:size]))
				continue
			}
			if _, err := r.Discard(size + 2); err != nil {
				return err
			}
		}
		count(name)
	}
}

// Keys parsePG counts.
const (
	pgQuery   = "Query"   // simple-protocol query ('Q'): a statement and a round trip
	pgExecute = "Execute" // extended-protocol execute ('E'): a statement
	pgSync    = "Sync"    // extended-protocol sync ('S'): the end of a round trip
)

// parsePG reads the PostgreSQL frontend protocol: the untyped startup
// message (again after an SSL or GSS request is refused), then typed
// messages; it counts simple queries, executes and syncs.
func parsePG(r *bufio.Reader, count func(string)) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:8]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		code := binary.BigEndian.Uint32(hdr[4:8])
		if n < 8 {
			return errors.New("pg: bad startup length")
		}
		if _, err := r.Discard(n - 8); err != nil {
			return err
		}
		if code == 80877103 || code == 80877104 { // SSLRequest, GSSENCRequest
			continue
		}
		if code == 80877102 { // CancelRequest
			return io.EOF
		}
		break
	}
	for {
		if _, err := io.ReadFull(r, hdr[:5]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:5]))
		if n < 4 {
			return errors.New("pg: bad message length")
		}
		switch hdr[0] {
		case 'Q':
			count(pgQuery)
		case 'E':
			count(pgExecute)
		case 'S':
			count(pgSync)
		}
		if _, err := r.Discard(n - 4); err != nil {
			return err
		}
	}
}
