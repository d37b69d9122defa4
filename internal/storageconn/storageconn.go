// Package storageconn resolves Azure Storage connections from app settings
// the way Azure Functions does, for the drivers of one storage service each
// (the queue trigger, the table operation store).
//
// It parses connection strings and identity-based settings into the
// account, its credential (an account key, a shared access signature or
// azidentity's DefaultAzureCredential) and the endpoint of the service a
// driver asks for; the driver builds its own SDK client from them.
//
// Errors name the connection and the settings involved but never hold a
// connection string, account key or shared access signature. A Conn holds
// secrets: never format it into an error or a log.
package storageconn

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// DefaultConnection is the connection name used when none is given, as in
// Azure Functions (it resolves to the AzureWebJobsStorage setting).
const DefaultConnection = "Storage"

// Azurite's well-known development account, its public key (the same for
// every Azurite) and its endpoints on the default ports, which
// UseDevelopmentStorage=true stands for.
const (
	DevelopmentAccount       = "devstoreaccount1"
	DevelopmentKey           = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	DevelopmentQueueEndpoint = "http://127.0.0.1:10001/" + DevelopmentAccount
	DevelopmentTableEndpoint = "http://127.0.0.1:10002/" + DevelopmentAccount
	DevelopmentBlobEndpoint  = "http://127.0.0.1:10000/" + DevelopmentAccount
)

// Service is a storage service, as it appears in host names
// (<account>.queue.core.windows.net) and settings (QueueEndpoint,
// <name>__queueServiceUri).
type Service string

// The services the drivers use.
const (
	Queue Service = "queue"
	Table Service = "table"
	Blob  Service = "blob"
)

// endpointKey is the service's connection string key, such as
// "QueueEndpoint".
func (s Service) endpointKey() string {
	if s == "" {
		return "Endpoint"
	}
	return strings.ToUpper(string(s[:1])) + string(s[1:]) + "Endpoint"
}

// developmentEndpoint is Azurite's endpoint for the service.
func (s Service) developmentEndpoint() string {
	switch s {
	case Table:
		return DevelopmentTableEndpoint
	case Blob:
		return DevelopmentBlobEndpoint
	}
	return DevelopmentQueueEndpoint
}

// Lookup reads one app setting by name; ok is false when it is not set.
type Lookup = func(name string) (value string, ok bool)

// Auth is how a connection authenticates.
type Auth int

// The ways a connection authenticates.
const (
	SharedKey Auth = iota // AccountName and AccountKey
	SAS                   // a SharedAccessSignature
	Identity              // azidentity's DefaultAzureCredential
)

// String returns "shared key", "SAS" or "identity", for descriptions.
func (a Auth) String() string {
	switch a {
	case SharedKey:
		return "shared key"
	case SAS:
		return "SAS"
	default:
		return "identity"
	}
}

// Conn is a resolved connection. It holds secrets: never format it into an
// error, but for Connection, Setting and ServiceURL.
type Conn struct {
	Connection string // the connection name, when resolved from settings
	Setting    string // the setting it came from, when resolved from settings

	// ServiceURL is the service's endpoint without a query, fragment or
	// user info: the endpoint given (QueueEndpoint, <name>__queueServiceUri,
	// as written), or one derived from the account, without a trailing
	// slash. Drivers normalise the trailing slash as their SDK wants.
	ServiceURL string

	Auth    Auth
	Account string // empty for a SAS or an identity-based service URI
	Key     string // the account key (SharedKey)
	SAS     string // the shared access signature, without a leading '?' (SAS)
}

// ConnectionStringError is a connection string that does not parse. Reason
// says why, and never holds the string.
type ConnectionStringError struct {
	Connection string // empty when the string was not resolved from settings
	Setting    string
	Reason     string
}

// Error returns "connection "Storage": setting AzureWebJobsStorage holds an
// invalid connection string: <reason>", or "invalid connection string:
// <reason>" when the string did not come from a setting.
func (e *ConnectionStringError) Error() string {
	if e.Setting == "" {
		return "invalid connection string: " + e.Reason
	}
	return fmt.Sprintf("connection %q: setting %s holds an invalid connection string: %s", e.Connection, e.Setting, e.Reason)
}

// Resolve finds the settings for a connection to svc and parses them.
//
// The connection name defaults to DefaultConnection. The settings
// AzureWebJobs<name> and then <name> are looked up (a name that already
// starts with AzureWebJobs is looked up only as it is); a non-empty value
// is a connection string (see Parse). Otherwise the connection is
// identity-based: <name>__<svc>ServiceUri, or <name>__accountName (meaning
// https://<account>.<svc>.core.windows.net), the AzureWebJobs<name>__ forms
// first. A nil lookup reads environment variables (LookupEnv).
//
// A connection string that does not parse is a *ConnectionStringError.
func Resolve(connection string, lookup Lookup, svc Service) (*Conn, error) {
	name := strings.TrimSpace(connection)
	if name == "" {
		name = DefaultConnection
	}
	if lookup == nil {
		lookup = LookupEnv
	}
	get := func(key string) string {
		v, ok := lookup(key)
		if !ok {
			return ""
		}
		return strings.TrimSpace(v)
	}

	var tried []string
	for _, prefix := range []string{"AzureWebJobs" + name, name} {
		if prefix == "AzureWebJobs"+name && strings.HasPrefix(name, "AzureWebJobs") {
			// The user already named the full setting; don't try
			// AzureWebJobsAzureWebJobs...
			continue
		}
		tried = append(tried, prefix)
		if v := get(prefix); v != "" {
			c, err := Parse(v, svc)
			if err != nil {
				var cse *ConnectionStringError
				if errors.As(err, &cse) {
					cse.Connection, cse.Setting = name, prefix
				}
				return nil, err
			}
			c.Connection, c.Setting = name, prefix
			return c, nil
		}
		uriKey, accountKey := prefix+"__"+string(svc)+"ServiceUri", prefix+"__accountName"
		tried = append(tried, uriKey, accountKey)
		if v := get(uriKey); v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("connection %q: setting %s is not an http(s) URL", name, uriKey)
			}
			if u.RawQuery != "" || u.User != nil {
				return nil, fmt.Errorf("connection %q: setting %s must be a plain service URL, without a query or credentials (put a SAS in a connection string instead)", name, uriKey)
			}
			return &Conn{Connection: name, Setting: uriKey, ServiceURL: u.String(), Auth: Identity}, nil
		}
		if v := get(accountKey); v != "" {
			if !ValidAccountName(v) {
				return nil, fmt.Errorf("connection %q: setting %s is not a storage account name (3-24 lowercase letters and digits)", name, accountKey)
			}
			return &Conn{Connection: name, Setting: accountKey, ServiceURL: "https://" + v + "." + string(svc) + ".core.windows.net",
				Auth: Identity, Account: v}, nil
		}
	}
	return nil, fmt.Errorf("connection %q: none of %s is set", name, strings.Join(tried, ", "))
}

// IsDevelopmentStorage reports whether cs says UseDevelopmentStorage=true
// (keys and values case-insensitive; a DevelopmentStorageProxyUri, or
// anything else, is ignored).
func IsDevelopmentStorage(cs string) bool {
	for _, part := range strings.Split(cs, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "UseDevelopmentStorage") &&
			strings.EqualFold(strings.TrimSpace(v), "true") {
			return true
		}
	}
	return false
}

// Parse parses a storage connection string (keys case-insensitive) for
// svc's endpoint, with errors (*ConnectionStringError) that never echo it.
//
// UseDevelopmentStorage=true means Azurite's development account on its
// default port. Otherwise the endpoint is the string's <Svc>Endpoint (such
// as QueueEndpoint), else
// DefaultEndpointsProtocol://<AccountName>.<svc>.<EndpointSuffix> (https
// and core.windows.net by default). It authenticates with AccountName and
// AccountKey, or a SharedAccessSignature.
func Parse(cs string, svc Service) (*Conn, error) {
	if IsDevelopmentStorage(cs) {
		return &Conn{ServiceURL: svc.developmentEndpoint(), Auth: SharedKey, Account: DevelopmentAccount, Key: DevelopmentKey}, nil
	}
	fail := func(format string, args ...any) (*Conn, error) {
		return nil, &ConnectionStringError{Reason: fmt.Sprintf(format, args...)}
	}
	kv := map[string]string{}
	for _, part := range strings.Split(strings.TrimRight(strings.TrimSpace(cs), ";"), ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fail("expected Key=Value pairs separated by ';'")
		}
		kv[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if len(kv) == 0 {
		return fail("it is empty")
	}
	c := &Conn{Account: kv["accountname"]}
	protocol := kv["defaultendpointsprotocol"]
	if protocol == "" {
		protocol = "https"
	}
	suffix := kv["endpointsuffix"]
	if suffix == "" {
		suffix = "core.windows.net"
	}
	endpointKey := svc.endpointKey()
	if ep := kv[strings.ToLower(endpointKey)]; ep != "" {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fail("%s is not an http(s) URL", endpointKey)
		}
		u.RawQuery, u.ForceQuery, u.Fragment, u.User = "", false, "", nil
		c.ServiceURL = u.String()
	} else if c.Account != "" {
		if protocol != "http" && protocol != "https" {
			return fail("DefaultEndpointsProtocol must be http or https")
		}
		if strings.ContainsAny(suffix, "/?#@ ") {
			return fail("EndpointSuffix is not a domain")
		}
		c.ServiceURL = protocol + "://" + c.Account + "." + string(svc) + "." + suffix
	} else {
		return fail("it needs AccountName or %s", endpointKey)
	}
	key, sas := kv["accountkey"], strings.TrimPrefix(kv["sharedaccesssignature"], "?")
	switch {
	case c.Account != "" && key != "":
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			return fail("AccountKey is not valid base64")
		}
		c.Auth, c.Key = SharedKey, key
	case sas != "":
		if _, err := url.ParseQuery(sas); err != nil {
			return fail("SharedAccessSignature is not a valid query string")
		}
		c.Auth, c.SAS = SAS, sas
	case key != "":
		return fail("AccountKey needs AccountName")
	default:
		return fail("it needs AccountKey or SharedAccessSignature")
	}
	return c, nil
}

// IdentityCredential returns azidentity's DefaultAzureCredential for an
// identity-based connection, with an error naming the connection and its
// setting.
func (c *Conn) IdentityCredential() (azcore.TokenCredential, error) {
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("connection %q (setting %s): identity-based connection: %w", c.Connection, c.Setting, err)
	}
	return cred, nil
}

// Describe returns a one-line, secret-free description of where the
// connection leads, such as "http://127.0.0.1:10001/devstoreaccount1
// (shared key)": the service URL without a trailing slash and how it
// authenticates.
func (c *Conn) Describe() string {
	return strings.TrimSuffix(c.ServiceURL, "/") + " (" + c.Auth.String() + ")"
}

// ValidAccountName reports whether s is a storage account name: 3 to 24
// lowercase letters and digits.
func ValidAccountName(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// LookupEnv is the default Lookup: environment variables, exact name first,
// then case-insensitively (app setting names are case-insensitive).
func LookupEnv(name string) (string, bool) {
	if v, ok := os.LookupEnv(name); ok {
		return v, true
	}
	for _, e := range os.Environ() {
		k, v, ok := strings.Cut(e, "=")
		if ok && strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}
