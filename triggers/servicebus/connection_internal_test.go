package servicebus

import (
	"testing"

	"github.com/jobhost/jobhost/triggers"
)

func TestResolveConnection(t *testing.T) {
	t.Parallel()
	const cs = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t="
	for _, c := range []struct {
		name       string
		connection string
		settings   map[string]string
		setting    string
		host       string
	}{
		{"named setting first", "SB", map[string]string{"SB": cs, "AzureWebJobsSB": "other.servicebus.windows.net", "SERVICEBUS_CONNECTION_STRING": cs}, "SB", ""},
		{"AzureWebJobs prefix", "SB", map[string]string{"AzureWebJobsSB": cs}, "AzureWebJobsSB", ""},
		{"already prefixed", "AzureWebJobsServiceBus", map[string]string{"AzureWebJobsServiceBus": cs}, "AzureWebJobsServiceBus", ""},
		{"fullyQualifiedNamespace", "SB", map[string]string{"SB__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, "SB__fullyQualifiedNamespace", "ns.servicebus.windows.net"},
		{"empty values skipped", "SB", map[string]string{"SB": "", "SB__fullyQualifiedNamespace": "ns.servicebus.windows.net"}, "SB__fullyQualifiedNamespace", "ns.servicebus.windows.net"},
		{"host in the named setting", "SB", map[string]string{"SB": "https://ns.servicebus.windows.net/"}, "SB", "ns.servicebus.windows.net"},
		{"gocloud connection string", "", map[string]string{"SERVICEBUS_CONNECTION_STRING": cs, "AZURE_SERVICEBUS_HOSTNAME": "h.servicebus.windows.net"}, "SERVICEBUS_CONNECTION_STRING", ""},
		{"gocloud hostname", "", map[string]string{"AZURE_SERVICEBUS_HOSTNAME": "h.servicebus.windows.net"}, "AZURE_SERVICEBUS_HOSTNAME", "h.servicebus.windows.net"},
		{"SAS connection string", "", map[string]string{"SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1&skn=k"}, "SERVICEBUS_CONNECTION_STRING", ""},
	} {
		got, err := resolveConnection(triggers.OpenOptions{Connection: c.connection, Lookup: func(k string) (string, bool) { v, ok := c.settings[k]; return v, ok }})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.setting != c.setting || got.host != c.host || (c.host == "") != (got.connStr != "") {
			t.Errorf("%s: got setting %q host %q (connection string: %v), want %q %q", c.name, got.setting, got.host, got.connStr != "", c.setting, c.host)
		}
	}
}

func TestResolveConnectionEnvironment(t *testing.T) {
	t.Setenv("JOBHOST_SB_TEST__fullyQualifiedNamespace", "env.servicebus.windows.net")
	got, err := resolveConnection(triggers.OpenOptions{Connection: "JOBHOST_SB_TEST"})
	if err != nil || got.host != "env.servicebus.windows.net" {
		t.Fatalf("nil Lookup should read the environment: %+v, %v", got, err)
	}
}
