package jetstream

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	// ServerURLSetting is the app setting (environment variable) read for
	// the server URL when the trigger names no connection; gocloud's
	// natspubsub reads the same variable.
	ServerURLSetting = "NATS_SERVER_URL"
	// DefaultPrefetch is a driver's Prefetch when OpenOptions.Prefetch and
	// Options.Prefetch are zero.
	DefaultPrefetch = 16
	// DefaultMaxAckPending is the consumer's MaxAckPending when
	// Options.MaxAckPending is zero: room for many workers of Prefetch
	// each and for messages waiting out a retry delay.
	DefaultMaxAckPending = 10000
	// NoMaxAckPending as Options.MaxAckPending (max_ack_pending=-1) sets
	// no server limit.
	NoMaxAckPending = -1
	// DefaultReceiveWait is how long Receive waits for a first message.
	DefaultReceiveWait = 2 * time.Second
	// MinAckWait is the shortest AckWait the driver sets on a consumer.
	MinAckWait = time.Second
	// PoisonSuffix is appended to the filter subject (or the stream name)
	// to name the default poison subject.
	PoisonSuffix = "-poison"
	// PoisonStreamSuffix is appended to the trigger stream's name to name
	// the stream the driver creates for the poison subject.
	PoisonStreamSuffix = "_POISON"

	// HeaderReason, HeaderSource and HeaderSourceSequence are added to the
	// poison copy of a message: why it was poisoned, "<stream>/<consumer>"
	// it came from, and its sequence in that stream.
	HeaderReason         = "Jobhost-Reason"
	HeaderSource         = "Jobhost-Source"
	HeaderSourceSequence = "Jobhost-Source-Sequence"
	// HeaderMsgID is JetStream's de-duplication header. When a message has
	// it, it is the message's ID.
	HeaderMsgID = "Nats-Msg-Id"
)

// Options configures a Driver. Only Stream is required.
type Options struct {
	// Stream is the JetStream stream holding the messages.
	Stream string
	// Subject is the consumer's filter subject (wildcards allowed); empty
	// means every message in the stream.
	Subject string
	// Consumer is the durable pull consumer's name. Empty means Subject
	// with '.', '*' and '>' replaced by '_', '+' and '#' ("orders.new" ->
	// "orders_new"), or "jobhost-<Stream>" when Subject is empty. Every
	// worker of one function must use the same consumer.
	Consumer string
	// PoisonSubject is where DeadLetter publishes. Empty means the default:
	// "<Subject>-poison" when Subject has no wildcards, else
	// "<Stream>-poison"; no poison subject at all when that base name
	// already ends in "-poison".
	PoisonSubject string
	// Prefetch is the most messages this driver holds unacknowledged
	// (handed out, pulled ahead or requested); its pull requests keep to
	// it. Zero means DefaultPrefetch.
	Prefetch int
	// MaxAckPending is set on the consumer: the most messages the server
	// lets all its workers together hold unacknowledged, messages waiting
	// out a retry delay included. Zero means DefaultMaxAckPending, set on
	// a consumer the driver creates and on an existing one with a lower
	// limit (one a higher limit or none keeps it); any other value
	// (NoMaxAckPending: no limit) is set on the consumer as it is.
	MaxAckPending int
	// AckWait is set on the consumer. Zero means: a consumer the driver
	// creates gets the lease of the first Receive (at least MinAckWait),
	// which is what the runtime passes every time, so the server's
	// redelivery matches the lease; an existing consumer keeps its AckWait.
	AckWait time.Duration
	// ReceiveWait is how long Receive waits for a first message; zero means
	// DefaultReceiveWait.
	ReceiveWait time.Duration
	// CreateIfMissing creates a missing stream (see Driver.Receive).
	CreateIfMissing bool
	// AckSync makes Complete wait for the server's reply to its ack (one
	// round trip per message), as it did before asynchronous acks. Without
	// it (the default) Complete sends the ack and returns: nats.go's
	// flusher writes it at once, together with whatever else is buffered,
	// and Close flushes what is still buffered (see the package doc).
	AckSync bool
	// NATSOptions are added to the driver's connection options (for
	// example nats.UserCredentials); a driver with NATSOptions has a
	// connection of its own rather than the server URL's shared one.
	// Unused by New.
	NATSOptions []nats.Option
}

// normalize fills in defaults and validates o.
func (o Options) normalize() (Options, error) {
	if err := validateName("stream", o.Stream); err != nil {
		return o, err
	}
	if o.Subject != "" {
		if err := validateSubject(o.Subject, true); err != nil {
			return o, fmt.Errorf("filter subject: %w", err)
		}
	}
	if o.Consumer == "" {
		o.Consumer = DefaultConsumerName(o.Stream, o.Subject)
	}
	if err := validateName("consumer", o.Consumer); err != nil {
		return o, err
	}
	if o.PoisonSubject == "" {
		o.PoisonSubject = DefaultPoisonSubject(o.Stream, o.Subject)
	} else if err := validateSubject(o.PoisonSubject, false); err != nil {
		return o, fmt.Errorf("poison subject: %w", err)
	}
	if o.Prefetch < 0 {
		return o, fmt.Errorf("prefetch %d is negative", o.Prefetch)
	}
	if o.Prefetch == 0 {
		o.Prefetch = DefaultPrefetch
	}
	if o.MaxAckPending < NoMaxAckPending {
		return o, fmt.Errorf("max_ack_pending %d is neither positive nor -1 (no limit)", o.MaxAckPending)
	}
	if o.AckWait < 0 || o.ReceiveWait < 0 {
		return o, fmt.Errorf("negative AckWait or ReceiveWait")
	}
	if o.AckWait > 0 {
		o.AckWait = max(o.AckWait, MinAckWait)
	}
	if o.ReceiveWait == 0 {
		o.ReceiveWait = DefaultReceiveWait
	}
	return o, nil
}

// DefaultConsumerName is the durable name used when none is given: the
// filter subject made into a valid name, or "jobhost-<stream>".
func DefaultConsumerName(stream, subject string) string {
	if subject == "" {
		return "jobhost-" + stream
	}
	return strings.NewReplacer(".", "_", "*", "+", ">", "#").Replace(subject)
}

// DefaultPoisonSubject is the poison subject used when none is given:
// "<subject>-poison" for a literal filter subject, else "<stream>-poison";
// "" (no poison subject) when that base already ends in "-poison".
func DefaultPoisonSubject(stream, subject string) string {
	base := subject
	if base == "" || strings.ContainsAny(base, "*>") {
		base = stream
	}
	if strings.HasSuffix(base, PoisonSuffix) {
		return ""
	}
	return base + PoisonSuffix
}

// validateName checks a stream or consumer name.
func validateName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty", what)
	case len(name) > 255:
		return fmt.Errorf("%s name %.20q... is longer than 255 bytes", what, name)
	case strings.ContainsAny(name, " \t\r\n\f.*>/\\"):
		return fmt.Errorf("%s name %q may not contain whitespace, '.', '*', '>', '/' or '\\'", what, name)
	}
	return nil
}

// validateSubject checks a NATS subject; wildcards are allowed only where
// wild is true.
func validateSubject(s string, wild bool) error {
	if s == "" {
		return fmt.Errorf("subject is empty")
	}
	if strings.ContainsAny(s, " \t\r\n\f") {
		return fmt.Errorf("subject %q contains whitespace", s)
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("subject %q has an empty token", s)
		case t == ">" && i == len(toks)-1 && wild, t == "*" && wild:
		case strings.ContainsAny(t, "*>"):
			if !wild {
				return fmt.Errorf("subject %q may not contain wildcards", s)
			}
			return fmt.Errorf("subject %q: '*' must be a whole token and '>' the whole last token", s)
		}
	}
	return nil
}

// subjectMatches reports whether the literal subject subj matches the
// pattern pat (which may hold wildcards).
func subjectMatches(pat, subj string) bool {
	p, s := strings.Split(pat, "."), strings.Split(subj, ".")
	for i, t := range p {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// URL query parameters understood by OptionsFromURL.
var urlParams = []string{"stream", "consumer", "subject", "poison", "max_ack_pending", "ack"}

// OptionsFromURL reads a trigger URL:
//
//	nats://<subject>?stream=S[&consumer=C][&poison=P][&max_ack_pending=N][&ack=sync]
//	nats://<stream>[?subject=X][&consumer=C][&poison=P][&max_ack_pending=N][&ack=sync]
//
// With stream=, the URL's host is the filter subject; without it, the host
// is the stream and subject= (optional) the filter subject. The host is
// used as written (not lower-cased). max_ack_pending= is
// Options.MaxAckPending (-1: no limit); ack=sync is Options.AckSync (ack=async,
// the default, leaves it off). The URL holds no server address or
// credentials: those come from app settings (see OpenURL).
func OptionsFromURL(u *url.URL) (Options, error) {
	o, err := parseURL(u)
	if err != nil {
		return o, err
	}
	return o.normalize()
}

// parseURL reads u without filling in defaults.
func parseURL(u *url.URL) (Options, error) {
	var o Options
	switch {
	case u.Opaque != "":
		return o, fmt.Errorf("URL %q is not of the form nats://<subject-or-stream>?...", u.Scheme+":"+u.Opaque)
	case u.User != nil:
		return o, fmt.Errorf("the trigger URL must not hold credentials; put the server URL in an app setting")
	case u.Host == "":
		return o, fmt.Errorf("URL %q names no subject or stream (nats://<subject>?stream=S or nats://<stream>)", u.Redacted())
	case strings.Contains(u.Host, ":"):
		return o, fmt.Errorf("URL %q: the host part names a subject or stream, not a server; put the server URL in an app setting", u.Redacted())
	case u.Path != "" && u.Path != "/", u.Fragment != "":
		return o, fmt.Errorf("URL %q: unexpected path or fragment (nats://<subject>?stream=S)", u.Redacted())
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return o, fmt.Errorf("URL %q: bad query: %w", u.Redacted(), err)
	}
	for k, vs := range q {
		if !slices.Contains(urlParams, k) {
			return o, fmt.Errorf("URL %q: unknown parameter %q (known: %s)", u.Redacted(), k, strings.Join(urlParams, ", "))
		}
		if len(vs) != 1 || vs[0] == "" {
			return o, fmt.Errorf("URL %q: parameter %q must be given once, with a value", u.Redacted(), k)
		}
	}
	o.Consumer, o.PoisonSubject = q.Get("consumer"), q.Get("poison")
	if v := q.Get("max_ack_pending"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 || n < NoMaxAckPending {
			return o, fmt.Errorf("URL %q: max_ack_pending=%s is neither a positive number nor -1 (no limit)", u.Redacted(), v)
		}
		o.MaxAckPending = n
	}
	switch v := q.Get("ack"); v {
	case "", "async":
	case "sync":
		o.AckSync = true
	default:
		return o, fmt.Errorf("URL %q: ack=%s is neither sync nor async", u.Redacted(), v)
	}
	if s := q.Get("stream"); s != "" {
		if q.Has("subject") {
			return o, fmt.Errorf("URL %q: with stream=, the host is the subject; drop subject=", u.Redacted())
		}
		o.Stream, o.Subject = s, u.Host
	} else {
		o.Stream, o.Subject = u.Host, q.Get("subject")
	}
	return o, nil
}
