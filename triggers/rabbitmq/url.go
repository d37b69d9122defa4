package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/jobhost/jobhost/triggers"
)

// parseServerURL checks an AMQP URL. Its errors never quote the URL.
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password and all
		}
		return nil, fmt.Errorf("rabbitmq: invalid server URL: %s", redact(err.Error()))
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return nil, fmt.Errorf("rabbitmq: invalid server URL %s: the scheme must be amqp or amqps", redact(u.Redacted()))
	}
	if _, err := amqp.ParseURI(u.String()); err != nil {
		pw, _ := u.User.Password()
		return nil, fmt.Errorf("rabbitmq: invalid server URL %s: %s", redact(u.Redacted()), redact(err.Error(), pw))
	}
	return u, nil
}

// OpenURL opens a driver for
// rabbit://<queue>[?poison=<queue>&deadletter=native&ack_delay=<duration>].
// It matches triggers.OpenURLFunc. The queue is the URL's host and path;
// ack_delay is Options.AckDelay as a Go duration ("5ms"; "0" sends every
// Complete's ack at once, without coalescing). The
// server URL is the value of app setting o.Connection when set, else of
// RABBIT_SERVER_URL, both read through o.Lookup (the environment when nil).
// o.PoisonName overrides the poison query parameter.
func OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	return openURL(ctx, u, o)
}

// openURL is OpenURL returning the *Driver. The driver does not connect
// until used, so OpenPublisherURL and OpenPoisonURL use it to check the URL
// and the server URL setting.
func openURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (*Driver, error) {
	if u == nil {
		return nil, errors.New("rabbitmq: nil URL")
	}
	if u.Scheme != Scheme {
		return nil, fmt.Errorf("rabbitmq: URL scheme %q, want %q", u.Scheme, Scheme)
	}
	queue := strings.TrimPrefix(path.Join(u.Host, u.Path), "/")
	if queue == "" || queue == "." {
		return nil, fmt.Errorf("rabbitmq: URL %s names no queue (want rabbit://<queue>)", redact(u.Redacted()))
	}
	opts := Options{Prefetch: o.Prefetch, CreateIfMissing: o.CreateIfMissing}
	var unknown []string
	for k, vs := range u.Query() {
		v := ""
		if len(vs) > 0 {
			v = vs[len(vs)-1]
		}
		switch k {
		case "poison":
			if v == "" {
				return nil, fmt.Errorf("rabbitmq: URL %s: empty poison queue name", redact(u.Redacted()))
			}
			opts.PoisonQueue = v
		case "deadletter":
			if v != "native" {
				return nil, fmt.Errorf("rabbitmq: URL %s: deadletter=%q, want deadletter=native (or no parameter, for a poison queue)", redact(u.Redacted()), v)
			}
			opts.NativeDeadLetter = true
		case "ack_delay":
			dl, err := time.ParseDuration(v)
			if err != nil || dl < 0 {
				return nil, fmt.Errorf("rabbitmq: URL %s: ack_delay=%q is not a duration of zero or more (5ms; 0: no coalescing)", redact(u.Redacted()), v)
			}
			opts.AckDelay = dl
			if dl == 0 {
				opts.AckDelay = -1
			}
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("rabbitmq: URL %s: unknown query parameter(s) %s (known: poison, deadletter, ack_delay)", redact(u.Redacted()), strings.Join(unknown, ", "))
	}
	if o.PoisonName != "" {
		opts.PoisonQueue = o.PoisonName
	}
	lookup := o.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	setting := EnvServerURL
	if o.Connection != "" {
		setting = o.Connection
	}
	serverURL, ok := triggers.LookupSetting(lookup, setting)
	if !ok {
		return nil, fmt.Errorf("rabbitmq: no server URL for queue %q: app setting %q is not set (it should hold amqp://user:password@host:port/vhost)", queue, setting)
	}
	d, err := Open(ctx, serverURL, queue, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (from app setting %q)", err, setting)
	}
	return d, nil
}
