package servicebus

import "github.com/jobhost/jobhost/triggers"

// init registers the azuresb scheme: trigger drivers (OpenURL), publishers
// (OpenPublisherURL) and poison administration (OpenPoisonURL).
func init() {
	triggers.Register(triggers.Scheme{
		Name:         Scheme,
		Subscription: OpenURL,
		Publisher:    OpenPublisherURL,
		Poison:       OpenPoisonURL,
	})
}
