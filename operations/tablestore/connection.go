package tablestore

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// DefaultConnection is the connection name used when none is given, as in
// Azure Functions and the queue driver (it resolves to the
// AzureWebJobsStorage setting).
const DefaultConnection = "Storage"

// DevelopmentTableEndpoint is the table endpoint UseDevelopmentStorage=true
// stands for: Azurite's well-known account on its default table port.
const DevelopmentTableEndpoint = "http://127.0.0.1:10002/devstoreaccount1"

// Azurite's well-known account and its public development key.
const (
	devAccount = "devstoreaccount1"
	devKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

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
	if !ep.identity {
		return ep.client(o)
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("tablestore: connection %q (setting %s): identity-based connection: %w", ep.name, ep.setting, err)
	}
	c, err := aztables.NewServiceClient(ep.serviceURL, cred, o)
	if err != nil {
		return nil, fmt.Errorf("tablestore: connection %q (setting %s): cannot create a table client: %w", ep.name, ep.setting, err)
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
	auth := "shared key"
	switch {
	case ep.identity:
		auth = "identity"
	case ep.sas != "":
		auth = "SAS"
	}
	return strings.TrimSuffix(ep.serviceURL, "/") + " (" + auth + ")"
}

// resolve finds the settings for a connection and parses them.
func resolve(connection string, lookup Lookup) (*endpoint, error) {
	name := strings.TrimSpace(connection)
	if name == "" {
		name = DefaultConnection
	}
	if lookup == nil {
		lookup = lookupEnv
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
			continue // the full setting name was given
		}
		tried = append(tried, prefix)
		if v := get(prefix); v != "" {
			ep, err := parseConnectionString(v)
			if err != nil {
				return nil, fmt.Errorf("tablestore: connection %q (setting %s): %s", name, prefix, strings.TrimPrefix(err.Error(), "tablestore: "))
			}
			ep.name, ep.setting = name, prefix
			return ep, nil
		}
		uriKey, accountKey := prefix+"__tableServiceUri", prefix+"__accountName"
		tried = append(tried, uriKey, accountKey)
		if v := get(uriKey); v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("tablestore: connection %q: setting %s is not an http(s) URL", name, uriKey)
			}
			if u.RawQuery != "" || u.User != nil {
				return nil, fmt.Errorf("tablestore: connection %q: setting %s must be a plain service URL, without a query or credentials (put a SAS in a connection string instead)", name, uriKey)
			}
			return &endpoint{name: name, setting: uriKey, serviceURL: strings.TrimSuffix(u.String(), "/"), identity: true}, nil
		}
		if v := get(accountKey); v != "" {
			if !validAccountName(v) {
				return nil, fmt.Errorf("tablestore: connection %q: setting %s is not a storage account name (3-24 lowercase letters and digits)", name, accountKey)
			}
			return &endpoint{name: name, setting: accountKey, serviceURL: "https://" + v + ".table.core.windows.net", identity: true, account: v}, nil
		}
	}
	return nil, fmt.Errorf("tablestore: connection %q: none of %s is set", name, strings.Join(tried, ", "))
}

// NewServiceClientFromConnectionString returns a table service client for
// a storage connection string (keys case-insensitive). The endpoint is its
// TableEndpoint, else DefaultEndpointsProtocol://<AccountName>.table.<EndpointSuffix>
// (https and core.windows.net by default); UseDevelopmentStorage=true means
// the local Azurite (DevelopmentTableEndpoint). It authenticates with
// AccountName and AccountKey, or a SharedAccessSignature. Errors never
// repeat the connection string.
func NewServiceClientFromConnectionString(conn string, o *aztables.ClientOptions) (*aztables.ServiceClient, error) {
	ep, err := parseConnectionString(conn)
	if err != nil {
		return nil, err
	}
	return ep.client(o)
}

// client returns a service client for a connection string's endpoint.
func (ep *endpoint) client(o *aztables.ClientOptions) (*aztables.ServiceClient, error) {
	fail := func() (*aztables.ServiceClient, error) {
		return nil, fmt.Errorf("tablestore: cannot create a table client for %s", ep.serviceURL)
	}
	if ep.sas != "" {
		c, err := aztables.NewServiceClientWithNoCredential(ep.serviceURL+"?"+ep.sas, o)
		if err != nil {
			return fail()
		}
		return c, nil
	}
	cred, err := aztables.NewSharedKeyCredential(ep.account, ep.key)
	if err != nil {
		return fail()
	}
	c, err := aztables.NewServiceClientWithSharedKey(ep.serviceURL, cred, o)
	if err != nil {
		return fail()
	}
	return c, nil
}

// endpoint is a parsed connection string. It holds secrets: never format it
// into an error, but for serviceURL.
type endpoint struct {
	name, setting string // the connection and the setting it came from, if resolved
	identity      bool   // authenticate with DefaultAzureCredential
	serviceURL    string // without a query or a trailing slash
	account       string
	key           string
	sas           string
}

// parseConnectionString parses a storage connection string for its table
// endpoint, with errors that never echo it.
func parseConnectionString(cs string) (*endpoint, error) {
	fail := func(format string, args ...any) (*endpoint, error) {
		return nil, fmt.Errorf("tablestore: invalid connection string: "+format, args...)
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
	if strings.EqualFold(kv["usedevelopmentstorage"], "true") {
		return &endpoint{serviceURL: DevelopmentTableEndpoint, account: devAccount, key: devKey}, nil
	}
	ep := &endpoint{account: kv["accountname"]}
	protocol := kv["defaultendpointsprotocol"]
	if protocol == "" {
		protocol = "https"
	}
	suffix := kv["endpointsuffix"]
	if suffix == "" {
		suffix = "core.windows.net"
	}
	if v := kv["tableendpoint"]; v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fail("TableEndpoint is not an http(s) URL")
		}
		u.RawQuery, u.ForceQuery, u.Fragment, u.User = "", false, "", nil
		ep.serviceURL = strings.TrimSuffix(u.String(), "/")
	} else if ep.account != "" {
		if protocol != "http" && protocol != "https" {
			return fail("DefaultEndpointsProtocol must be http or https")
		}
		if strings.ContainsAny(suffix, "/?#@ ") {
			return fail("EndpointSuffix is not a domain")
		}
		ep.serviceURL = protocol + "://" + ep.account + ".table." + suffix
	} else {
		return fail("it needs AccountName or TableEndpoint")
	}
	key, sas := kv["accountkey"], strings.TrimPrefix(kv["sharedaccesssignature"], "?")
	switch {
	case ep.account != "" && key != "":
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			return fail("AccountKey is not valid base64")
		}
		ep.key = key
	case sas != "":
		if _, err := url.ParseQuery(sas); err != nil {
			return fail("SharedAccessSignature is not a valid query string")
		}
		ep.sas = sas
	case key != "":
		return fail("AccountKey needs AccountName")
	default:
		return fail("it needs AccountKey or SharedAccessSignature")
	}
	return ep, nil
}

func validAccountName(s string) bool {
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

// lookupEnv is the default Lookup: environment variables, exact name first,
// then case-insensitively.
func lookupEnv(name string) (string, bool) {
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
