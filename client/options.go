package client

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// Options configure a Client. Zero fields take defaults; a program that
// links the host builds them with runtime.ClientOptions, so it sends
// exactly as the host's functions and the CLI do.
type Options struct {
	// Lookup reads app settings: %Setting% expressions, connection strings
	// and server URLs (default os.LookupEnv).
	Lookup func(name string) (string, bool)
	// StorageEncoding says how messages for a Storage Queue are encoded;
	// nil: as the function in Functions reading the queue decodes them,
	// else base64 (Azure Functions' default).
	StorageEncoding func(connection, queue string) bindings.Encoding
	// URLEncoding is how messages for a URL nobody in Functions reads are
	// encoded; "" is none, the default of host.json's
	// extensions.pubsub.messageEncoding.
	URLEncoding bindings.Encoding
	// Functions are the functions a caller may address by name (SendTo,
	// Enqueue) and submit operations to.
	Functions []Function
	// Store keeps operation records; nil leaves the operations calls
	// failing with ErrNoStore.
	Store operations.Store
	// OnSent is called after each message sent, with the target's
	// connection and name (an in-process host wakes its listener).
	OnSent func(connection, queue string)
	// OnCancel is called when Cancel leaves an operation Canceling (an
	// in-process host cancels the running function at once).
	OnCancel func(id string)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TimeToLive is how long a submitted operation's record is kept (0:
	// the store's default); a Submission's own wins.
	TimeToLive time.Duration
	// StorageClient returns the Storage Queue service client of a
	// connection (default: azurequeue.NewServiceClient with Lookup, one per
	// connection).
	StorageClient func(connection string) (*azqueue.ServiceClient, error)
	// TraceStorageQueueBody puts the trace context of a message sent to a
	// Storage Queue (which has no properties) in its JSON body's $jobhost
	// envelope, where a jobhost host reads it and strips it before binding
	// (host.json jobhost.tracing.storageQueueBody). Off by default: another
	// consumer would see the envelope. A payload that is not JSON, or that
	// the envelope would take over the 64 KiB limit, goes without it. Only
	// while tracing is on (package tracing).
	TraceStorageQueueBody bool
}

// Function is a function the client can address by name.
type Function struct {
	// Name is the function's name (unique, case-insensitive).
	Name string
	// Queue is its trigger's Storage Queue name or subscription URL, as
	// registered: %Setting% expressions are expanded by New.
	Queue string
	// Connection names the trigger's connection ("" the default).
	Connection string
	// Encoding is the function's messageEncoding; nil: the client's rule
	// for the queue (Options.StorageEncoding, URLEncoding).
	Encoding *bindings.Encoding
	// Validate checks an input binds to the function's argument
	// (functions.Definition.Validate); nil accepts any.
	Validate func(payload []byte) error
}

// Client sends messages to queues and trigger URLs, and submits background
// operations. It is safe for concurrent use; Close it when done.
type Client struct {
	opts   Options
	lookup func(string) (string, bool)
	funcs  map[string]*function // by lower-case name
	names  []string
	pubs   *publishers

	svcMu sync.Mutex
	svcs  map[string]*azqueue.ServiceClient

	closed atomic.Bool
}

// function is a Function with its queue resolved (or why it cannot be).
type function struct {
	Function
	target Target
	err    error
}

// New returns a client. It checks the functions' names (non-empty,
// unique) and resolves their queues; a queue that does not resolve (an
// unset setting, a driver not linked) fails only the calls that address
// that function.
func New(o Options) (*Client, error) {
	c := &Client{opts: o, lookup: o.Lookup, funcs: map[string]*function{}, svcs: map[string]*azqueue.ServiceClient{}}
	if c.lookup == nil {
		c.lookup = os.LookupEnv
	}
	var errs []error
	for _, f := range o.Functions {
		key := strings.ToLower(f.Name)
		switch {
		case strings.TrimSpace(f.Name) == "":
			errs = append(errs, errors.New("client: a function has an empty name"))
			continue
		case c.funcs[key] != nil:
			errs = append(errs, fmt.Errorf("client: function %s is listed more than once (names are case-insensitive)", f.Name))
			continue
		}
		fn := &function{Function: f}
		if fn.target, fn.err = c.Target(f.Queue, f.Connection); fn.err != nil {
			fn.err = fmt.Errorf("function %s: queue: %w", f.Name, fn.err)
		}
		c.funcs[key] = fn
		c.names = append(c.names, f.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(c.names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	c.pubs = newPublishers(c)
	return c, nil
}

// Functions lists the functions the client can address and submit to,
// sorted by name.
func (c *Client) Functions() []string { return slices.Clone(c.names) }

// Close closes every publisher the client opened; sends after it fail
// with ErrClosed. It does not close the Store. It is idempotent.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return c.pubs.close()
}

// function returns the function named name.
func (c *Client) function(name string) (*function, error) {
	f := c.funcs[strings.ToLower(name)]
	if f == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownFunction, name)
	}
	if f.err != nil {
		return nil, f.err
	}
	return f, nil
}

// now returns the client's time.
func (c *Client) now() time.Time {
	if c.opts.Now != nil {
		return c.opts.Now()
	}
	return time.Now()
}

// storageClient returns the service client of a Storage connection.
func (c *Client) storageClient(connection string) (*azqueue.ServiceClient, error) {
	if c.opts.StorageClient != nil {
		return c.opts.StorageClient(connection)
	}
	c.svcMu.Lock()
	defer c.svcMu.Unlock()
	if s, ok := c.svcs[connection]; ok {
		return s, nil
	}
	s, err := azurequeue.NewServiceClient(connection, c.lookup)
	if err != nil {
		return nil, err
	}
	c.svcs[connection] = s
	return s, nil
}

// encodingFor returns how a message for t is encoded: as the function
// reading t decodes it, else by the client's rule.
func (c *Client) encodingFor(t Target) bindings.Encoding {
	if t.IsStorage() && c.opts.StorageEncoding != nil {
		return c.opts.StorageEncoding(t.connection, t.name)
	}
	for _, n := range c.names { // in order: the first function reading t decides
		f := c.funcs[strings.ToLower(n)]
		if f.err == nil && f.Encoding != nil && f.target.name == t.name && (!t.IsStorage() || f.target.connection == t.connection) {
			return *f.Encoding
		}
	}
	if t.IsStorage() {
		return bindings.Base64
	}
	if c.opts.URLEncoding != "" {
		return c.opts.URLEncoding
	}
	return bindings.None
}
