package azurequeue_test

import (
	"strings"
	"testing"

	"github.com/jobhost/jobhost/triggers/azurequeue"
)

// Secrets used in test settings; no error or description may contain them.
const (
	secretKey = "c2VjcmV0LWtleS1TRUNSRVRLRVk=" // valid base64 (of "secret-key-SECRETKEY")
	secretSig = "SECRETSIG0123"
)

var secrets = []string{secretKey, secretSig, "SECRETKEY", "SECRETJUNK"}

func settings(kv ...string) azurequeue.Lookup {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s leaks a secret (%q): %s", what, s, text)
		}
	}
}

func TestNewServiceClientResolution(t *testing.T) {
	sharedKey := "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + secretKey + ";EndpointSuffix=core.windows.net"
	tests := []struct {
		name       string
		connection string
		lookup     azurequeue.Lookup
		wantURL    string
		describe   string
	}{
		{"default name uses AzureWebJobsStorage", "", settings("AzureWebJobsStorage", sharedKey),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (shared key)"},
		{"plain name as fallback", "Storage", settings("Storage", sharedKey),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (shared key)"},
		{"AzureWebJobs prefix wins", "MyConn", settings(
			"AzureWebJobsMyConn", "AccountName=first;AccountKey="+secretKey,
			"MyConn", "AccountName=second;AccountKey="+secretKey),
			"https://first.queue.core.windows.net/", "https://first.queue.core.windows.net (shared key)"},
		{"full setting name", "AzureWebJobsStorage", settings("AzureWebJobsStorage", sharedKey),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (shared key)"},
		{"development storage", "", settings("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
			"http://127.0.0.1:10001/devstoreaccount1/", "http://127.0.0.1:10001/devstoreaccount1 (shared key)"},
		{"development storage, any case, with proxy", "", settings("AzureWebJobsStorage", "usedevelopmentstorage=TRUE;DevelopmentStorageProxyUri=http://ipv4.fiddler"),
			"http://127.0.0.1:10001/devstoreaccount1/", "http://127.0.0.1:10001/devstoreaccount1 (shared key)"},
		{"queue endpoint, case-insensitive keys", "", settings("AzureWebJobsStorage", "accountname=acct;accountkey="+secretKey+";queueendpoint=http://localhost:9999/acct;"),
			"http://localhost:9999/acct/", "http://localhost:9999/acct (shared key)"},
		{"SAS", "", settings("AzureWebJobsStorage", "QueueEndpoint=https://acct.queue.core.windows.net;SharedAccessSignature=sv=2022-11-02&ss=q&sig="+secretSig),
			"https://acct.queue.core.windows.net/?sv=2022-11-02&ss=q&sig=" + secretSig, "https://acct.queue.core.windows.net (SAS)"},
		{"identity: queueServiceUri", "Storage", settings("Storage__queueServiceUri", "https://acct.queue.core.windows.net"),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (identity)"},
		{"identity: accountName", "Storage", settings("Storage__accountName", "acct"),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (identity)"},
		{"identity: AzureWebJobs prefix", "", settings("AzureWebJobsStorage__accountName", "acct"),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (identity)"},
		{"connection string wins over identity", "", settings("Storage__accountName", "other", "Storage", sharedKey),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (shared key)"},
		{"blank value falls through", "", settings("AzureWebJobsStorage", "  ", "Storage", sharedKey),
			"https://acct.queue.core.windows.net/", "https://acct.queue.core.windows.net (shared key)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := azurequeue.NewServiceClient(tc.connection, tc.lookup)
			if err != nil {
				t.Fatalf("NewServiceClient: %v", err)
			}
			if c.URL() != tc.wantURL {
				t.Errorf("URL() = %q, want %q", c.URL(), tc.wantURL)
			}
			got := azurequeue.Describe(tc.connection, tc.lookup)
			if got != tc.describe {
				t.Errorf("Describe = %q, want %q", got, tc.describe)
			}
			assertNoSecret(t, "Describe", got)
		})
	}
}

func TestNewServiceClientEnvLookup(t *testing.T) {
	t.Setenv("AZUREWEBJOBSENVCONN", "UseDevelopmentStorage=true") // names are case-insensitive
	c, err := azurequeue.NewServiceClient("EnvConn", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL() != "http://127.0.0.1:10001/devstoreaccount1/" {
		t.Errorf("URL() = %q", c.URL())
	}
}

func TestNewServiceClientErrors(t *testing.T) {
	tests := []struct {
		name       string
		connection string
		lookup     azurequeue.Lookup
		want       string // substring of the error
	}{
		{"nothing set", "", settings(),
			`connection "Storage": none of AzureWebJobsStorage, AzureWebJobsStorage__queueServiceUri, AzureWebJobsStorage__accountName, Storage, Storage__queueServiceUri, Storage__accountName is set`},
		{"nothing set, named", "Orders", settings(),
			`connection "Orders": none of AzureWebJobsOrders, AzureWebJobsOrders__queueServiceUri, AzureWebJobsOrders__accountName, Orders, Orders__queueServiceUri, Orders__accountName is set`},
		{"not key=value", "", settings("AzureWebJobsStorage", "SECRETJUNK"),
			"setting AzureWebJobsStorage holds an invalid connection string: expected Key=Value pairs"},
		{"bad base64 key", "", settings("AzureWebJobsStorage", "AccountName=a1b;AccountKey=SECRETKEY!!!"),
			"AccountKey is not valid base64"},
		{"no endpoint", "", settings("AzureWebJobsStorage", "SharedAccessSignature=sig="+secretSig),
			"it needs AccountName or QueueEndpoint"},
		{"no credential", "", settings("AzureWebJobsStorage", "AccountName=acct"),
			"it needs AccountKey or SharedAccessSignature"},
		{"key without account", "", settings("AzureWebJobsStorage", "QueueEndpoint=https://x.example;AccountKey="+secretKey),
			"AccountKey needs AccountName"},
		{"bad endpoint", "", settings("AzureWebJobsStorage", "QueueEndpoint=SECRETJUNK;AccountName=acct;AccountKey="+secretKey),
			"QueueEndpoint is not an http(s) URL"},
		{"bad queueServiceUri", "", settings("Storage__queueServiceUri", "SECRETJUNK"),
			"setting Storage__queueServiceUri is not an http(s) URL"},
		{"SAS in queueServiceUri", "", settings("Storage__queueServiceUri", "https://acct.queue.core.windows.net/?sig="+secretSig),
			"must be a plain service URL"},
		{"bad accountName", "", settings("Storage__accountName", "SECRETJUNK"),
			"setting Storage__accountName is not a storage account name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := azurequeue.NewServiceClient(tc.connection, tc.lookup)
			if err == nil {
				t.Fatal("NewServiceClient succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			assertNoSecret(t, "error", err.Error())
			d := azurequeue.Describe(tc.connection, tc.lookup)
			if !strings.HasPrefix(d, "unresolved: ") {
				t.Errorf("Describe = %q, want an unresolved description", d)
			}
			assertNoSecret(t, "Describe", d)
		})
	}
}

func TestExpandDevelopmentStorage(t *testing.T) {
	dev := azurequeue.DevelopmentStorageConnectionString
	for in, want := range map[string]string{
		"UseDevelopmentStorage=true":  dev,
		"usedevelopmentstorage=True;": dev,
		"UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://ipv4.fiddler": dev,
		" UseDevelopmentStorage = true ":                                            dev,
		"UseDevelopmentStorage=false":                                               "UseDevelopmentStorage=false",
		"AccountName=a;AccountKey=b":                                                "AccountName=a;AccountKey=b",
		"":                                                                          "",
	} {
		if got := azurequeue.ExpandDevelopmentStorage(in); got != want {
			t.Errorf("ExpandDevelopmentStorage(%q) = %q, want %q", in, got, want)
		}
	}
	if !strings.Contains(dev, "AccountName=devstoreaccount1;") || !strings.Contains(dev, "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1") {
		t.Errorf("unexpected development connection string %q", dev)
	}
}

func TestValidateQueueName(t *testing.T) {
	for _, ok := range []string{"abc", "orders", "a-b-c", "q12", "123", strings.Repeat("a", 63), "orders-poison"} {
		if err := azurequeue.ValidateQueueName(ok); err != nil {
			t.Errorf("ValidateQueueName(%q) = %v, want nil", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                      "it must be 3 to 63",
		"ab":                    "it is 2 characters long; it must be 3 to 63",
		strings.Repeat("a", 64): "it is 64 characters long",
		"Orders":                "must be lowercase",
		"or_ders":               "only lowercase letters, digits and '-'",
		"ord ers":               "only lowercase letters, digits and '-'",
		"-orders":               "must start and end with a letter or digit",
		"orders-":               "must start and end with a letter or digit",
		"or--ders":              "consecutive hyphens",
		"ördérs":                "only lowercase letters",
	} {
		err := azurequeue.ValidateQueueName(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateQueueName(%q) = %v, want an error containing %q", name, err, want)
		}
	}
}

func TestPoisonQueueName(t *testing.T) {
	for in, want := range map[string]string{
		"orders":                "orders-poison",
		"orders-poison":         "",
		strings.Repeat("a", 56): strings.Repeat("a", 56) + "-poison",
		strings.Repeat("a", 57): "",
		"":                      "",
	} {
		if got := azurequeue.PoisonQueueName(in); got != want {
			t.Errorf("PoisonQueueName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		`Get "https://acct.queue.core.windows.net/q/messages?sv=1&sig=` + secretSig + `": dial tcp: refused`: `Get "https://acct.queue.core.windows.net/q/messages?REDACTED": dial tcp: refused`,
		"AccountName=a;AccountKey=" + secretKey + ";x=y":                                                     "AccountName=a;AccountKey=REDACTED;x=y",
		"token sig=" + secretSig + " end":                                                                    "token sig=REDACTED end",
		"nothing secret here":                                                                                "nothing secret here",
	} {
		got := azurequeue.Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		assertNoSecret(t, "Redact", got)
	}
}

// TestNewServiceClientErrorMessages pins whole error messages, as users see
// them.
func TestNewServiceClientErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		lookup azurequeue.Lookup
		want   string
	}{
		{settings("AzureWebJobsStorage", "AccountName=acct"),
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: it needs AccountKey or SharedAccessSignature`},
		{settings("Storage__accountName", "No"),
			`connection "Storage": setting Storage__accountName is not a storage account name (3-24 lowercase letters and digits)`},
	} {
		if _, err := azurequeue.NewServiceClient("", tc.lookup); err == nil || err.Error() != tc.want {
			t.Errorf("error = %v,\nwant %s", err, tc.want)
		}
	}
	c, err := azurequeue.NewServiceClient("", settings("Storage__queueServiceUri", "http://127.0.0.1:10001/acct"))
	if err != nil || c.URL() != "http://127.0.0.1:10001/acct/" {
		t.Errorf("NewServiceClient(queueServiceUri) = %v, %v", c, err)
	}
}
