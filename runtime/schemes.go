package runtime

import (
	"context"
	"errors"
	"net/url"

	"github.com/jobhost/jobhost/triggers"
	// memqueue:// is the in-process queue: no dependency, so every host
	// has it for tests and single-process use.
	_ "github.com/jobhost/jobhost/triggers/memqueue"
)

// The host links only the Azure Storage Queue driver and memqueue. Other
// brokers' drivers register their URL schemes with package triggers when a
// program imports them (or triggers/all for every one); a trigger or output
// URL whose driver is not linked is a configuration problem naming the
// import to add.

// lookupScheme returns the registration of scheme or an error naming the
// import that provides it.
func lookupScheme(scheme string) (triggers.Scheme, error) {
	return triggers.Lookup(scheme)
}

// openURL opens a URL trigger's driver.
func openURL(ctx context.Context, fc *FunctionConfig, settings *AppSettings) (triggers.Driver, error) {
	s, err := lookupScheme(fc.URL.Scheme)
	if err != nil {
		return nil, err
	}
	u := fc.URL
	if u.Scheme == "azuresb" && fc.Queues.MaxRenewal > 0 && !u.Query().Has("max_auto_lock_renewal_duration") {
		// extensions.serviceBus.maxAutoLockRenewalDuration reaches the driver.
		c := *u
		q := c.Query()
		q.Set("max_auto_lock_renewal_duration", fc.Queues.MaxRenewal.String())
		c.RawQuery = q.Encode()
		u = &c
	}
	return s.Subscription(ctx, u, triggers.OpenOptions{
		Lookup:          settings.Lookup,
		Connection:      fc.Connection,
		Prefetch:        fc.held(),
		PoisonName:      fc.Poison,
		CreateIfMissing: fc.Queues.CreateQueues,
	})
}

// OpenPoison opens the poison administration of a subscription URL through
// its driver's registered opener. poison overrides the poison destination
// (a function's poison setting); connection names the app setting with the server URL (empty: the driver's default).
func OpenPoison(ctx context.Context, u *url.URL, connection, poison string, settings *AppSettings) (triggers.PoisonAdmin, error) {
	s, err := lookupScheme(u.Scheme)
	if err != nil {
		return nil, err
	}
	if s.Poison == nil {
		return nil, errors.New("the " + u.Scheme + ":// driver has no poison tools: use the broker's own")
	}
	return s.Poison(ctx, u, triggers.OpenOptions{Lookup: settings.Lookup, Connection: connection, PoisonName: poison})
}
