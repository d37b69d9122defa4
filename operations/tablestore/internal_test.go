package tablestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
)

func TestEncodeDecode(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))
	r := &operations.Record{
		ID: "id-1", Name: "f", Status: operations.InProgress, Attempt: 2,
		Input:       json.RawMessage(`{"a": "<b>"}`),
		Output:      bytes.Repeat([]byte("x"), 3*maxBinary+5), // over one string: binary, four parts
		Progress:    json.RawMessage("\"\xff\""),              // not UTF-8: binary
		StartTime:   start,
		CreatedOn:   start,
		LastUpdated: start,
		ExpiresOn:   start.Add(time.Hour),
		RunAs:       "",
	}
	e, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(e.body, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Output0", "Output3", "Progress0", "Input", "RunAs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("property %s missing from %v", k, keys(m))
		}
	}
	for _, k := range []string{"Output", "Output4", "EndTime", "ErrorMessage"} {
		if _, ok := m[k]; ok {
			t.Errorf("property %s present", k)
		}
	}
	if m["StartTime"] != "2030-01-02T02:04:05.1234567Z" || m["StartTime@odata.type"] != "Edm.DateTime" {
		t.Errorf("StartTime = %v (%v)", m["StartTime"], m["StartTime@odata.type"])
	}
	got, _, err := decode(e.body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Output, r.Output) || !bytes.Equal(got.Progress, r.Progress) || string(got.Input) != string(r.Input) {
		t.Error("blobs did not round-trip")
	}
	if !got.StartTime.Equal(start.Truncate(tick)) || got.StartTime.Location() != time.UTC || !got.EndTime.IsZero() {
		t.Errorf("StartTime %v, EndTime %v", got.StartTime, got.EndTime)
	}
	if gs, es := got.StartTime.String(), e.record.StartTime.String(); gs != es {
		t.Errorf("decoded %s, returned %s: the store would return what it did not store", gs, es)
	}
	got.Version = ""
	if gs, es := jsonOf(got), jsonOf(e.record); gs != es {
		t.Errorf("decode(encode(r)) = %s\nwant %s", gs, es)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func jsonOf(r *operations.Record) string {
	b, _ := json.Marshal(r)
	return string(b)
}

func TestEncodeLimits(t *testing.T) {
	big := func(n int) json.RawMessage { return bytes.Repeat([]byte("y"), n) }
	ok := &operations.Record{ID: "a", Input: big(operations.MaxInput), Output: big(200 << 10)}
	if _, err := encode(ok); err != nil {
		t.Errorf("MaxInput and a 200 KiB output: %v", err)
	}
	tooBig := &operations.Record{ID: "a", Input: big(operations.MaxInput), Output: big(operations.MaxOutput)}
	if _, err := encode(tooBig); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxInput and MaxOutput: %v, want ErrTooLarge", err)
	}
	// A string property counts two bytes a character: a 32 Ki-character
	// one fits, one more goes binary.
	if e, err := encode(&operations.Record{ID: "a", Input: big(maxStringUnits)}); err != nil || !bytes.Contains(e.body, []byte(`"Input":"yy`)) {
		t.Errorf("32 Ki input: %v", err)
	}
	if e, err := encode(&operations.Record{ID: "a", Input: big(maxStringUnits + 1)}); err != nil || !bytes.Contains(e.body, []byte(`"Input0"`)) {
		t.Errorf("32 Ki + 1 input: %v", err)
	}
	for _, id := range []string{"", "a/b", "a#b", "a?b", `a\b`, "a\x01", strings.Repeat("i", maxKey+1), "\xff"} {
		if _, err := encode(&operations.Record{ID: id}); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
}

func TestFilter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 150, time.UTC) // rounded up to 200 ns
	who := "o'neil"
	q := operations.Query{
		Name:   "x' or Name ne '",
		Status: []operations.Status{operations.InProgress, operations.Canceling},
		Since:  time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("X", -3600)),
		RunAs:  &who,
	}
	got := filter(q, now, "it's")
	want := "RowKey eq '' and ExpiresOn ge datetime'2030-01-02T03:04:05.0000002Z' and PartitionKey gt 'it''s' and " +
		"Name eq 'x'' or Name ne ''' and (Status eq 20 or Status eq 22) and " +
		"CreatedOn ge datetime'2030-01-01T01:00:00.0000000Z' and RunAs eq 'o''neil'"
	if got != want {
		t.Errorf("filter =\n%s\nwant\n%s", got, want)
	}
}

func TestCursor(t *testing.T) {
	id := operations.NewID()
	c := encodeCursor(id)
	if strings.Contains(c, id) {
		t.Errorf("cursor %q shows the id", c)
	}
	if got, err := decodeCursor(c); err != nil || got != id {
		t.Errorf("decodeCursor = %q, %v", got, err)
	}
	for _, bad := range []string{"x", "!!!!", encodeCursor("")[:2], "MTp", "Zm9vOmJhcg"} {
		if _, err := decodeCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("decodeCursor(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestValidateTableName(t *testing.T) {
	for _, ok := range []string{"jobhostoperations", "Abc", "a1b2c3", strings.Repeat("a", 63)} {
		if err := ValidateTableName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", "1abc", "a-b", "a_b", "tables", "Tables", strings.Repeat("a", 64), "tábla"} {
		if err := ValidateTableName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

const secretKey = "c2VjcmV0LWtleS1TRUNSRVRLRVk=" // base64 of "secret-key-SECRETKEY"

func settings(kv ...string) Lookup {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}

func TestResolve(t *testing.T) {
	sharedKey := "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + secretKey + ";EndpointSuffix=core.windows.net"
	tests := []struct {
		name, connection string
		lookup           Lookup
		describe         string
	}{
		{"default name uses AzureWebJobsStorage", "", settings("AzureWebJobsStorage", sharedKey), "https://acct.table.core.windows.net (shared key)"},
		{"plain name as fallback", "Storage", settings("Storage", sharedKey), "https://acct.table.core.windows.net (shared key)"},
		{"full setting name", "AzureWebJobsStorage", settings("AzureWebJobsStorage", sharedKey), "https://acct.table.core.windows.net (shared key)"},
		{"AzureWebJobs prefix wins", "My", settings("AzureWebJobsMy", "AccountName=first;AccountKey="+secretKey, "My", "AccountName=second;AccountKey="+secretKey),
			"https://first.table.core.windows.net (shared key)"},
		{"endpoint suffix and protocol", "", settings("AzureWebJobsStorage", "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey="+secretKey+";EndpointSuffix=core.chinacloudapi.cn"),
			"http://acct.table.core.chinacloudapi.cn (shared key)"},
		{"development storage", "", settings("AzureWebJobsStorage", "UseDevelopmentStorage=true"), "http://127.0.0.1:10002/devstoreaccount1 (shared key)"},
		{"development storage, any case", "", settings("AzureWebJobsStorage", "usedevelopmentstorage=TRUE;DevelopmentStorageProxyUri=http://ipv4.fiddler"),
			"http://127.0.0.1:10002/devstoreaccount1 (shared key)"},
		{"table endpoint, case-insensitive keys", "", settings("AzureWebJobsStorage", "accountname=acct;accountkey="+secretKey+";queueendpoint=http://q;tableendpoint=http://localhost:9999/acct/"),
			"http://localhost:9999/acct (shared key)"},
		{"SAS", "", settings("AzureWebJobsStorage", "TableEndpoint=https://acct.table.core.windows.net;SharedAccessSignature=sv=2022&sig=SECRETSIG"),
			"https://acct.table.core.windows.net (SAS)"},
		{"identity: tableServiceUri", "Storage", settings("Storage__tableServiceUri", "https://acct.table.core.windows.net/"), "https://acct.table.core.windows.net (identity)"},
		{"identity: accountName", "", settings("AzureWebJobsStorage__accountName", "acct"), "https://acct.table.core.windows.net (identity)"},
		{"blank value falls through", "", settings("AzureWebJobsStorage", "  ", "Storage", sharedKey), "https://acct.table.core.windows.net (shared key)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Describe(tc.connection, tc.lookup); got != tc.describe {
				t.Errorf("Describe = %q, want %q", got, tc.describe)
			}
			if _, err := NewServiceClient(tc.connection, tc.lookup, nil); err != nil {
				t.Errorf("NewServiceClient: %v", err)
			}
		})
	}
}

func TestResolveErrorsHoldNoSecret(t *testing.T) {
	for _, cs := range []string{
		"AccountName=acct;AccountKey=SECRETJUNK!!",
		"AccountKey=" + secretKey,
		"AccountName=acct",
		"garbage " + secretKey,
		"TableEndpoint=ftp://x;AccountName=a;AccountKey=" + secretKey,
		"DefaultEndpointsProtocol=gopher;AccountName=a;AccountKey=" + secretKey,
		"TableEndpoint=http://x;SharedAccessSignature=%zzSECRETSIG",
	} {
		_, err := NewServiceClient("", settings("AzureWebJobsStorage", cs), nil)
		if err == nil {
			t.Errorf("%q accepted", cs)
			continue
		}
		for _, secret := range []string{secretKey, "SECRETKEY", "SECRETJUNK", "SECRETSIG"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks %q: %v", secret, err)
			}
		}
		if !strings.Contains(err.Error(), "AzureWebJobsStorage") {
			t.Errorf("error does not name the setting: %v", err)
		}
		if _, err := FromConnectionString(cs, Options{}); err == nil || strings.Contains(err.Error(), secretKey) {
			t.Errorf("FromConnectionString(%q) = %v", cs, err)
		}
	}
	if _, err := NewServiceClient("Missing", settings(), nil); err == nil || !strings.Contains(err.Error(), "AzureWebJobsMissing, AzureWebJobsMissing__tableServiceUri") {
		t.Errorf("unset connection: %v", err)
	}
	if _, err := NewServiceClient("", settings("AzureWebJobsStorage__tableServiceUri", "https://x/?sig=SECRETSIG"), nil); err == nil || strings.Contains(err.Error(), "SECRETSIG") {
		t.Errorf("service URI with a query: %v", err)
	}
}
