package redis

import "github.com/jobhost/jobhost/triggers"

// init registers the redis:// scheme: importing this package lets the
// host, output bindings and the CLI open redis://<stream> URLs.
func init() {
	triggers.Register(triggers.Scheme{
		Name:         Scheme,
		Subscription: OpenURL,
		Publisher:    OpenPublisherURL,
		Poison:       OpenPoisonURL,
	})
}
