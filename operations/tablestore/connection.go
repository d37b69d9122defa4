package tablestore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/jobhost/jobhost/internal/storageconn"
)

// DefaultConnection is the connection name used when none is given, as in
// Azure Functions and the queue driver (it resolves to the
// AzureWebJobsStorage setting).
const DefaultConnection = storageconn.DefaultConnection

// DevelopmentTableEndpoint is the table endpoint UseDevelopmentStorage=true
// stands for: Azurite's well-known account on its default table port.
const DevelopmentTableEndpoint = storageconn.DevelopmentTableEndpoint

// Lookup reads one app setting by name; ok is false when it is not set. A
// nil Lookup reads environment variables (exact name first, then a
// case-insensitive match). An azurequeue.Lookup can be passed as it is.
type Lookup = func(name string) (value string, ok bool)

// NewServiceClient resolves a connection the way the queue driver
// (azurequeue.NewServiceClient) and Azure Functions do, and returns a table
// service client for it.
//
// The connection name defaults to "Storage". The settings
// AzureWebJobs<name> and then <name> are looked up; a non-empty value is a
// connection string (see NewServiceClientFromConnectionString). Otherwise
// the connection is identity-based: <name>__tableServiceUri, or
// <name>__accountName (meaning https://<account>.table.core.windows.net/),
// authenticated with azidentity's DefaultAzureCredential; the
// AzureWebJobs<name>__ forms take precedence.
//
// Errors name the settings involved but never hold a connection string,
// account key or shared access signature.
func NewServiceClient(connection string, lookup Lookup, o *aztables.ClientOptions) (*aztables.ServiceClient, error) {
	ep, err := resolve(connection, lookup)
	if err != nil {
		return nil, err
	}
	if ep.Auth != storageconn.Identity {
		return ep.client(o)
	}
	cred, err := ep.IdentityCredential()
	if err != nil {
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	c, err := aztables.NewServiceClient(ep.ServiceURL, cred, o)
	if err != nil {
		return nil, fmt.Errorf("tablestore: connection %q (setting %s): cannot create a table client: %w", ep.Connection, ep.Setting, err)
	}
	return c, nil
}

// Describe returns a one-line, secret-free description of where a
// connection leads, such as "http://127.0.0.1:10002/devstoreaccount1
// (shared key)", for listings and logs. When the connection cannot be
// resolved it describes the problem instead.
func Describe(connection string, lookup Lookup) string {
	ep, err := resolve(connection, lookup)
	if err != nil {
		return "unresolved: " + err.Error()
	}
	return ep.Describe()
}

// resolve finds the settings for a connection and parses them, the service
// URL without a trailing slash.
func resolve(connection string, lookup Lookup) (*endpoint, error) {
	c, err := storageconn.Resolve(connection, lookup, storageconn.Table)
	if err != nil {
		var cse *storageconn.ConnectionStringError
		if errors.As(err, &cse) {
			return nil, fmt.Errorf("tablestore: connection %q (setting %s): invalid connection string: %s", cse.Connection, cse.Setting, cse.Reason)
		}
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	return newEndpoint(c), nil
}

// NewServiceClientFromConnectionString returns a table service client for
// a storage connection string (keys case-insensitive). The endpoint is its
// TableEndpoint, else DefaultEndpointsProtocol://<AccountName>.table.<EndpointSuffix>
// (https and core.windows.net by default); UseDevelopmentStorage=true means
// the local Azurite (DevelopmentTableEndpoint). It authenticates with
// AccountName and AccountKey, or a SharedAccessSignature. Errors never
// repeat the connection string.
func NewServiceClientFromConnectionString(conn string, o *aztables.ClientOptions) (*aztables.ServiceClient, error) {
	c, err := storageconn.Parse(conn, storageconn.Table)
	if err != nil {
		return nil, fmt.Errorf("tablestore: %w", err)
	}
	return newEndpoint(c).client(o)
}

// client returns a service client for a connection string's endpoint.
func (ep *endpoint) client(o *aztables.ClientOptions) (*aztables.ServiceClient, error) {
	fail := func() (*aztables.ServiceClient, error) {
		return nil, fmt.Errorf("tablestore: cannot create a table client for %s", ep.ServiceURL)
	}
	if ep.Auth == storageconn.SAS {
		c, err := aztables.NewServiceClientWithNoCredential(ep.ServiceURL+"?"+ep.SAS, o)
		if err != nil {
			return fail()
		}
		return c, nil
	}
	cred, err := aztables.NewSharedKeyCredential(ep.Account, ep.Key)
	if err != nil {
		return fail()
	}
	c, err := aztables.NewServiceClientWithSharedKey(ep.ServiceURL, cred, o)
	if err != nil {
		return fail()
	}
	return c, nil
}

// endpoint is a resolved or parsed connection, its service URL without a
// query or a trailing slash. It holds secrets: never format it into an
// error, but for ServiceURL, Connection and Setting.
type endpoint struct{ storageconn.Conn }

// newEndpoint trims the trailing slash off c's service URL.
func newEndpoint(c *storageconn.Conn) *endpoint {
	c.ServiceURL = strings.TrimSuffix(c.ServiceURL, "/")
	return &endpoint{*c}
}
