package runtime

import (
	"context"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/triggers"
	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// azureOpener opens Azure Storage Queue drivers, one service client per
// connection name.
type azureOpener struct {
	settings *AppSettings
	mu       sync.Mutex
	clients  map[string]*azqueue.ServiceClient
}

func newAzureOpener(s *AppSettings) *azureOpener {
	return &azureOpener{settings: s, clients: map[string]*azqueue.ServiceClient{}}
}

func (a *azureOpener) client(connection string) (*azqueue.ServiceClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[connection]; ok {
		return c, nil
	}
	c, err := azurequeue.NewServiceClient(connection, a.settings.Lookup)
	if err != nil {
		return nil, err
	}
	a.clients[connection] = c
	return c, nil
}

// check resolves every function's connection without connecting.
func (a *azureOpener) check(funcs []*FunctionConfig) []Problem {
	var probs []Problem
	seen := map[string]bool{}
	for _, fc := range funcs {
		if !fc.StorageQueue() || seen[fc.Connection] || fc.Disabled {
			continue
		}
		seen[fc.Connection] = true
		if _, err := a.client(fc.Connection); err != nil {
			probs = append(probs, Problem{"function " + fc.Name() + ": connection", err.Error()})
		}
	}
	return probs
}

func (a *azureOpener) open(_ context.Context, fc *FunctionConfig) (triggers.Driver, error) {
	c, err := a.client(fc.Connection)
	if err != nil {
		return nil, err
	}
	return azurequeue.New(c, fc.Queue, azurequeue.Options{CreateIfMissing: fc.Queues.CreateQueues, PoisonQueue: fc.Poison}), nil
}
