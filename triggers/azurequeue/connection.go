package azurequeue

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue"
)

// DefaultConnection is the connection name used when none is given, as in
// Azure Functions (it resolves to the AzureWebJobsStorage setting).
const DefaultConnection = "Storage"

// DevelopmentStorageConnectionString is the connection string that
// UseDevelopmentStorage=true stands for: Azurite's well-known account on its
// default queue port. The key is public and the same for every Azurite.
const DevelopmentStorageConnectionString = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
	"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
	"QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1"

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
	return strings.TrimSuffix(r.serviceURL, "/") + " (" + r.auth.String() + ")"
}

// ExpandDevelopmentStorage returns Azurite's well-known connection string
// (DevelopmentStorageConnectionString) when cs says UseDevelopmentStorage=true
// (case-insensitive; a DevelopmentStorageProxyUri is ignored), and cs
// unchanged otherwise.
func ExpandDevelopmentStorage(cs string) string {
	for _, part := range strings.Split(cs, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "UseDevelopmentStorage") &&
			strings.EqualFold(strings.TrimSpace(v), "true") {
			return DevelopmentStorageConnectionString
		}
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

// authKind is how a resolved connection authenticates.
type authKind int

const (
	authSharedKey authKind = iota
	authSAS
	authIdentity
)

func (a authKind) String() string {
	switch a {
	case authSharedKey:
		return "shared key"
	case authSAS:
		return "SAS"
	default:
		return "identity"
	}
}

// resolved is a connection resolved from settings. It holds secrets: never
// format it into an error.
type resolved struct {
	name       string // connection name
	setting    string // the setting the connection came from
	serviceURL string // without any SAS
	auth       authKind
	account    string
	key        string
	sas        string
}

func (r *resolved) client() (*azqueue.ServiceClient, error) {
	switch r.auth {
	case authSharedKey:
		cred, err := azqueue.NewSharedKeyCredential(r.account, r.key)
		if err != nil {
			// The underlying error is a base64 error; it holds no key,
			// but say it our own way to be sure.
			return nil, fmt.Errorf("connection %q (setting %s): AccountKey is not valid base64", r.name, r.setting)
		}
		c, err := azqueue.NewServiceClientWithSharedKeyCredential(r.serviceURL, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): cannot create a queue client", r.name, r.setting)
		}
		return c, nil
	case authSAS:
		c, err := azqueue.NewServiceClientWithNoCredential(r.serviceURL+"?"+r.sas, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): cannot create a queue client", r.name, r.setting)
		}
		return c, nil
	default:
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): identity-based connection: %w", r.name, r.setting, err)
		}
		c, err := azqueue.NewServiceClient(r.serviceURL, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %q (setting %s): cannot create a queue client: %w", r.name, r.setting, err)
		}
		return c, nil
	}
}

// resolve finds the settings for a connection and parses them.
func resolve(connection string, lookup Lookup) (*resolved, error) {
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
			// The user already named the full setting; don't try
			// AzureWebJobsAzureWebJobs...
			continue
		}
		tried = append(tried, prefix)
		if v := get(prefix); v != "" {
			return parseConnectionString(name, prefix, v)
		}
		uriKey, accountKey := prefix+"__queueServiceUri", prefix+"__accountName"
		tried = append(tried, uriKey, accountKey)
		if v := get(uriKey); v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("connection %q: setting %s is not an http(s) URL", name, uriKey)
			}
			if u.RawQuery != "" || u.User != nil {
				return nil, fmt.Errorf("connection %q: setting %s must be a plain service URL, without a query or credentials (put a SAS in a connection string instead)", name, uriKey)
			}
			return &resolved{name: name, setting: uriKey, serviceURL: withSlash(u.String()), auth: authIdentity}, nil
		}
		if v := get(accountKey); v != "" {
			if !validAccountName(v) {
				return nil, fmt.Errorf("connection %q: setting %s is not a storage account name (3-24 lowercase letters and digits)", name, accountKey)
			}
			return &resolved{name: name, setting: accountKey, serviceURL: "https://" + v + ".queue.core.windows.net/", auth: authIdentity, account: v}, nil
		}
	}
	return nil, fmt.Errorf("connection %q: none of %s is set", name, strings.Join(tried, ", "))
}

// parseConnectionString parses a storage connection string (keys
// case-insensitive) the way azqueue does, with errors that never echo it.
func parseConnectionString(name, setting, cs string) (*resolved, error) {
	cs = ExpandDevelopmentStorage(cs)
	fail := func(format string, args ...any) (*resolved, error) {
		return nil, fmt.Errorf("connection %q: setting %s holds an invalid connection string: "+format, append([]any{name, setting}, args...)...)
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
	r := &resolved{name: name, setting: setting}
	protocol := kv["defaultendpointsprotocol"]
	if protocol == "" {
		protocol = "https"
	}
	suffix := kv["endpointsuffix"]
	if suffix == "" {
		suffix = "core.windows.net"
	}
	r.account = kv["accountname"]
	if ep := kv["queueendpoint"]; ep != "" {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fail("QueueEndpoint is not an http(s) URL")
		}
		u.RawQuery, u.ForceQuery, u.Fragment, u.User = "", false, "", nil
		r.serviceURL = withSlash(u.String())
	} else if r.account != "" {
		if protocol != "http" && protocol != "https" {
			return fail("DefaultEndpointsProtocol must be http or https")
		}
		r.serviceURL = protocol + "://" + r.account + ".queue." + suffix + "/"
	} else {
		return fail("it needs AccountName or QueueEndpoint")
	}
	key, sas := kv["accountkey"], strings.TrimPrefix(kv["sharedaccesssignature"], "?")
	switch {
	case r.account != "" && key != "":
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			return fail("AccountKey is not valid base64")
		}
		r.auth, r.key = authSharedKey, key
	case sas != "":
		if _, err := url.ParseQuery(sas); err != nil {
			return fail("SharedAccessSignature is not a valid query string")
		}
		r.auth, r.sas = authSAS, sas
	case key != "":
		return fail("AccountKey needs AccountName")
	default:
		return fail("it needs AccountKey or SharedAccessSignature")
	}
	return r, nil
}

func withSlash(s string) string {
	if strings.HasSuffix(s, "/") {
		return s
	}
	return s + "/"
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
