package timerblob

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/jobhost/jobhost/internal/storageconn"
	"github.com/jobhost/jobhost/timer"
)

// Open returns the Store of hostID on the Storage account a connection
// names, resolved as the queue trigger resolves its connections: the app
// setting AzureWebJobs<connection> or <connection> holding a connection
// string (UseDevelopmentStorage=true meaning Azurite's blob service on
// 127.0.0.1:10000), or identity-based settings (<connection>__blobServiceUri
// or <connection>__accountName). lookup reads app settings; nil reads the
// environment. Errors never hold the account key.
func Open(connection string, lookup func(string) (string, bool), hostID string) (*Store, error) {
	c, err := storageconn.Resolve(connection, lookup, storageconn.Blob)
	if err != nil {
		var cse *storageconn.ConnectionStringError
		if errors.As(err, &cse) {
			return nil, fmt.Errorf("timerblob: %w", cse)
		}
		return nil, fmt.Errorf("timerblob: %w", err)
	}
	url := strings.TrimSuffix(c.ServiceURL, "/") + "/"
	var client *azblob.Client
	switch c.Auth {
	case storageconn.SharedKey:
		cred, cerr := azblob.NewSharedKeyCredential(c.Account, c.Key)
		if cerr != nil {
			return nil, fmt.Errorf("timerblob: connection %q: the account key is not valid base64", connection)
		}
		client, err = azblob.NewClientWithSharedKeyCredential(url, cred, nil)
	case storageconn.SAS:
		client, err = azblob.NewClientWithNoCredential(url+"?"+c.SAS, nil)
	default:
		cred, cerr := c.IdentityCredential()
		if cerr != nil {
			return nil, fmt.Errorf("timerblob: connection %q: %w", connection, cerr)
		}
		client, err = azblob.NewClient(url, cred, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("timerblob: connection %q (%s): %v", connection, c.Describe(), err)
	}
	return New(client, hostID)
}

func init() {
	timer.RegisterStore("blob", func(_ context.Context, connection string, lookup func(string) (string, bool), hostID string) (timer.Store, error) {
		return Open(connection, lookup, hostID)
	})
}
