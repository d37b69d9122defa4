package servicebus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/jobhost/jobhost/triggers"
)

// sharedConn is one namespace connection shared by every driver, publisher
// and poison administration opened through a URL on the same connection
// (the same connection string, or the same namespace host for identity,
// whichever settings they were found in). The last reference to go closes
// the client.
type sharedConn struct {
	key    string
	conn   connection // holds a secret: never format it
	client *azservicebus.Client
	refs   int // guarded by sharedMu

	adminOnce sync.Once
	admin     *admin.Client
	adminErr  error
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*sharedConn{}
)

// connKey identifies a resolved connection by a digest, so that the map
// holds no further copy of a connection string.
func connKey(c connection) string {
	var sum [sha256.Size]byte
	if c.connStr != "" {
		sum = sha256.Sum256([]byte("connection-string\x00" + c.connStr))
	} else {
		sum = sha256.Sum256([]byte("host\x00" + strings.ToLower(c.host)))
	}
	return hex.EncodeToString(sum[:])
}

// acquireConn resolves o's connection and returns its shared client, made
// with gocloud's azuresb constructors on first use, and a release function
// that drops this reference (once, however often it is called).
func acquireConn(o triggers.OpenOptions) (*sharedConn, func(context.Context) error, error) {
	c, err := resolveConnection(o)
	if err != nil {
		return nil, nil, err
	}
	k := connKey(c)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sc := shared[k]
	if sc == nil {
		client, err := newClient(c)
		if err != nil {
			return nil, nil, err
		}
		sc = &sharedConn{key: k, conn: c, client: client}
		shared[k] = sc
	}
	sc.refs++
	var (
		once sync.Once
		rerr error
	)
	return sc, func(ctx context.Context) error {
		once.Do(func() { rerr = sc.release(ctx) })
		return rerr
	}, nil
}

// release drops one reference and closes the client with the last.
func (sc *sharedConn) release(ctx context.Context) error {
	sharedMu.Lock()
	sc.refs--
	last := sc.refs == 0
	if last && shared[sc.key] == sc {
		delete(shared, sc.key)
	}
	sharedMu.Unlock()
	if !last {
		return nil
	}
	return sc.client.Close(ctx)
}

// adminClient returns the management client of the connection, made on
// first use (it dials nothing until used). Its calls need the Manage right
// (or the Azure Service Bus Data Owner role).
func (sc *sharedConn) adminClient() (*admin.Client, error) {
	sc.adminOnce.Do(func() {
		var err error
		if sc.conn.connStr != "" {
			sc.admin, err = admin.NewClientFromConnectionString(sc.conn.connStr, nil)
		} else {
			var cred *azidentity.DefaultAzureCredential
			if cred, err = azidentity.NewDefaultAzureCredential(nil); err == nil {
				sc.admin, err = admin.NewClient(sc.conn.host, cred, nil)
			}
		}
		if err != nil {
			sc.admin, sc.adminErr = nil, fmt.Errorf("setting %s: management client: %s", sc.conn.setting, Redact(err.Error()))
		}
	})
	return sc.admin, sc.adminErr
}
