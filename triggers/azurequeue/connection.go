package azurequeue

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"

	"github.com/jobhost/jobhost/internal/storageconn"
)

// DefaultConnection is the connection name used when none is given, as in
// Azure Functions (it resolves to the AzureWebJobsStorage setting).
const DefaultConnection = storageconn.DefaultConnection

// DevelopmentStorageConnectionString is the connection string that
// UseDevelopmentStorage=true stands for: Azurite's well-known account on its
// default queue port. The key is public and the same for every Azurite.
const DevelopmentStorageConnectionString = "DefaultEndpointsProtocol=http;AccountName=" + storageconn.DevelopmentAccount + ";" +
	"AccountKey=" + storageconn.DevelopmentKey + ";" +
	"QueueEndpoint=" + storageconn.DevelopmentQueueEndpoint

// Lookup reads one app setting by name; ok is false when it is not set.
// A nil Lookup reads environment variables (exact name first, then a
// case-insensitive match, since app setting names are case-insensitive).
type Lookup func(name string) (value string, ok bool)

// NewServiceClient resolves a connection the way Azure Functions does and
// returns a queue service client for it.
//
// The connection name defaults to "Storage". The settings AzureWebJobs<name>
// and then <name> are looked up; a non-empty value is a connection string
// (UseDevelopmentStorage=true means the local Azurite). Otherwise the
// connection is identity-based: <name>__queueServiceUri, or
// <name>__accountName (meaning https://<account>.queue.core.windows.net/),
// authenticated with azidentity's DefaultAzureCredential. The
// AzureWebJobs<name>__ forms of the identity settings are also accepted and
// take precedence.
//
// Errors name the settings involved but never contain a connection string,
// account key or shared access signature.
func NewServiceClient(connection string, lookup Lookup) (*azqueue.ServiceClient, error) {
	r, err := resolve(connection, lookup)
	if err != nil {
		return nil, err
	}
	return r.client()
}

// Describe returns a one-line, secret-free description of where a connection
// leads, such as "http://127.0.0.1:10001/devstoreaccount1 (shared key)", for
// listings and logs. When the connection cannot be resolved it describes the
// problem instead.
func Describe(connection string, lookup Lookup) string {
	r, err := resolve(connection, lookup)
	if err != nil {
		return "unresolved: " + err.Error()
	}
	return r.Describe()
}

// ExpandDevelopmentStorage returns Azurite's well-known connection string
// (DevelopmentStorageConnectionString) when cs says UseDevelopmentStorage=true
// (case-insensitive; a DevelopmentStorageProxyUri is ignored), and cs
// unchanged otherwise.
func ExpandDevelopmentStorage(cs string) string {
	if storageconn.IsDevelopmentStorage(cs) {
		return DevelopmentStorageConnectionString
	}
	return cs
}

// ValidateQueueName reports whether name is a valid Storage Queue name:
// 3 to 63 characters, only lowercase letters, digits and '-', starting and
// ending with a letter or digit, with no "--". The error says which rule
// was broken.
func ValidateQueueName(name string) error {
	if n := len(name); n < 3 || n > 63 {
		return fmt.Errorf("invalid queue name %q: it is %d characters long; it must be 3 to 63", name, n)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("invalid queue name %q: uppercase %q at position %d; queue names must be lowercase", name, c, i)
		default:
			return fmt.Errorf("invalid queue name %q: %q at position %d; only lowercase letters, digits and '-' are allowed", name, c, i)
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("invalid queue name %q: it must start and end with a letter or digit, not '-'", name)
	}
	if strings.Contains(name, "--") {
		return fmt.Errorf("invalid queue name %q: it must not contain consecutive hyphens (\"--\")", name)
	}
	return nil
}

func (r *resolved) client() (*azqueue.ServiceClient, error) {
	switch r.Auth {
	case storageconn.SharedKey:
		cred, err := azqueue.NewSharedKeyCredential(r.Account, r.Key)
		if err != nil {
			// The underlying error is a base64 error; it holds no key,
			// but say it our own way to be sure.
			return nil, fmt.Errorf("connection %q (setting %s): AccountKey is not valid base64", r.Connection, r.Setting)
		}
		c, err := azqueue.NewServiceClientWithSharedKeyCredential(r.ServiceURL, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): cannot create a queue client", r.Connection, r.Setting)
		}
		return c, nil
	case storageconn.SAS:
		c, err := azqueue.NewServiceClientWithNoCredential(r.ServiceURL+"?"+r.SAS, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): cannot create a queue client", r.Connection, r.Setting)
		}
		return c, nil
	default:
		cred, err := r.IdentityCredential()
		if err != nil {
			return nil, err
		}
		c, err := azqueue.NewServiceClient(r.ServiceURL, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): cannot create a queue client: %w", r.Connection, r.Setting, err)
		}
		return c, nil
	}
}

// resolved is a connection resolved from settings. It holds secrets: never
// format it into an error.
type resolved struct{ storageconn.Conn }

// resolve finds the settings for a connection and parses them, the service
// URL ending in a slash as azqueue wants it.
func resolve(connection string, lookup Lookup) (*resolved, error) {
	c, err := storageconn.Resolve(connection, lookup, storageconn.Queue)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(c.ServiceURL, "/") {
		c.ServiceURL += "/"
	}
	return &resolved{*c}, nil
}
