package azuritetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// DevelopmentBlobConnectionString is the connection string that
// UseDevelopmentStorage=true stands for on the blob side: Azurite's
// well-known account on its default blob port.
const DevelopmentBlobConnectionString = "DefaultEndpointsProtocol=http;AccountName=" + accountName + ";" +
	"AccountKey=" + accountKey + ";" +
	"BlobEndpoint=http://127.0.0.1:10000/" + accountName

// StartBlob starts an Azurite blob service on a free 127.0.0.1 port and
// stops it when the test ends; with an empty opts.Location it keeps its
// data in memory (--inMemoryPersistence). Its ConnectionString names the
// well-known devstoreaccount1 account and key and
// BlobEndpoint=http://127.0.0.1:<port>/devstoreaccount1. Stop and Restart
// serve outage tests. Skips and JOBHOST_AZURITE_CONNECTION work as for
// Start. It runs Azurite with --skipApiVersionCheck: the azblob SDK sends a
// newer service version than the pinned Azurite knows (an external Azurite
// needs the flag too).
func StartBlob(t testing.TB, opts Options) *Server { return start(t, blobService, opts) }

// SharedBlob returns the test binary's one in-memory Azurite blob service,
// starting it on first use. Main stops it. Do not Stop or Restart it: use
// StartBlob for outage tests.
func SharedBlob(t testing.TB) *Server { return shared(t, blobService) }

// BlobClient returns a blob client for a server started by StartBlob or
// SharedBlob. With noRetry the client does not retry failed requests (for
// outage tests and cleanups).
func (s *Server) BlobClient(t testing.TB, noRetry bool) *azblob.Client {
	t.Helper()
	c, err := s.blobClient(noRetry)
	if err != nil {
		// The SDK's error holds no key, but do not risk printing one.
		t.Fatalf("azuritetest: blob client: cannot use the server's connection string")
	}
	return c
}

func (s *Server) blobClient(noRetry bool) (*azblob.Client, error) {
	var o *azblob.ClientOptions
	if noRetry {
		o = &azblob.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}}
	}
	return azblob.NewClientFromConnectionString(s.ConnectionString, o)
}

var containerSeq atomic.Int64

// NewContainerName returns a valid container name, unique across
// processes, that hints at the test's name, and deletes that container
// (if anyone created it) when the test ends, ignoring errors. It does not
// create the container.
func (s *Server) NewContainerName(t testing.TB) string {
	t.Helper()
	name := UniqueContainerName(t)
	t.Cleanup(func() {
		c, err := s.blobClient(true)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.DeleteContainer(ctx, name, nil)
	})
	return name
}

// UniqueContainerName returns a valid container name (lower-case letters,
// digits and single hyphens, 3 to 63 characters), unique across processes,
// that hints at the test's name.
func UniqueContainerName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	hint := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, t.Name())
	for strings.Contains(hint, "--") {
		hint = strings.ReplaceAll(hint, "--", "-")
	}
	if len(hint) > 32 {
		hint = hint[len(hint)-32:]
	}
	hint = strings.Trim(hint, "-")
	return fmt.Sprintf("c-%s-%s%d", hint, hex.EncodeToString(b[:]), containerSeq.Add(1))
}
