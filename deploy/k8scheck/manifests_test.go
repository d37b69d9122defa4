package k8scheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	keda "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/runtime"
	"github.com/jobhost/jobhost/runtime/cli"
	"github.com/jobhost/jobhost/triggers"
	_ "github.com/jobhost/jobhost/triggers/jetstream"
	_ "github.com/jobhost/jobhost/triggers/postgres"
	_ "github.com/jobhost/jobhost/triggers/rabbitmq"
	_ "github.com/jobhost/jobhost/triggers/redis"
	_ "github.com/jobhost/jobhost/triggers/servicebus"
)

// scalerParams are the trigger metadata keys each KEDA scaler documents
// (keda.sh/docs/2.x/scalers): a key outside them is a typo KEDA would
// ignore or refuse.
var scalerParams = map[string][]string{
	"azure-queue":      {"queueName", "queueLength", "activationQueueLength", "connectionFromEnv", "accountName", "cloud"},
	"rabbitmq":         {"host", "hostFromEnv", "protocol", "mode", "value", "activationValue", "queueName", "vhostName", "useRegex", "unsafeSsl"},
	"nats-jetstream":   {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"},
	"azure-servicebus": {"queueName", "topicName", "subscriptionName", "namespace", "connectionFromEnv", "messageCount", "activationMessageCount", "cloud"},
	"redis-streams":    {"address", "host", "port", "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount", "enableTLS", "databaseIndex"},
	"postgresql":       {"query", "targetQueryValue", "activationTargetQueryValue", "connectionFromEnv", "host", "port", "userName", "dbName", "sslmode"},
}

// required are the keys each scaler needs from us.
var required = map[string][]string{
	"azure-queue":      {"queueName", "queueLength", "connectionFromEnv"},
	"rabbitmq":         {"protocol", "mode", "value", "queueName"},
	"nats-jetstream":   {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"},
	"azure-servicebus": {"messageCount", "connectionFromEnv"},
	"redis-streams":    {"stream", "consumerGroup", "lagCount"},
	"postgresql":       {"query", "targetQueryValue", "connectionFromEnv"},
}

type order struct {
	ID int `json:"id"`
}

// registry has a function on every broker KEDA scales on.
func registry() *functions.Registry {
	r := &functions.Registry{}
	h := func(ctx context.Context, o order, msg *triggers.Message) error { return nil }
	functions.Add(r, "ProcessOrder", functions.QueueTrigger("orders"), h)
	functions.Add(r, "ShipOrder", functions.SubscriptionTrigger("rabbit://shipments"), h)
	functions.Add(r, "BillOrder", functions.SubscriptionTrigger("nats://orders.billing?stream=ORDERS"), h)
	functions.Add(r, "RefundOrder", functions.SubscriptionTrigger("azuresb://refunds").WithConnection("RefundsBus"), h)
	functions.Add(r, "NotifyCustomer", functions.SubscriptionTrigger("azuresb://order-events?subscription=notify"), h)
	functions.Add(r, "IndexOrder", functions.SubscriptionTrigger("redis://orders-index"), h)
	functions.Add(r, "ArchiveOrder", functions.SubscriptionTrigger("postgres://archive"), h)
	return r
}

// manifests runs `jobhost kubernetes manifests` in a directory holding
// hostJSON.
func manifests(t *testing.T, hostJSON string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	host := filepath.Join(dir, "host.json")
	if err := os.WriteFile(host, []byte(hostJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args = append([]string{"kubernetes", "manifests", "--image", "registry.example.com/w:1", "--host-json", host}, args...)
	code := cli.Run(context.Background(), cli.Env{Args: args, Stdout: &out, Stderr: &errb, Registry: registry()})
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	return out.Bytes()
}

// strictDecode decodes a YAML or JSON manifest into v as the API server's
// strict field validation does: a duplicate key, an unknown field or a field
// spelt in another case (encoding/json would match it) is an error.
func strictDecode(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// objects are the decoded manifests of one output.
type objects struct {
	secrets    []corev1.Secret
	deploys    []appsv1.Deployment
	scaled     []keda.ScaledObject
	auths      []keda.TriggerAuthentication
	scaledJobs []keda.ScaledJob
}

// decode decodes one manifest strictly (an unknown or duplicate field is
// an error) into the Go type of its kind.
func (o *objects) decode(t *testing.T, doc []byte) {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		t.Fatalf("%v in:\n%s", err, doc)
	}
	strict := func(v any) {
		if err := strictDecode(doc, v); err != nil {
			t.Fatalf("%s %s does not decode strictly: %v\n%s", head.APIVersion, head.Kind, err, doc)
		}
	}
	switch head.APIVersion + " " + head.Kind {
	case "v1 Secret":
		o.secrets = append(o.secrets, corev1.Secret{})
		strict(&o.secrets[len(o.secrets)-1])
	case "apps/v1 Deployment":
		o.deploys = append(o.deploys, appsv1.Deployment{})
		strict(&o.deploys[len(o.deploys)-1])
	case "keda.sh/v1alpha1 ScaledObject":
		o.scaled = append(o.scaled, keda.ScaledObject{})
		strict(&o.scaled[len(o.scaled)-1])
	case "keda.sh/v1alpha1 TriggerAuthentication":
		o.auths = append(o.auths, keda.TriggerAuthentication{})
		strict(&o.auths[len(o.auths)-1])
	case "keda.sh/v1alpha1 ScaledJob":
		o.scaledJobs = append(o.scaledJobs, keda.ScaledJob{})
		strict(&o.scaledJobs[len(o.scaledJobs)-1])
	default:
		t.Fatalf("unexpected kind %s %s", head.APIVersion, head.Kind)
	}
}

// parse splits YAML documents, or a JSON v1 List, and decodes each.
func parse(t *testing.T, out []byte) *objects {
	t.Helper()
	o := &objects{}
	if bytes.HasPrefix(bytes.TrimSpace(out), []byte("{")) {
		var list struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []json.RawMessage `json:"items"`
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&list); err != nil || list.APIVersion != "v1" || list.Kind != "List" {
			t.Fatalf("not a v1 List: %v", err)
		}
		for _, item := range list.Items {
			o.decode(t, item)
		}
		return o
	}
	for _, doc := range strings.Split("\n"+string(out), "\n---\n") {
		if strings.TrimSpace(doc) != "" {
			o.decode(t, []byte(doc))
		}
	}
	return o
}

// check verifies what the objects say to each other and to KEDA.
func (o *objects) check(t *testing.T, shutdown int) {
	t.Helper()
	if len(o.secrets) != 1 || len(o.deploys) != 1 || len(o.scaled) != 1 {
		t.Fatalf("%d Secrets, %d Deployments, %d ScaledObjects; want one of each", len(o.secrets), len(o.deploys), len(o.scaled))
	}
	secret, d, so := o.secrets[0], o.deploys[0], o.scaled[0]
	keys := map[string]bool{}
	for k, v := range secret.StringData {
		keys[k] = true
		if !strings.HasPrefix(v, "<replace") {
			t.Errorf("Secret key %s holds %q, not a placeholder", k, v)
		}
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != secret.Name {
		t.Errorf("envFrom %+v does not name the Secret %s", c.EnvFrom, secret.Name)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: %+v, %+v", c.LivenessProbe, c.ReadinessProbe)
	} else if len(c.Ports) != 1 || c.LivenessProbe.HTTPGet.Port.StrVal != c.Ports[0].Name || c.ReadinessProbe.HTTPGet.Port.StrVal != c.Ports[0].Name {
		t.Errorf("the probes' port is not the container's: %+v", c.Ports)
	}
	listen := ""
	for _, e := range c.Env {
		if e.Name == runtime.EnvPrefix+"jobhost__http__listen" {
			listen = e.Value
		}
	}
	if !strings.HasPrefix(listen, "0.0.0.0:") || !strings.HasSuffix(listen, ":"+strconv.Itoa(int(c.Ports[0].ContainerPort))) {
		t.Errorf("listen override %q does not serve the container port %d on every address", listen, c.Ports[0].ContainerPort)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= int64(shutdown)+int64(runtime.ShutdownMargin.Seconds()) {
		t.Errorf("terminationGracePeriodSeconds %v is not above shutdownTimeout %d s + %v", g, shutdown, runtime.ShutdownMargin)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("the pod may run as root: %+v", sc)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	if so.Spec.ScaleTargetRef == nil || so.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("the ScaledObject scales %+v, not %s", so.Spec.ScaleTargetRef, d.Name)
	}
	if err := keda.CheckReplicaCountBoundsAreValid(&so); err != nil {
		t.Error(err)
	}
	if err := keda.ValidateTriggers(so.Spec.Triggers); err != nil {
		t.Error(err)
	}
	auths := map[string]keda.TriggerAuthentication{}
	for _, a := range o.auths {
		auths[a.Name] = a
		for _, ref := range a.Spec.SecretTargetRef {
			if ref.Name != secret.Name || !keys[ref.Key] {
				t.Errorf("TriggerAuthentication %s reads %s/%s, not a key of the Secret", a.Name, ref.Name, ref.Key)
			}
		}
	}
	for _, tr := range so.Spec.Triggers {
		known, ok := scalerParams[tr.Type]
		if !ok {
			t.Errorf("trigger %s: unexpected type %s", tr.Name, tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !slices.Contains(known, k) {
				t.Errorf("trigger %s (%s): %s is no parameter of the scaler", tr.Name, tr.Type, k)
			}
		}
		for _, k := range required[tr.Type] {
			if tr.Metadata[k] == "" {
				t.Errorf("trigger %s (%s): no %s", tr.Name, tr.Type, k)
			}
		}
		if env := tr.Metadata["connectionFromEnv"]; env != "" && !keys[env] {
			t.Errorf("trigger %s: connectionFromEnv %s is not in the Secret the container's env comes from", tr.Name, env)
		}
		if tr.AuthenticationRef != nil {
			if _, ok := auths[tr.AuthenticationRef.Name]; !ok {
				t.Errorf("trigger %s: no TriggerAuthentication %s", tr.Name, tr.AuthenticationRef.Name)
			}
		} else if tr.Type == "rabbitmq" || tr.Type == "redis-streams" {
			t.Errorf("trigger %s (%s) has no authenticationRef", tr.Name, tr.Type)
		}
	}
	if len(so.Spec.Triggers) != 7 {
		t.Errorf("%d triggers, want 7 (one per function)", len(so.Spec.Triggers))
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, tc := range []struct {
		name, hostJSON string
		shutdown       int
		args           []string
	}{
		{"yaml", `{"version": "2.0"}`, 25, nil},
		{"json", `{"version": "2.0"}`, 25, []string{"--output", "json"}},
		{"loopback", `{"version": "2.0", "jobhost": {"shutdownTimeout": "00:05:00", "http": {"listen": "7072"}}}`, 300,
			[]string{"--namespace", "shop", "--queue-length", "ShipOrder=1", "--replicas-min", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := parse(t, manifests(t, tc.hostJSON, tc.args...))
			o.check(t, tc.shutdown)
		})
	}
}

// The golden files of runtime/cli decode strictly too.
func TestGoldenFilesDecodeStrictly(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "runtime", "cli", "testdata", "kubernetes", "*"))
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o := parse(t, data)
		if len(o.secrets) != 1 || len(o.deploys) != 1 {
			t.Errorf("%s: %d Secrets, %d Deployments", f, len(o.secrets), len(o.deploys))
		}
	}
}

// Strictness is real: a misspelt field of a Deployment or a ScaledObject
// does not decode.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	out := string(manifests(t, `{"version": "2.0"}`))
	for _, typo := range [][2]string{{"periodSeconds:", "periodSecs:"}, {"cooldownPeriod:", "coolDownPeriod:"}} {
		bad := strings.Replace(out, typo[0], typo[1], 1)
		var failed bool
		for _, doc := range strings.Split(bad, "\n---\n") {
			var d appsv1.Deployment
			var so keda.ScaledObject
			switch {
			case strings.Contains(doc, "kind: Deployment"):
				failed = failed || strictDecode([]byte(doc), &d) != nil
			case strings.Contains(doc, "kind: ScaledObject"):
				failed = failed || strictDecode([]byte(doc), &so) != nil
			}
		}
		if !failed {
			t.Errorf("%s decoded strictly", typo[1])
		}
	}
}
