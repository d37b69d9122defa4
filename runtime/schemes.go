package runtime

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/pubsub"
)

var (
	schemesMu sync.RWMutex
	schemes   = map[string]triggers.OpenURLFunc{}
)

func init() {
	for _, s := range pubsub.Schemes {
		schemes[s] = pubsub.OpenURL
	}
}

// RegisterScheme makes URL triggers with scheme open through open,
// replacing any driver registered for it. Call it before New.
func RegisterScheme(scheme string, open triggers.OpenURLFunc) {
	schemesMu.Lock()
	defer schemesMu.Unlock()
	schemes[scheme] = open
}

func lookupScheme(scheme string) (triggers.OpenURLFunc, bool) {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	f, ok := schemes[scheme]
	return f, ok
}

func schemeNames() []string {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	return slices.Sorted(maps.Keys(schemes))
}

// openURL opens a URL trigger's driver.
func openURL(ctx context.Context, fc *FunctionConfig, settings *AppSettings) (triggers.Driver, error) {
	open, _ := lookupScheme(fc.URL.Scheme)
	return open(ctx, fc.URL, triggers.OpenOptions{
		Lookup:          settings.Lookup,
		Connection:      fc.Connection,
		Prefetch:        fc.Queues.BatchSize + fc.Queues.NewBatchThreshold,
		PoisonName:      fc.Poison,
		CreateIfMissing: fc.Queues.CreateQueues,
	})
}
