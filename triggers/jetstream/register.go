package jetstream

import "github.com/jobhost/jobhost/triggers"

// Scheme is the URL scheme the package registers.
const Scheme = "nats"

func init() {
	triggers.Register(triggers.Scheme{
		Name:         Scheme,
		Subscription: OpenURL,
		Publisher:    OpenPublisherURL,
		Poison:       OpenPoisonURL,
	})
}
