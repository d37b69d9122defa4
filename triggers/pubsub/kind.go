package pubsub

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"time"

	gcpubsub "gocloud.dev/pubsub"

	"github.com/jobhost/jobhost/triggers"
)

// Kind describes one gocloud URL scheme to the core. A scheme package
// (mempubsub, awssqs, gcppubsub, kafka) declares one, links the gocloud
// driver, and registers the Kind's openers with package triggers:
//
//	triggers.Register(triggers.Scheme{Name: k.Scheme, Subscription: k.OpenURL, Publisher: k.OpenPublisher, Poison: k.OpenPoison})
//
// (Poison only for a Kind with a Poison opener.)
type Kind struct {
	// Scheme is the URL scheme, such as "mem".
	Scheme string
	// Endpoints (required) maps subscription URL u to the topic that
	// receives retried copies and the poison topic. q is u's query without
	// the poison parameter; Endpoints may delete from it what is not the
	// subscription's. poison is the poison topic asked for (the binding's
	// override, else the poison parameter) or "". When the result has no
	// Subscription, it is u with query q. An error need not name u.
	Endpoints func(u *url.URL, q url.Values, poison string) (Endpoints, error)
	// Mux returns the URL mux that opens u and its topics; nil means
	// gocloud's default mux, where the gocloud driver registers itself.
	Mux func(u *url.URL, o triggers.OpenOptions) (*gcpubsub.URLMux, error)
	// Attempts returns the broker's own delivery count of a received
	// message, if it has one; nil when it has none.
	Attempts func(*gcpubsub.Message) (int64, bool)
	// SentTime returns when the broker received a message, or the zero
	// time; nil when the broker does not say.
	SentTime func(*gcpubsub.Message) time.Time
	// SharedTopics means the mux returns one process-wide topic per name
	// (gocloud's mem://): drivers and publishers then leave their topics
	// open when they close, since others may be sending to them.
	SharedTopics bool
	// Poison opens the backend that reads the poison topic of endpoints e
	// of subscription URL u, for OpenPoison; nil when the scheme cannot
	// read its poison topic back.
	Poison func(ctx context.Context, u *url.URL, e Endpoints, o triggers.OpenOptions) (PoisonBackend, error)
	// Prepare runs when OpenURL has opened a trigger's topics: it readies
	// the poison topic for being read back later (mem:// subscribes its
	// collector, gcppubsub:// creates the poison subscription). Nil for
	// nothing to do. An error fails the open.
	Prepare func(ctx context.Context, u *url.URL, e Endpoints, o triggers.OpenOptions) error
}

// Endpoints are the URLs one trigger uses: the subscription, the topic that
// receives retried copies, and the poison topic.
type Endpoints struct {
	// Subscription, Topic and Poison are gocloud URLs; Topic and Poison
	// are empty when the scheme cannot derive them.
	Subscription, Topic, Poison string
	// Name and PoisonName are display names.
	Name, PoisonName string
	// AckDeadline is the broker's ack deadline for Subscription (see
	// Options.AckDeadline).
	AckDeadline time.Duration
}

// ParseURL derives the endpoints of subscription URL u. Query parameter
// poison, or poisonOverride when set, names the poison topic.
func (k *Kind) ParseURL(u *url.URL, poisonOverride string) (Endpoints, error) {
	if u.Scheme != k.Scheme {
		return Endpoints{}, fmt.Errorf("pubsub: %s: scheme is not %s", redactURL(u), k.Scheme)
	}
	q := u.Query()
	poison := cmp.Or(poisonOverride, q.Get("poison"))
	q.Del("poison")
	e, err := k.Endpoints(u, q, poison)
	if err != nil {
		return Endpoints{}, fmt.Errorf("pubsub: %s: %w", redactURL(u), err)
	}
	if e.Subscription == "" {
		sub := *u
		sub.RawQuery = q.Encode()
		e.Subscription = sub.String()
	}
	return e, nil
}

// OpenURL opens a driver for subscription URL u (a triggers.OpenURLFunc).
func (k *Kind) OpenURL(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Driver, error) {
	e, err := k.ParseURL(u, o.PoisonName)
	if err != nil {
		return nil, err
	}
	mux, err := k.mux(u, o)
	if err != nil {
		return nil, err
	}
	opts := Options{
		Name: e.Name, PoisonName: e.PoisonName, Attempts: k.Attempts, SentTime: k.SentTime,
		AckDeadline: e.AckDeadline,
	}
	var owned []interface{ Shutdown(context.Context) error }
	fail := func(err error) (triggers.Driver, error) {
		_ = shutdown(owned)
		return nil, fmt.Errorf("pubsub: opening %s: %w", redactURL(u), err)
	}
	// mem:// topics must exist before their subscriptions.
	if e.Topic != "" {
		if opts.Topic, err = mux.OpenTopic(ctx, e.Topic); err != nil {
			return fail(err)
		}
		owned = k.own(owned, opts.Topic)
	}
	if e.Poison != "" {
		if opts.Poison, err = mux.OpenTopic(ctx, e.Poison); err != nil {
			return fail(err)
		}
		owned = k.own(owned, opts.Poison)
	}
	if opts.Subscription, err = mux.OpenSubscription(ctx, e.Subscription); err != nil {
		return fail(err)
	}
	if k.Prepare != nil && e.Poison != "" {
		if err := k.Prepare(ctx, u, e, o); err != nil {
			_ = opts.Subscription.Shutdown(ctx)
			return fail(err)
		}
	}
	opts.Owned = append([]interface{ Shutdown(context.Context) error }{opts.Subscription}, owned...)
	return New(opts), nil
}

// OpenPoison opens the poison administration of subscription URL u (a
// triggers.OpenPoisonFunc): the Kind's Poison backend on its poison topic,
// requeueing into the topic the trigger's retries go to. o.PoisonName
// overrides the poison topic as for OpenURL.
func (k *Kind) OpenPoison(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.PoisonAdmin, error) {
	e, err := k.ParseURL(u, o.PoisonName)
	if err != nil {
		return nil, err
	}
	if k.Poison == nil {
		return nil, fmt.Errorf("pubsub: %s: the %s:// driver cannot read its poison topic back", redactURL(u), k.Scheme)
	}
	if e.Poison == "" {
		return nil, fmt.Errorf("pubsub: %s has no poison topic (name one with poison=)", redactURL(u))
	}
	var topic *gcpubsub.Topic
	if e.Topic != "" {
		mux, err := k.mux(u, o)
		if err != nil {
			return nil, err
		}
		if topic, err = mux.OpenTopic(ctx, e.Topic); err != nil {
			return nil, fmt.Errorf("pubsub: opening %s: %w", redactURL(u), err)
		}
	}
	b, err := k.Poison(ctx, u, e, o)
	if err != nil {
		if topic != nil && !k.SharedTopics {
			_ = shutdown([]interface{ Shutdown(context.Context) error }{topic})
		}
		return nil, fmt.Errorf("pubsub: poison administration of %s: %w", redactURL(u), err)
	}
	return NewPoisonAdmin(b, "topic "+e.Name, topic, k.SharedTopics), nil
}

// own adds t to owned unless topics are shared.
func (k *Kind) own(owned []interface{ Shutdown(context.Context) error }, t *gcpubsub.Topic) []interface{ Shutdown(context.Context) error } {
	if k.SharedTopics {
		return owned
	}
	return append(owned, t)
}

// OpenPublisher opens a publisher to the topic u names (a
// triggers.OpenPublisherFunc), such as mem://orders. Its Close is
// idempotent; afterwards Publish returns an error wrapping
// triggers.ErrClosed.
func (k *Kind) OpenPublisher(ctx context.Context, u *url.URL, o triggers.OpenOptions) (triggers.Publisher, error) {
	if u.Scheme != k.Scheme {
		return nil, fmt.Errorf("pubsub: %s: scheme is not %s", redactURL(u), k.Scheme)
	}
	mux, err := k.mux(u, o)
	if err != nil {
		return nil, err
	}
	t, err := mux.OpenTopic(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("pubsub: opening topic %s: %w", redactURL(u), err)
	}
	return &publisher{t: t, name: redactURL(u), shared: k.SharedTopics, life: newLife()}, nil
}

func (k *Kind) mux(u *url.URL, o triggers.OpenOptions) (*gcpubsub.URLMux, error) {
	if k.Mux == nil {
		return gcpubsub.DefaultURLMux(), nil
	}
	return k.Mux(u, o)
}

// publisher is a gocloud topic as a triggers.Publisher.
type publisher struct {
	t      *gcpubsub.Topic
	name   string
	shared bool
	life   *life
}

// Publish sends copies of body and props (as metadata).
func (p *publisher) Publish(ctx context.Context, body []byte, props map[string]string) (string, error) {
	cctx, exit, ok := p.life.enterCtx(ctx)
	if !ok {
		return "", fmt.Errorf("pubsub: publish to %s: %w", p.name, triggers.ErrClosed)
	}
	defer exit()
	if err := p.t.Send(cctx, outgoing(body, props)); err != nil {
		return "", wrapErr("publish to", p.name, err, p.life)
	}
	return "", nil
}

// Close ends publishes in flight and shuts the topic down (a shared topic
// stays open). It is idempotent.
func (p *publisher) Close() error {
	if !p.life.close() || p.shared {
		return nil
	}
	return shutdown([]interface{ Shutdown(context.Context) error }{p.t})
}

// redactURL drops credentials and the query from u for messages.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}
