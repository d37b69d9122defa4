package sitemodify

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime/cli"
)

// TestWorkerLinksOnlyStorageQueues: a Storage-Queue-only worker links no
// other broker's SDK (the drivers register by import; runtime links only
// Azure Storage Queues and memqueue).
func TestWorkerLinksOnlyStorageQueues(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./worker").Output()
	if err != nil {
		t.Fatalf("go list -deps ./worker: %v", err)
	}
	for _, bad := range []string{"github.com/aws/", "cloud.google.com/", "google.golang.org/grpc", "github.com/IBM/sarama",
		"github.com/rabbitmq/", "github.com/Azure/go-amqp", "github.com/nats-io/", "azservicebus", "gocloud.dev/pubsub"} {
		for _, pkg := range strings.Fields(string(out)) {
			if strings.Contains(pkg, bad) {
				t.Errorf("the sitemodify worker links %s", pkg)
				break
			}
		}
	}
	if !bytes.Contains(out, []byte("github.com/Azure/azure-sdk-for-go/sdk/storage/azqueue\n")) {
		t.Error("the sitemodify worker does not link azqueue")
	}
}

// TestUnlinkedSchemeNamesTheImport: pointing the worker's trigger or output
// at a broker whose driver it does not link is a configuration error
// (exit 2) naming the import to add.
func TestUnlinkedSchemeNamesTheImport(t *testing.T) {
	for _, tc := range []struct{ setting, value, want string }{
		{QueueSetting, "rabbit://site-modify", "github.com/jobhost/jobhost/triggers/rabbitmq"},
		{"SiteModifyResultsQueue", "kafka://results", "github.com/jobhost/jobhost/triggers/pubsub/kafka"},
	} {
		reg := &functions.Registry{}
		Register(reg)
		var stdout, stderr bytes.Buffer
		code := cli.Run(context.Background(), cli.Env{Args: []string{"validate"},
			Stdout: &stdout, Stderr: &stderr, Registry: reg,
			Environ: []string{tc.setting + "=" + tc.value, "AzureWebJobsStorage=UseDevelopmentStorage=true"}})
		if code != cli.ExitUsage {
			t.Errorf("%s=%s: validate exited %d, want %d; stderr:\n%s", tc.setting, tc.value, code, cli.ExitUsage, stderr.String())
		}
		if want := `import _ "` + tc.want + `"`; !strings.Contains(stderr.String(), want) {
			t.Errorf("%s=%s: stderr does not name %s:\n%s", tc.setting, tc.value, want, stderr.String())
		}
	}
}
