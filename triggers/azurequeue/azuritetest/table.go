package azuritetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// DevelopmentTableConnectionString is the connection string that
// UseDevelopmentStorage=true stands for on the table side: Azurite's
// well-known account on its default table port.
const DevelopmentTableConnectionString = "DefaultEndpointsProtocol=http;AccountName=" + accountName + ";" +
	"AccountKey=" + accountKey + ";" +
	"TableEndpoint=http://127.0.0.1:10002/" + accountName

// service is the Azurite service a Server runs.
type service int

const (
	queueService service = iota // the zero value: what Start and Shared run
	tableService
	blobService
)

// binary is the service's executable in node_modules/.bin.
func (k service) binary() string {
	switch k {
	case tableService:
		return "azurite-table"
	case blobService:
		return "azurite-blob"
	}
	return "azurite-queue"
}

// endpointKey is the connection-string setting naming the service's URL.
func (k service) endpointKey() string {
	switch k {
	case tableService:
		return "TableEndpoint"
	case blobService:
		return "BlobEndpoint"
	}
	return "QueueEndpoint"
}

// listenArgs are the command-line arguments that bind the service to
// 127.0.0.1:port.
func (k service) listenArgs(port int) []string {
	switch k {
	case tableService:
		return []string{"--tableHost", "127.0.0.1", "--tablePort", strconv.Itoa(port)}
	case blobService:
		// azblob sends a newer API version than the pinned Azurite knows;
		// the operations tests use (containers, block blobs, leases) are
		// old ones.
		return []string{"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port), "--skipApiVersionCheck"}
	}
	return []string{"--queueHost", "127.0.0.1", "--queuePort", strconv.Itoa(port)}
}

// stopsOnInterrupt reports whether the service is stopped gracefully with
// SIGINT (azurite-table ignores SIGTERM; azurite-blob handles both).
func (k service) stopsOnInterrupt() bool { return k == tableService || k == blobService }

// external turns the JOBHOST_AZURITE_CONNECTION value into the service's
// connection string. For the table (blob) service it needs
// UseDevelopmentStorage, a TableEndpoint (BlobEndpoint), or an account
// without explicit endpoints (whose endpoint the SDK derives); a string
// naming only other endpoints counts as the service being unavailable.
func (k service) external(cs string) (string, error) {
	if k == queueService {
		return azurequeue.ExpandDevelopmentStorage(cs), nil
	}
	if azurequeue.ExpandDevelopmentStorage(cs) != cs {
		if k == blobService {
			return DevelopmentBlobConnectionString, nil
		}
		return DevelopmentTableConnectionString, nil
	}
	own := strings.ToLower(k.endpointKey())
	hasOwn, hasOther := false, false
	for _, part := range strings.Split(cs, ";") {
		key, _, _ := strings.Cut(part, "=")
		switch key = strings.ToLower(strings.TrimSpace(key)); key {
		case own:
			hasOwn = true
		case "queueendpoint", "tableendpoint", "blobendpoint", "fileendpoint":
			hasOther = true
		}
	}
	if !hasOwn && hasOther {
		return "", fmt.Errorf("%w: %s names no %s", errUnavailable, EnvConnection, k.endpointKey())
	}
	return cs, nil
}

// StartTable starts an Azurite table service on a free 127.0.0.1 port and
// stops it when the test ends; with an empty opts.Location it keeps its
// data in memory (--inMemoryPersistence). Its ConnectionString names the
// well-known devstoreaccount1 account and key and
// TableEndpoint=http://127.0.0.1:<port>/devstoreaccount1. Stop and Restart
// serve outage tests. Skips and JOBHOST_AZURITE_CONNECTION work as for
// Start.
func StartTable(t testing.TB, opts Options) *Server { return start(t, tableService, opts) }

// SharedTable returns the test binary's one in-memory Azurite table
// service, starting it on first use. Main stops it. Do not Stop or Restart
// it: use StartTable for outage tests.
func SharedTable(t testing.TB) *Server { return shared(t, tableService) }

// TableServiceClient returns a table service client for a server started
// by StartTable or SharedTable. With noRetry the client does not retry
// failed requests (for outage tests and cleanups).
func (s *Server) TableServiceClient(t testing.TB, noRetry bool) *aztables.ServiceClient {
	t.Helper()
	c, err := s.tableClient(noRetry)
	if err != nil {
		// The SDK's error holds no key, but do not risk printing one.
		t.Fatalf("azuritetest: table service client: cannot use the server's connection string")
	}
	return c
}

func (s *Server) tableClient(noRetry bool) (*aztables.ServiceClient, error) {
	var o *aztables.ClientOptions
	if noRetry {
		o = &aztables.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}}
	}
	return aztables.NewServiceClientFromConnectionString(s.ConnectionString, o)
}

var tableSeq atomic.Int64

// NewTableName returns a valid table name, unique across processes, that
// hints at the test's name, and deletes that table (if anyone created it)
// when the test ends, ignoring errors. It does not create the table.
func (s *Server) NewTableName(t testing.TB) string {
	t.Helper()
	name := UniqueTableName(t)
	t.Cleanup(func() {
		// No retries: the server may be down in an outage test.
		c, err := s.tableClient(true)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.DeleteTable(ctx, name, nil)
	})
	return name
}

// UniqueTableName returns a valid table name (letters and digits, starting
// with a letter, at most 63 characters), unique across processes, that
// hints at the test's name.
func UniqueTableName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	hint := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return -1
	}, t.Name())
	if len(hint) > 32 {
		hint = hint[len(hint)-32:]
	}
	return fmt.Sprintf("t%s%s%d", hint, hex.EncodeToString(b[:]), tableSeq.Add(1))
}
