package storageconn

import (
	"errors"
	"strings"
	"testing"
)

// settings is a Lookup of the name/value pairs kv.
func settings(kv ...string) Lookup {
	return func(name string) (string, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == name {
				return kv[i+1], true
			}
		}
		return "", false
	}
}

// The secrets in test settings: no error or description may hold them.
const secretKey, secretSig = "c2VjcmV0LWtleS1TRUNSRVRLRVk=", "SECRETSIG0123" // the key is base64 of "secret-key-SECRETKEY"

var secrets = []string{secretKey, secretSig, "SECRETKEY", "SECRETJUNK"}

// leaked returns the secret text holds, if any.
func leaked(text string) string {
	for _, s := range secrets {
		if strings.Contains(text, s) {
			return s
		}
	}
	return ""
}

func TestResolve(t *testing.T) {
	sharedKey := "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + secretKey + ";EndpointSuffix=core.windows.net"
	tests := []struct {
		name       string
		connection string
		lookup     Lookup
		svc        Service
		want       Conn
	}{
		{"default name uses AzureWebJobsStorage", "", settings("AzureWebJobsStorage", sharedKey), Queue,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "https://acct.queue.core.windows.net", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"table service", " Storage ", settings("AzureWebJobsStorage", sharedKey), Table,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "https://acct.table.core.windows.net", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"plain name as fallback", "Orders", settings("Orders", sharedKey), Queue,
			Conn{Connection: "Orders", Setting: "Orders", ServiceURL: "https://acct.queue.core.windows.net", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"AzureWebJobs prefix wins", "My", settings("AzureWebJobsMy", "AccountName=first;AccountKey="+secretKey, "My", "AccountName=second;AccountKey="+secretKey), Table,
			Conn{Connection: "My", Setting: "AzureWebJobsMy", ServiceURL: "https://first.table.core.windows.net", Auth: SharedKey, Account: "first", Key: secretKey}},
		{"full setting name", "AzureWebJobsStorage", settings("AzureWebJobsStorage", sharedKey), Queue,
			Conn{Connection: "AzureWebJobsStorage", Setting: "AzureWebJobsStorage", ServiceURL: "https://acct.queue.core.windows.net", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"development storage, queue", "", settings("AzureWebJobsStorage", "UseDevelopmentStorage=true"), Queue,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "http://127.0.0.1:10001/devstoreaccount1", Auth: SharedKey, Account: DevelopmentAccount, Key: DevelopmentKey}},
		{"development storage, table, any case, with proxy", "", settings("AzureWebJobsStorage", "usedevelopmentstorage=TRUE;DevelopmentStorageProxyUri=http://ipv4.fiddler"), Table,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "http://127.0.0.1:10002/devstoreaccount1", Auth: SharedKey, Account: DevelopmentAccount, Key: DevelopmentKey}},
		{"the service's own endpoint, case-insensitive keys", "", settings("AzureWebJobsStorage", "accountname=acct;accountkey="+secretKey+";queueendpoint=http://q:1/acct;tableendpoint=http://localhost:9999/acct/?x=1#f"), Table,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "http://localhost:9999/acct/", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"endpoint suffix and protocol", "", settings("AzureWebJobsStorage", "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey="+secretKey+";EndpointSuffix=core.chinacloudapi.cn"), Queue,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "http://acct.queue.core.chinacloudapi.cn", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"SAS", "", settings("AzureWebJobsStorage", "QueueEndpoint=https://acct.queue.core.windows.net;SharedAccessSignature=?sv=2022-11-02&sig="+secretSig), Queue,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage", ServiceURL: "https://acct.queue.core.windows.net", Auth: SAS, SAS: "sv=2022-11-02&sig=" + secretSig}},
		{"identity: service URI", "Storage", settings("Storage__tableServiceUri", "https://acct.table.core.windows.net/"), Table,
			Conn{Connection: "Storage", Setting: "Storage__tableServiceUri", ServiceURL: "https://acct.table.core.windows.net/", Auth: Identity}},
		{"identity: the other service's URI does not count", "", settings("Storage__tableServiceUri", "https://x", "Storage__accountName", "acct"), Queue,
			Conn{Connection: "Storage", Setting: "Storage__accountName", ServiceURL: "https://acct.queue.core.windows.net", Auth: Identity, Account: "acct"}},
		{"identity: AzureWebJobs prefix", "", settings("AzureWebJobsStorage__accountName", "acct", "Storage__accountName", "other"), Table,
			Conn{Connection: "Storage", Setting: "AzureWebJobsStorage__accountName", ServiceURL: "https://acct.table.core.windows.net", Auth: Identity, Account: "acct"}},
		{"connection string wins over identity", "", settings("Storage__accountName", "other", "Storage", sharedKey), Queue,
			Conn{Connection: "Storage", Setting: "Storage", ServiceURL: "https://acct.queue.core.windows.net", Auth: SharedKey, Account: "acct", Key: secretKey}},
		{"blank value falls through", "", settings("AzureWebJobsStorage", "  ", "Storage", sharedKey), Queue,
			Conn{Connection: "Storage", Setting: "Storage", ServiceURL: "https://acct.queue.core.windows.net", Auth: SharedKey, Account: "acct", Key: secretKey}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Resolve(tc.connection, tc.lookup, tc.svc)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if *c != tc.want {
				t.Errorf("Resolve = %+v,\nwant %+v", *c, tc.want)
			}
			if s := leaked(c.Describe()); s != "" {
				t.Errorf("Describe leaks %q", s)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name       string
		connection string
		lookup     Lookup
		svc        Service
		want       string // the whole error
	}{
		{"nothing set", "", settings(), Queue,
			`connection "Storage": none of AzureWebJobsStorage, AzureWebJobsStorage__queueServiceUri, AzureWebJobsStorage__accountName, Storage, Storage__queueServiceUri, Storage__accountName is set`},
		{"nothing set, full name", "AzureWebJobsOrders", settings(), Table,
			`connection "AzureWebJobsOrders": none of AzureWebJobsOrders, AzureWebJobsOrders__tableServiceUri, AzureWebJobsOrders__accountName is set`},
		{"not key=value", "", settings("AzureWebJobsStorage", "SECRETJUNK"), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: expected Key=Value pairs separated by ';'`},
		{"empty", "", settings("AzureWebJobsStorage", " ; ;"), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: it is empty`},
		{"bad base64 key", "", settings("AzureWebJobsStorage", "AccountName=a1b;AccountKey=SECRETKEY!!!"), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: AccountKey is not valid base64`},
		{"no endpoint", "", settings("AzureWebJobsStorage", "QueueEndpoint=http://q;SharedAccessSignature=sig="+secretSig), Table,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: it needs AccountName or TableEndpoint`},
		{"no credential", "", settings("AzureWebJobsStorage", "AccountName=acct"), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: it needs AccountKey or SharedAccessSignature`},
		{"key without account", "", settings("AzureWebJobsStorage", "QueueEndpoint=https://x.example;AccountKey="+secretKey), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: AccountKey needs AccountName`},
		{"bad endpoint", "", settings("AzureWebJobsStorage", "TableEndpoint=ftp://SECRETJUNK;AccountName=acct;AccountKey="+secretKey), Table,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: TableEndpoint is not an http(s) URL`},
		{"bad protocol", "", settings("AzureWebJobsStorage", "DefaultEndpointsProtocol=gopher;AccountName=acct;AccountKey="+secretKey), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: DefaultEndpointsProtocol must be http or https`},
		{"bad suffix", "", settings("AzureWebJobsStorage", "EndpointSuffix=evil.example/SECRETJUNK;AccountName=acct;AccountKey="+secretKey), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: EndpointSuffix is not a domain`},
		{"bad SAS", "", settings("AzureWebJobsStorage", "QueueEndpoint=http://x;SharedAccessSignature=%zzSECRETSIG0123"), Queue,
			`connection "Storage": setting AzureWebJobsStorage holds an invalid connection string: SharedAccessSignature is not a valid query string`},
		{"bad service URI", "", settings("Storage__queueServiceUri", "SECRETJUNK"), Queue,
			`connection "Storage": setting Storage__queueServiceUri is not an http(s) URL`},
		{"SAS in service URI", "", settings("Storage__tableServiceUri", "https://acct.table.core.windows.net/?sig="+secretSig), Table,
			`connection "Storage": setting Storage__tableServiceUri must be a plain service URL, without a query or credentials (put a SAS in a connection string instead)`},
		{"credentials in service URI", "", settings("Storage__queueServiceUri", "https://u:SECRETKEY@acct.queue.core.windows.net/"), Queue,
			`connection "Storage": setting Storage__queueServiceUri must be a plain service URL, without a query or credentials (put a SAS in a connection string instead)`},
		{"bad accountName", "", settings("Storage__accountName", "SECRETJUNK"), Queue,
			`connection "Storage": setting Storage__accountName is not a storage account name (3-24 lowercase letters and digits)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(tc.connection, tc.lookup, tc.svc)
			if err == nil {
				t.Fatal("Resolve succeeded")
			}
			if err.Error() != tc.want {
				t.Errorf("error = %q,\nwant %q", err, tc.want)
			}
			if s := leaked(err.Error()); s != "" {
				t.Errorf("error leaks %q", s)
			}
			var cse *ConnectionStringError
			if isCS := strings.Contains(tc.want, "invalid connection string"); errors.As(err, &cse) != isCS {
				t.Errorf("errors.As(%v, *ConnectionStringError) = %v, want %v", err, !isCS, isCS)
			} else if isCS && (cse.Connection != "Storage" || cse.Setting != "AzureWebJobsStorage" || cse.Reason == "") {
				t.Errorf("ConnectionStringError = %+v", *cse)
			}
		})
	}
}

func TestParse(t *testing.T) {
	c, err := Parse("AccountName=acct;AccountKey="+secretKey, Table)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceURL != "https://acct.table.core.windows.net" || c.Connection != "" || c.Setting != "" {
		t.Errorf("Parse = %+v", *c)
	}
	if got := c.Describe(); got != "https://acct.table.core.windows.net (shared key)" {
		t.Errorf("Describe = %q", got)
	}
	_, err = Parse("AccountName=acct;AccountKey=SECRETJUNK", Queue)
	if err == nil || err.Error() != "invalid connection string: AccountKey is not valid base64" {
		t.Errorf("Parse error = %v", err)
	}
	// Development storage wins over anything else in the string.
	c, err = Parse("UseDevelopmentStorage=true;junk", Queue)
	if err != nil || c.ServiceURL != DevelopmentQueueEndpoint || c.Key != DevelopmentKey {
		t.Errorf("Parse(development) = %+v, %v", c, err)
	}
}

func TestDescribe(t *testing.T) {
	for c, want := range map[Conn]string{
		{ServiceURL: "http://127.0.0.1:10001/devstoreaccount1/", Auth: SharedKey, Key: secretKey}: "http://127.0.0.1:10001/devstoreaccount1 (shared key)",
		{ServiceURL: "https://acct.queue.core.windows.net", Auth: SAS, SAS: "sig=" + secretSig}:   "https://acct.queue.core.windows.net (SAS)",
		{ServiceURL: "https://acct.table.core.windows.net/", Auth: Identity}:                      "https://acct.table.core.windows.net (identity)",
	} {
		if got := c.Describe(); got != want {
			t.Errorf("Describe = %q, want %q", got, want)
		}
	}
}

func TestIsDevelopmentStorage(t *testing.T) {
	for in, want := range map[string]bool{
		"UseDevelopmentStorage=true":  true,
		"usedevelopmentstorage=True;": true,
		"UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://ipv4.fiddler": true,
		" UseDevelopmentStorage = true ":                                            true,
		"UseDevelopmentStorage=false":                                               false,
		"AccountName=a;AccountKey=b":                                                false,
		"":                                                                          false,
	} {
		if got := IsDevelopmentStorage(in); got != want {
			t.Errorf("IsDevelopmentStorage(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestValidAccountName(t *testing.T) {
	for s, want := range map[string]bool{
		"abc": true, "acct123": true, strings.Repeat("a", 24): true,
		"ab": false, strings.Repeat("a", 25): false, "Acct": false, "ac-ct": false, "": false,
	} {
		if got := ValidAccountName(s); got != want {
			t.Errorf("ValidAccountName(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestLookupEnv(t *testing.T) {
	t.Setenv("STORAGECONN_TEST_SETTING", "v1")
	if v, ok := LookupEnv("StorageConn_Test_Setting"); !ok || v != "v1" {
		t.Errorf("LookupEnv, other case = %q, %v", v, ok)
	}
	if _, ok := LookupEnv("STORAGECONN_TEST_UNSET"); ok {
		t.Error("LookupEnv found an unset variable")
	}
	t.Setenv("AZUREWEBJOBSSTORAGECONNTEST", "UseDevelopmentStorage=true")
	c, err := Resolve("StorageConnTest", nil, Table)
	if err != nil || c.ServiceURL != DevelopmentTableEndpoint {
		t.Errorf("Resolve from the environment = %+v, %v", c, err)
	}
}

func TestIdentityCredential(t *testing.T) {
	c := &Conn{Connection: "Storage", Setting: "Storage__accountName", Auth: Identity, Account: "acct"}
	// DefaultAzureCredential is built lazily: it fails only when no
	// credential type can be configured, and then names the setting.
	if _, err := c.IdentityCredential(); err != nil && !strings.Contains(err.Error(), `connection "Storage" (setting Storage__accountName): identity-based connection`) {
		t.Errorf("IdentityCredential error = %v", err)
	}
}
