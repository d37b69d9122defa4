package harness

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// countingProxy is a tiny reverse proxy in front of Azurite that records
// when each queue was asked something: what an idle queue costs in requests.
type countingProxy struct {
	srv  *http.Server
	ln   net.Listener
	Port int

	mu    sync.Mutex
	times map[string][]time.Time // queue -> request times
}

func startProxy(target string) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, Port: ln.Addr().(*net.TCPAddr).Port, times: map[string][]time.Time{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /devstoreaccount1/<queue>/messages...
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
		if len(parts) >= 2 {
			p.mu.Lock()
			p.times[parts[1]] = append(p.times[parts[1]], time.Now())
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

// count returns how many requests queue got in [from, to).
func (p *countingProxy) count(queue string, from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.times[queue] {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// gaps returns the intervals between queue's requests in [from, to).
func (p *countingProxy) gaps(queue string, from, to time.Time) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	var prev time.Time
	for _, t := range p.times[queue] {
		if t.Before(from) || !t.Before(to) {
			continue
		}
		if !prev.IsZero() {
			out = append(out, t.Sub(prev))
		}
		prev = t
	}
	return out
}

func (p *countingProxy) close() { p.srv.Close() }
