package azuritetest

import (
	"sync"
	"testing"
)

// sharedServer is the test binary's one server of a service.
type sharedServer struct {
	once sync.Once
	s    *Server
	err  error
}

var sharedServers = [...]*sharedServer{queueService: {}, tableService: {}, blobService: {}}

// start launches a server of svc that the test's end stops (Start,
// StartTable, StartBlob).
func start(t testing.TB, svc service, opts Options) *Server {
	t.Helper()
	s, err := launch(svc, opts)
	if err != nil {
		handleLaunchError(t, err)
		return nil
	}
	t.Cleanup(s.Stop)
	return s
}

// shared returns the test binary's one in-memory server of svc, starting
// it on first use (Shared, SharedTable, SharedBlob); Main stops it.
func shared(t testing.TB, svc service) *Server {
	t.Helper()
	ss := sharedServers[svc]
	ss.once.Do(func() { ss.s, ss.err = launch(svc, Options{}) })
	if ss.err != nil {
		handleLaunchError(t, ss.err)
		return nil
	}
	return ss.s
}

// stopShared stops the shared servers that were started.
func stopShared() {
	for _, ss := range sharedServers {
		if ss.s != nil {
			ss.s.Stop()
		}
	}
}
