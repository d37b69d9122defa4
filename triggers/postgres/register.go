package postgres

import "github.com/jobhost/jobhost/triggers"

// init registers the postgres:// scheme: importing this package lets the
// host, output bindings and the CLI open postgres://<queue> URLs.
func init() {
	triggers.Register(triggers.Scheme{
		Name:         Scheme,
		Subscription: OpenURL,
		Publisher:    OpenPublisherURL,
		Poison:       OpenPoisonURL,
	})
}

var (
	_ triggers.OpenURLFunc       = OpenURL
	_ triggers.OpenPublisherFunc = OpenPublisherURL
	_ triggers.OpenPoisonFunc    = OpenPoisonURL
)
