package client

import (
	"errors"
	"net/url"
	"strings"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/internal/redact"
	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// Target is a destination checked and normalised: a Storage Queue (its
// name lower-cased and valid) or a URL whose scheme a linked driver
// registered (rabbit://orders, azuresb://…, memqueue://…). The zero Target
// is not usable.
type Target struct {
	name       string   // the lower-cased queue name, or the URL as given
	u          *url.URL // nil for a Storage Queue
	connection string   // the effective connection name
}

// ParseTarget checks name, a Storage Queue name or a URL with no %Setting%
// left in it, and returns its Target. connection names the connection;
// "" is the default: "Storage" (AzureWebJobsStorage) for a Storage Queue,
// the driver's usual setting for a URL. A Storage Queue name is
// lower-cased; a URL's scheme must be registered (the error names the
// import that provides it).
func ParseTarget(name, connection string) (Target, error) {
	if strings.Contains(name, "://") {
		u, err := url.Parse(name)
		if err != nil {
			return Target{}, errors.New("not a valid URL") // url's error quotes it, secrets and all
		}
		if _, err := triggers.Lookup(u.Scheme); err != nil {
			return Target{}, err
		}
		return Target{name: name, u: u, connection: connection}, nil
	}
	q := strings.ToLower(name)
	if err := azurequeue.ValidateQueueName(q); err != nil {
		return Target{}, err
	}
	if connection == "" {
		connection = azurequeue.DefaultConnection
	}
	return Target{name: q, connection: connection}, nil
}

// Target resolves expr as the host resolves a queue or output name: its
// %Setting% expressions expanded from the client's app settings, then
// checked as ParseTarget does.
func (c *Client) Target(expr, connection string) (Target, error) {
	name, err := bindings.ExpandSettings(expr, c.lookup)
	if err != nil {
		return Target{}, err
	}
	return ParseTarget(name, connection)
}

// Name returns the Storage Queue name (lower-cased) or the URL.
func (t Target) Name() string { return t.name }

// Connection returns the connection name: for a Storage Queue "Storage"
// unless another was given; for a URL "" means the driver's usual setting.
func (t Target) Connection() string { return t.connection }

// IsStorage reports whether t is a Storage Queue.
func (t Target) IsStorage() bool { return t.u == nil && t.name != "" }

// URL returns a copy of the URL, or nil for a Storage Queue.
func (t Target) URL() *url.URL {
	if t.u == nil {
		return nil
	}
	c := *t.u
	return &c
}

// String returns t for display: a Storage Queue's name, or the URL without
// credentials or query (which may hold secrets).
func (t Target) String() string {
	if t.u != nil {
		return redact.DisplayURL(t.u)
	}
	return t.name
}

// key identifies t's publisher.
func (t Target) key() string { return t.connection + "|" + t.name }
