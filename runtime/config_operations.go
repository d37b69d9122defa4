package runtime

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jobhost/jobhost/operations"
)

// HTTPSettings are jobhost.http: the host's HTTP listener, which serves the
// operations API.
type HTTPSettings struct {
	// Listen is the address to listen on ("127.0.0.1:7071", ":7071");
	// empty: no listener (the default).
	Listen string
	// BaseURL is the listener's public URL, for the status links in
	// operation callbacks (default http://<listen>).
	BaseURL string
}

// DefaultHTTPPort is the local port Azure Functions Core Tools uses.
const DefaultHTTPPort = 7071

// OperationsSettings are jobhost.operations: where background operation
// records are kept.
type OperationsSettings struct {
	// Store is the store kind: "table" (Azure Table Storage), "postgres" or
	// "memory". Empty: "table" on the Storage connection when a function
	// reads a Storage Queue, else no store until one is configured.
	Store string
	// Connection names the app setting with the store's connection string
	// or URL (default: AzureWebJobsStorage for table, JOBHOST_POSTGRES_URL
	// for postgres).
	Connection string
	// Table names the table (default jobhostoperations / jobhost_operations).
	Table string
	// TimeToLive is how long a record is kept (default 90 days).
	TimeToLive time.Duration
	// PurgeInterval is how often expired records are swept (default 1 h).
	PurgeInterval time.Duration
}

// DefaultPurgeInterval is how often the host sweeps expired records.
const DefaultPurgeInterval = time.Hour

func (d *decoder) httpSection(cfg *Config, v any) {
	m, ok := d.section("jobhost.http", "jobhost.http", v)
	if !ok {
		return
	}
	for k, fv := range m {
		key := "jobhost.http." + k
		switch k {
		case "listen":
			s, ok := fv.(string)
			if !ok {
				d.problem(key, "jobhost.http.listen", fmt.Sprintf(`must be an address such as "127.0.0.1:%d", got %s`, DefaultHTTPPort, show(fv)))
				continue
			}
			addr, err := listenAddress(s)
			if err != nil {
				d.problem(key, "jobhost.http.listen", err.Error())
				continue
			}
			cfg.HTTP.Listen = addr
		case "baseurl":
			s, ok := fv.(string)
			u, err := url.Parse(s)
			if !ok || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				d.problem(key, "jobhost.http.baseUrl", fmt.Sprintf(`must be an http(s) URL such as "https://jobs.example.com", got %s`, show(fv)))
				continue
			}
			cfg.HTTP.BaseURL = strings.TrimSuffix(s, "/")
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

// listenAddress checks a listen address; a bare port means loopback.
func listenAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !strings.Contains(s, ":") {
		s = "127.0.0.1:" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf(`must be host:port such as "127.0.0.1:%d", got %q`, DefaultHTTPPort, s)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return "", fmt.Errorf("has no valid port in %q", s)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return "", fmt.Errorf("must name an IP address or localhost, got %q", host)
	}
	return s, nil
}

func (d *decoder) operationsSection(cfg *Config, v any) {
	m, ok := d.section("jobhost.operations", "jobhost.operations", v)
	if !ok {
		return
	}
	o := &cfg.Operations
	for k, fv := range m {
		key := "jobhost.operations." + k
		str := func(canon string) (string, bool) {
			s, ok := fv.(string)
			if !ok {
				d.problem(key, canon, fmt.Sprintf("must be a string, got %s", show(fv)))
			}
			return s, ok
		}
		switch k {
		case "store":
			if s, ok := str("jobhost.operations.store"); ok {
				switch s = strings.ToLower(s); s {
				case "table", "postgres", "memory":
					o.Store = s
				default:
					d.problem(key, "jobhost.operations.store", fmt.Sprintf(`must be "table", "postgres" or "memory", got %s`, show(fv)))
				}
			}
		case "connection":
			if s, ok := str("jobhost.operations.connection"); ok {
				o.Connection = s
			}
		case "table":
			if s, ok := str("jobhost.operations.table"); ok {
				o.Table = s
			}
		case "timetolive":
			if t, ok := d.duration(key, "jobhost.operations.timeToLive", fv, time.Minute, 10*365*24*time.Hour); ok {
				o.TimeToLive = t
			}
		case "purgeinterval":
			if t, ok := d.duration(key, "jobhost.operations.purgeInterval", fv, time.Second, 7*24*time.Hour); ok {
				o.PurgeInterval = t
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

// operationsDefaults fills the operations settings host.json left unset.
func operationsDefaults() OperationsSettings {
	return OperationsSettings{TimeToLive: operations.DefaultTimeToLive, PurgeInterval: DefaultPurgeInterval}
}
