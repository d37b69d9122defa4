package rabbitmq

import "github.com/jobhost/jobhost/triggers"

// init registers the rabbit:// scheme: importing this package lets the
// host, output bindings and the CLI open rabbit://<queue> URLs.
func init() {
	triggers.Register(triggers.Scheme{
		Name:         Scheme,
		Subscription: OpenURL,
		Publisher:    OpenPublisherURL,
		Poison:       OpenPoisonURL,
	})
}

var (
	_ triggers.OpenPublisherFunc = OpenPublisherURL
	_ triggers.OpenPoisonFunc    = OpenPoisonURL
)
