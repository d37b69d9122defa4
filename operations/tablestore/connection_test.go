package tablestore

import "testing"

// TestConnectionErrorMessages pins the driver's own wording of the errors
// the shared connection resolver reports.
func TestConnectionErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"connection string from a setting", func() error {
			_, err := NewServiceClient("", settings("AzureWebJobsStorage", "AccountName=acct"), nil)
			return err
		}, `tablestore: connection "Storage" (setting AzureWebJobsStorage): invalid connection string: it needs AccountKey or SharedAccessSignature`},
		{"connection string given", func() error {
			_, err := NewServiceClientFromConnectionString("AccountKey="+secretKey, nil)
			return err
		}, `tablestore: invalid connection string: it needs AccountName or TableEndpoint`},
		{"empty connection string", func() error {
			_, err := NewServiceClientFromConnectionString(" ", nil)
			return err
		}, `tablestore: invalid connection string: it is empty`},
		{"nothing set", func() error {
			_, err := NewServiceClient("Orders", settings(), nil)
			return err
		}, `tablestore: connection "Orders": none of AzureWebJobsOrders, AzureWebJobsOrders__tableServiceUri, AzureWebJobsOrders__accountName, Orders, Orders__tableServiceUri, Orders__accountName is set`},
		{"bad account name", func() error {
			_, err := NewServiceClient("", settings("Storage__accountName", "No"), nil)
			return err
		}, `tablestore: connection "Storage": setting Storage__accountName is not a storage account name (3-24 lowercase letters and digits)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.err(); err == nil || err.Error() != tc.want {
				t.Errorf("error = %v,\nwant %s", err, tc.want)
			}
		})
	}
	if got, want := Describe("", settings("AzureWebJobsStorage__tableServiceUri", "https://acct.table.core.windows.net//")), "https://acct.table.core.windows.net (identity)"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}
