package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/jobhost/jobhost/runtime"
)

const kubernetesHelp = `usage: %[1]s kubernetes manifests --image IMAGE [flags]

Print the manifests that run this worker on Kubernetes with KEDA, built from
the functions compiled in and host.json: a Secret of the app settings the
functions use (placeholder values: nothing is read from this environment), a
Deployment running "run" (probes /livez and /readyz, a grace period above
jobhost.shutdownTimeout, env from the Secret, non-root), one ScaledObject with
a trigger per function (azure-queue, rabbitmq, nats-jetstream,
azure-servicebus, redis-streams, postgresql) and the TriggerAuthentications
of the RabbitMQ and Redis scalers. See docs/deploy.md.

  --name N (jobhost), --namespace NS (none), --secret NAME (<name>-settings)
  --image IMAGE, --command PATH (default: the image's entrypoint)
  --replicas-min N (0), --replicas-max N (100), --polling-interval S (30),
  --cooldown-period S (300): the ScaledObject's
  --queue-length [FUNCTION=]N (5), --activation-queue-length [FUNCTION=]N (0):
      messages per replica, and that wake a Deployment scaled to zero; with
      FUNCTION= for one function (repeatable)
  --nats-monitoring HOST:PORT (nats:8222), --nats-account A ($G),
  --rabbitmq-vhost V (default: the server URL's)
  --cpu (100m), --memory (128Mi), --cpu-limit (none), --memory-limit (512Mi)
  --output yaml|json: YAML documents, or one JSON v1 List

Exit status: 0 printed; 1 no function is registered; 2 bad flags, host.json
or settings.
`

// kubernetesCommands are "kubernetes manifests".
var kubernetesCommands = commandTable{name: "kubernetes", help: kubernetesHelp, subs: []subcommand{
	{"manifests", func(c *command, _ context.Context) int { return c.kubernetesManifests() }},
}}

// KEDA's ScaledObject defaults, and the margin past the host's own
// shutdown bound given to the kubelet's grace period (process exit, log
// flush).
const (
	kedaPollingInterval = 30
	kedaCooldownPeriod  = 300
	kedaMaxReplicas     = 100
	kedaQueueLength     = 5
	graceSlackSeconds   = 5
	listenOverride      = runtime.EnvPrefix + "jobhost__http__listen"
)

// kv is one key of an ordered object, with an optional YAML comment.
type kv struct {
	k       string
	v       any
	comment string
}

// object is a manifest object whose keys keep their order in JSON and YAML.
type object []kv

// MarshalJSON writes the keys in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // placeholders hold <>
		if err := enc.Encode(e.k); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
		b.WriteByte(':')
		if err := enc.Encode(e.v); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 1)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// yamlNode turns a manifest value into a YAML node, comments included.
func yamlNode(v any) *yaml.Node {
	switch x := v.(type) {
	case object:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, e := range x {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: e.k, HeadComment: e.comment}, yamlNode(e.v))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, item := range x {
			n.Content = append(n.Content, yamlNode(item))
		}
		return n
	case int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(x)}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
}

// perFunction is a flag of a default number and FUNCTION=N overrides.
type perFunction struct {
	def   int
	by    map[string]int    // by lower-cased function name
	names map[string]string // lower-cased -> as typed
}

// String returns the default.
func (p *perFunction) String() string { return strconv.Itoa(p.def) }

// Set takes N or FUNCTION=N.
func (p *perFunction) Set(s string) error {
	name, num, ok := strings.Cut(s, "=")
	if !ok {
		name, num = "", s
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || (ok && strings.TrimSpace(name) == "") {
		return fmt.Errorf("want N or FUNCTION=N, got %q", s)
	}
	if !ok {
		p.def = n
		return nil
	}
	if p.by == nil {
		p.by, p.names = map[string]int{}, map[string]string{}
	}
	name = strings.TrimSpace(name)
	p.by[strings.ToLower(name)], p.names[strings.ToLower(name)] = n, name
	return nil
}

// of returns the value for function name.
func (p *perFunction) of(name string) int {
	if n, ok := p.by[strings.ToLower(name)]; ok {
		return n
	}
	return p.def
}

// k8sOptions are the flags of kubernetes manifests.
type k8sOptions struct {
	name, namespace, image, command, secret, output  string
	natsMonitoring, natsAccount, rabbitVhost         string
	cpu, memory, cpuLimit, memoryLimit               string
	minReplicas, maxReplicas, pollInterval, cooldown int
	queueLength, activation                          perFunction
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	quantity = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)
	notDNS   = regexp.MustCompile(`[^a-z0-9]+`)
)

// problems checks the flags, one line per problem naming the flag.
func (o *k8sOptions) problems(fcs []*runtime.FunctionConfig) []string {
	var probs []string
	bad := func(flag, format string, args ...any) {
		probs = append(probs, "--"+flag+": "+fmt.Sprintf(format, args...))
	}
	if !dnsLabel.MatchString(o.name) || len(o.name) > 40 {
		bad("name", "must be a DNS label of at most 40 characters (lowercase letters, digits, '-'), got %q", o.name)
	}
	if o.namespace != "" && !dnsLabel.MatchString(o.namespace) {
		bad("namespace", "must be a DNS label (lowercase letters, digits, '-'), got %q", o.namespace)
	}
	if strings.TrimSpace(o.image) == "" || strings.ContainsAny(o.image, " \t\n") {
		bad("image", "must name the worker's image (e.g. registry.example.com/orders-worker:1.0), got %q", o.image)
	}
	if o.secret != "" && !dnsLabel.MatchString(o.secret) {
		bad("secret", "must be a DNS label (lowercase letters, digits, '-'), got %q", o.secret)
	}
	if o.output != "yaml" && o.output != "json" {
		bad("output", "must be yaml or json, got %q", o.output)
	}
	if o.minReplicas < 0 {
		bad("replicas-min", "must be 0 or more, got %d", o.minReplicas)
	}
	if o.maxReplicas < 1 || o.maxReplicas < o.minReplicas {
		bad("replicas-max", "must be at least 1 and at least --replicas-min (%d), got %d", o.minReplicas, o.maxReplicas)
	}
	if o.pollInterval < 1 {
		bad("polling-interval", "must be at least 1 second, got %d", o.pollInterval)
	}
	if o.cooldown < 0 {
		bad("cooldown-period", "must be 0 or more seconds, got %d", o.cooldown)
	}
	if _, port, err := net.SplitHostPort(o.natsMonitoring); err != nil || port == "" {
		bad("nats-monitoring", "must be host:port, got %q", o.natsMonitoring)
	}
	for _, q := range []struct{ flag, v string }{{"cpu", o.cpu}, {"memory", o.memory}, {"cpu-limit", o.cpuLimit}, {"memory-limit", o.memoryLimit}} {
		if q.v != "" && !quantity.MatchString(q.v) {
			bad(q.flag, "must be a Kubernetes quantity such as 250m, 1, 128Mi, got %q", q.v)
		}
	}
	known := map[string]bool{}
	for _, fc := range fcs {
		known[strings.ToLower(fc.Name())] = true
	}
	for _, f := range []struct {
		flag string
		p    *perFunction
		min  int
	}{{"queue-length", &o.queueLength, 1}, {"activation-queue-length", &o.activation, 0}} {
		if f.p.def < f.min {
			bad(f.flag, "must be at least %d, got %d", f.min, f.p.def)
		}
		for _, lc := range slices.Sorted(maps.Keys(f.p.by)) {
			if n := f.p.by[lc]; !known[lc] {
				bad(f.flag, "no function named %q is registered", f.p.names[lc])
			} else if n < f.min {
				bad(f.flag, "%s: must be at least %d, got %d", f.p.names[lc], f.min, n)
			}
		}
	}
	return probs
}

func (c *command) kubernetesManifests() int {
	o := &k8sOptions{queueLength: perFunction{def: kedaQueueLength}}
	c.declare(func(fs *flag.FlagSet) {
		fs.StringVar(&o.name, "name", "jobhost", "the objects' name")
		fs.StringVar(&o.namespace, "namespace", "", "their namespace (default: none)")
		fs.StringVar(&o.image, "image", "", "the worker's image (required)")
		fs.StringVar(&o.command, "command", "", "the container's command (default: the image's entrypoint)")
		fs.StringVar(&o.secret, "secret", "", "the Secret's name (default <name>-settings)")
		fs.StringVar(&o.output, "output", "yaml", "yaml or json")
		fs.IntVar(&o.minReplicas, "replicas-min", 0, "KEDA minReplicaCount")
		fs.IntVar(&o.maxReplicas, "replicas-max", kedaMaxReplicas, "KEDA maxReplicaCount")
		fs.IntVar(&o.pollInterval, "polling-interval", kedaPollingInterval, "KEDA pollingInterval, seconds")
		fs.IntVar(&o.cooldown, "cooldown-period", kedaCooldownPeriod, "KEDA cooldownPeriod, seconds")
		fs.Var(&o.queueLength, "queue-length", "messages per replica: N, or FUNCTION=N (repeatable)")
		fs.Var(&o.activation, "activation-queue-length", "messages that activate the scaler: N, or FUNCTION=N")
		fs.StringVar(&o.natsMonitoring, "nats-monitoring", "nats:8222", "NATS server monitoring endpoint host:port")
		fs.StringVar(&o.natsAccount, "nats-account", "$G", "NATS account")
		fs.StringVar(&o.rabbitVhost, "rabbitmq-vhost", "", "vhostName of the rabbitmq scaler (default: the server URL's)")
		fs.StringVar(&o.cpu, "cpu", "100m", "CPU request")
		fs.StringVar(&o.memory, "memory", "128Mi", "memory request")
		fs.StringVar(&o.cpuLimit, "cpu-limit", "", "CPU limit (default none)")
		fs.StringVar(&o.memoryLimit, "memory-limit", "512Mi", "memory limit")
	})
	if err := c.fs.Parse(c.Args[1:]); err != nil {
		return ExitUsage
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.Stderr, "jobhost %s: unexpected argument %q\n", c.name, c.fs.Arg(0))
		return ExitUsage
	}
	cfg, settings, ok := c.load()
	if !ok {
		return ExitUsage
	}
	fcs, _, err := runtime.ResolveFunctions(cfg, c.Registry, settings)
	if err != nil {
		c.problems(err)
		return ExitUsage
	}
	if probs := o.problems(fcs); len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintf(c.Stderr, "jobhost %s: %s\n", c.name, p)
		}
		return ExitUsage
	}
	if len(fcs) == 0 {
		fmt.Fprintf(c.Stderr, "jobhost %s: no functions are registered in this binary: run it from your worker (cli.Main), see docs/deploy.md\n", c.name)
		return ExitFailed
	}
	o.secret = cmp.Or(o.secret, o.name+"-settings")
	m := &manifests{o: o, cfg: cfg, settings: settings, secretKeys: map[string]string{}}
	docs := m.build(fcs)
	for _, n := range m.notes {
		fmt.Fprintf(c.Stderr, "jobhost %s: note: %s\n", c.name, n)
	}
	if o.output == "json" {
		enc := json.NewEncoder(c.Stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(object{{k: "apiVersion", v: "v1"}, {k: "kind", v: "List"}, {k: "items", v: docs}}); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: %v\n", c.name, err)
			return ExitFailed
		}
		return ExitOK
	}
	enc := yaml.NewEncoder(c.Stdout)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(yamlNode(d)); err != nil {
			fmt.Fprintf(c.Stderr, "jobhost %s: %v\n", c.name, err)
			return ExitFailed
		}
	}
	_ = enc.Close()
	return ExitOK
}

// manifests builds the objects of one run.
type manifests struct {
	o          *k8sOptions
	cfg        *runtime.Config
	settings   *runtime.AppSettings
	secretKeys map[string]string // app setting -> placeholder
	auths      []any             // TriggerAuthentications
	authNames  map[string]bool
	notes      []string
}

// Placeholders of the Secret's values, by kind of setting: they say what
// goes there and fail the host's own checks until replaced.
var placeholders = map[string]string{
	"storage":    "<replace: DefaultEndpointsProtocol=https;AccountName=ACCOUNT;AccountKey=KEY;EndpointSuffix=core.windows.net>",
	"azuresb":    "<replace: Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=NAME;SharedAccessKey=KEY>",
	"rabbit":     "<replace: amqp://USER:PASSWORD@HOST:5672/VHOST>",
	"nats":       "<replace: nats://USER:PASSWORD@HOST:4222>",
	"redis":      "<replace: redis://USER:PASSWORD@HOST:6379/0>",
	"postgres":   "<replace: postgres://USER:PASSWORD@HOST:5432/DATABASE>",
	"admin":      "<replace: a random key of 32 bytes or more, e.g. openssl rand -hex 32>",
	"callback":   "<replace: whsec_BASE64 (webhook.NewSecret)>",
	"redis-addr": "<replace: HOST:6379, for KEDA>",
	"redis-pass": "<replace: the Redis password, for KEDA>",
}

// defaultSettings are the app settings a driver reads when the function
// names no connection.
var defaultSettings = map[string]string{"rabbit": "RABBIT_SERVER_URL", "nats": "NATS_SERVER_URL",
	"azuresb": "SERVICEBUS_CONNECTION_STRING", "redis": "REDIS_SERVER_URL", "postgres": "JOBHOST_POSTGRES_URL"}

// secretKey adds setting to the Secret and returns it.
func (m *manifests) secretKey(setting, kind string) string {
	if _, ok := m.secretKeys[setting]; !ok {
		m.secretKeys[setting] = cmp.Or(placeholders[kind], "<replace>")
	}
	return setting
}

// connection adds the app setting of a connection of scheme ("" for a
// Storage Queue) to the Secret and returns its name; "" when the driver
// reads settings of its own.
func (m *manifests) connection(scheme, conn string) string {
	if scheme == "" {
		name := cmp.Or(strings.TrimSpace(conn), "Storage")
		if !strings.HasPrefix(name, "AzureWebJobs") {
			_, full := m.settings.Lookup("AzureWebJobs" + name)
			if _, plain := m.settings.Lookup(name); plain && !full {
				return m.secretKey(name, "storage")
			}
			name = "AzureWebJobs" + name
		}
		return m.secretKey(name, "storage")
	}
	def, ok := defaultSettings[scheme]
	if !ok {
		return ""
	}
	return m.secretKey(cmp.Or(conn, def), scheme)
}

// build returns the Secret, the TriggerAuthentications, the Deployment and
// the ScaledObject.
func (m *manifests) build(fcs []*runtime.FunctionConfig) []any {
	var triggers []any
	for _, fc := range fcs {
		if fc.Disabled {
			m.notes = append(m.notes, fmt.Sprintf("function %s is disabled: no trigger", fc.Name()))
			continue
		}
		if fc.Timer != nil {
			m.notes = append(m.notes, fmt.Sprintf("function %s is a timer: no scaler; it fires on one replica whatever the count, so keep --replicas-min at 1 or more for it to run", fc.Name()))
			continue
		}
		if t := m.trigger(fc); t != nil {
			triggers = append(triggers, t)
		}
		for _, out := range fc.Outputs {
			m.outputSetting(fc, out)
		}
	}
	m.hostSettings()
	docs := []any{m.secretObject()}
	docs = append(docs, m.auths...)
	docs = append(docs, m.deployment(len(triggers) > 0))
	if len(triggers) > 0 {
		docs = append(docs, m.scaledObject(triggers))
	} else {
		m.notes = append(m.notes, "no function has a KEDA scaler: no ScaledObject, the Deployment keeps 1 replica")
	}
	return docs
}

// outputSetting adds the connection an output sends through.
func (m *manifests) outputSetting(fc *runtime.FunctionConfig, out *runtime.OutputConfig) {
	if out.Target == "" {
		return
	}
	scheme, _, isURL := strings.Cut(out.Target, "://")
	if !isURL {
		scheme = ""
	}
	if scheme == "mem" || scheme == "memqueue" {
		return
	}
	if m.connection(scheme, out.Connection) == "" {
		m.notes = append(m.notes, fmt.Sprintf("function %s: output %s: add the settings of the %s:// driver to the Secret", fc.Name(), out.Name, scheme))
	}
}

// hostSettings adds the settings of the operations store, the callbacks'
// signing secret and the admin key.
func (m *manifests) hostSettings() {
	ops := m.cfg.Operations
	switch ops.Store {
	case "postgres":
		m.connection("postgres", ops.Connection)
	case "table":
		m.connection("", ops.Connection)
	}
	secret := m.cfg.Callbacks.SigningSecret
	if _, set := m.settings.Lookup(runtime.DefaultCallbackSecretSetting); secret == "" && set {
		secret = runtime.DefaultCallbackSecretSetting
	}
	if secret != "" {
		m.secretKey(secret, "callback")
	}
	m.secretKey("JOBHOST_ADMIN_KEY", "admin")
}

func (m *manifests) meta(name string) object {
	md := object{{k: "name", v: name}}
	if m.o.namespace != "" {
		md = append(md, kv{k: "namespace", v: m.o.namespace})
	}
	return append(md, kv{k: "labels", v: m.labels()})
}

func (m *manifests) labels() object {
	return object{{k: "app.kubernetes.io/name", v: m.o.name}, {k: "app.kubernetes.io/managed-by", v: "jobhost"}}
}

func (m *manifests) secretObject() object {
	data := object{}
	for _, k := range slices.Sorted(maps.Keys(m.secretKeys)) {
		data = append(data, kv{k: k, v: m.secretKeys[k]})
	}
	return object{{k: "apiVersion", v: "v1"}, {k: "kind", v: "Secret"}, {k: "metadata", v: m.meta(m.o.secret)},
		{k: "type", v: "Opaque"},
		{k: "stringData", v: data, comment: "Placeholders: put each setting's value here (or create the Secret yourself); never commit them."}}
}

// listen returns the HTTP listener's port and, when the host.json address
// is not reachable from the kubelet (none, loopback, a fixed address), the
// override that makes the host listen on every address.
func (m *manifests) listen() (int, string, string) {
	addr := m.cfg.HTTP.Listen
	if addr == "" {
		return runtime.DefaultHTTPPort, fmt.Sprintf("0.0.0.0:%d", runtime.DefaultHTTPPort),
			"host.json sets no jobhost.http.listen: the probes need the listener, on every address"
	}
	host, p, _ := net.SplitHostPort(addr)
	port, err := net.LookupPort("tcp", p)
	if err != nil {
		port = runtime.DefaultHTTPPort
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		return port, "", ""
	}
	return port, fmt.Sprintf("0.0.0.0:%d", port),
		"jobhost.http.listen is " + addr + ", which the kubelet cannot reach: listen on every address of the pod"
}

func (m *manifests) deployment(scaled bool) object {
	o := m.o
	port, override, why := m.listen()
	container := object{{k: "name", v: "worker"}, {k: "image", v: o.image}}
	if o.command != "" {
		container = append(container, kv{k: "command", v: []any{o.command}})
	}
	container = append(container, kv{k: "args", v: []any{"run"}},
		kv{k: "ports", v: []any{object{{k: "name", v: "http"}, {k: "containerPort", v: port}, {k: "protocol", v: "TCP"}}}})
	if override != "" {
		container = append(container, kv{k: "env", v: []any{object{{k: "name", v: listenOverride}, {k: "value", v: override}}},
			comment: why + " (JOBHOST_ADMIN_KEY guards the operations API and the dashboard)."})
	}
	requests := object{{k: "cpu", v: o.cpu}, {k: "memory", v: o.memory}}
	limits := object{}
	if o.cpuLimit != "" {
		limits = append(limits, kv{k: "cpu", v: o.cpuLimit})
	}
	limits = append(limits, kv{k: "memory", v: o.memoryLimit})
	probe := func(path string, period, failures int) object {
		return object{{k: "httpGet", v: object{{k: "path", v: path}, {k: "port", v: "http"}}},
			{k: "periodSeconds", v: period}, {k: "failureThreshold", v: failures}}
	}
	container = append(container,
		kv{k: "envFrom", v: []any{object{{k: "secretRef", v: object{{k: "name", v: o.secret}}}}}},
		kv{k: "livenessProbe", v: probe("/livez", 20, 3)},
		kv{k: "readinessProbe", v: probe("/readyz", 5, 2)},
		kv{k: "resources", v: object{{k: "requests", v: requests}, {k: "limits", v: limits}}},
		kv{k: "securityContext", v: object{{k: "allowPrivilegeEscalation", v: false}, {k: "readOnlyRootFilesystem", v: true},
			{k: "capabilities", v: object{{k: "drop", v: []any{"ALL"}}}}}})
	grace := int(math.Ceil((m.cfg.ShutdownTimeout + runtime.ShutdownMargin).Seconds())) + graceSlackSeconds
	pod := object{
		{k: "terminationGracePeriodSeconds", v: grace, comment: fmt.Sprintf("jobhost.shutdownTimeout %s + the host's margin %s + %d s: a stop never cuts the drain.",
			runtime.FormatTimeSpan(m.cfg.ShutdownTimeout), runtime.ShutdownMargin, graceSlackSeconds)},
		{k: "securityContext", v: object{{k: "runAsNonRoot", v: true}, {k: "runAsUser", v: 65532}, {k: "runAsGroup", v: 65532},
			{k: "seccompProfile", v: object{{k: "type", v: "RuntimeDefault"}}}}},
		{k: "containers", v: []any{container}},
	}
	spec := object{}
	if !scaled {
		spec = append(spec, kv{k: "replicas", v: 1})
	}
	spec = append(spec, kv{k: "selector", v: object{{k: "matchLabels", v: object{{k: "app.kubernetes.io/name", v: o.name}}}}},
		kv{k: "template", v: object{{k: "metadata", v: object{{k: "labels", v: m.labels()}}}, {k: "spec", v: pod}}})
	return object{{k: "apiVersion", v: "apps/v1"}, {k: "kind", v: "Deployment"}, {k: "metadata", v: m.meta(o.name)}, {k: "spec", v: spec}}
}

func (m *manifests) scaledObject(triggers []any) object {
	o := m.o
	spec := object{
		{k: "scaleTargetRef", v: object{{k: "name", v: o.name}}},
		{k: "pollingInterval", v: o.pollInterval}, {k: "cooldownPeriod", v: o.cooldown},
		{k: "minReplicaCount", v: o.minReplicas}, {k: "maxReplicaCount", v: o.maxReplicas},
		{k: "triggers", v: triggers, comment: "One trigger per function: KEDA scales the Deployment to the largest of their replica counts."},
	}
	return object{{k: "apiVersion", v: "keda.sh/v1alpha1"}, {k: "kind", v: "ScaledObject"}, {k: "metadata", v: m.meta(o.name)}, {k: "spec", v: spec}}
}

// auth returns the name of a TriggerAuthentication for setting, made on
// first use with params (KEDA parameter -> Secret key).
func (m *manifests) auth(setting string, params ...string) string {
	name := m.o.name + "-" + strings.Trim(notDNS.ReplaceAllString(strings.ToLower(setting), "-"), "-")
	if m.authNames == nil {
		m.authNames = map[string]bool{}
	}
	if !m.authNames[name] {
		m.authNames[name] = true
		var refs []any
		for i := 0; i+1 < len(params); i += 2 {
			refs = append(refs, object{{k: "parameter", v: params[i]}, {k: "name", v: m.o.secret}, {k: "key", v: params[i+1]}})
		}
		m.auths = append(m.auths, object{{k: "apiVersion", v: "keda.sh/v1alpha1"}, {k: "kind", v: "TriggerAuthentication"},
			{k: "metadata", v: m.meta(name)}, {k: "spec", v: object{{k: "secretTargetRef", v: refs}}}})
	}
	return name
}

// trigger returns fc's KEDA trigger, or nil (with a note) for a broker KEDA
// cannot scale on here.
func (m *manifests) trigger(fc *runtime.FunctionConfig) object {
	target, activation := strconv.Itoa(m.o.queueLength.of(fc.Name())), strconv.Itoa(m.o.activation.of(fc.Name()))
	t := func(typ string, md object, authRef string) object {
		tr := object{{k: "type", v: typ}, {k: "name", v: strings.ToLower(fc.Name())}, {k: "metadata", v: md}}
		if authRef != "" {
			tr = append(tr, kv{k: "authenticationRef", v: object{{k: "name", v: authRef}}})
		}
		return tr
	}
	if fc.URL == nil {
		return t("azure-queue", object{{k: "queueName", v: fc.Queue}, {k: "queueLength", v: target},
			{k: "activationQueueLength", v: activation}, {k: "connectionFromEnv", v: m.connection("", fc.Connection)}}, "")
	}
	u := fc.URL
	name := strings.TrimPrefix(path.Join(u.Host, u.Path), "/")
	q := u.Query()
	switch u.Scheme {
	case "rabbit":
		setting := m.connection("rabbit", fc.Connection)
		md := object{{k: "protocol", v: "amqp"}, {k: "mode", v: "QueueLength"}, {k: "value", v: target},
			{k: "activationValue", v: activation}, {k: "queueName", v: name}}
		if m.o.rabbitVhost != "" {
			md = append(md, kv{k: "vhostName", v: m.o.rabbitVhost})
		}
		return t("rabbitmq", md, m.auth(setting, "host", setting))
	case "nats":
		m.connection("nats", fc.Connection)
		stream, consumer := natsNames(u)
		return t("nats-jetstream", object{{k: "natsServerMonitoringEndpoint", v: m.o.natsMonitoring}, {k: "account", v: m.o.natsAccount},
			{k: "stream", v: stream}, {k: "consumer", v: consumer}, {k: "lagThreshold", v: target},
			{k: "activationLagThreshold", v: activation}}, "")
	case "azuresb":
		md := object{{k: "queueName", v: name}}
		if sub := q.Get("subscription"); sub != "" {
			md = object{{k: "topicName", v: name}, {k: "subscriptionName", v: sub}}
		}
		md = append(md, kv{k: "messageCount", v: target}, kv{k: "activationMessageCount", v: activation},
			kv{k: "connectionFromEnv", v: m.connection("azuresb", fc.Connection)})
		return t("azure-servicebus", md, "")
	case "redis":
		setting := m.connection("redis", fc.Connection)
		addr, pass := m.secretKey(setting+"_KEDA_ADDRESS", "redis-addr"), m.secretKey(setting+"_KEDA_PASSWORD", "redis-pass")
		return t("redis-streams", object{{k: "stream", v: name}, {k: "consumerGroup", v: cmp.Or(q.Get("group"), "jobhost")},
			{k: "lagCount", v: target}, {k: "activationLagCount", v: activation}}, m.auth(setting, "address", addr, "password", pass))
	case "postgres":
		table := "jobhost_queue_messages"
		if s := q.Get("schema"); s != "" {
			table = pgIdent(s) + "." + table
		}
		return t("postgresql", object{{k: "query", v: "SELECT count(*) FROM " + table + " WHERE queue = " + pgString(name)},
			{k: "targetQueryValue", v: target}, {k: "activationTargetQueryValue", v: activation},
			{k: "connectionFromEnv", v: m.connection("postgres", fc.Connection)}}, "")
	}
	m.notes = append(m.notes, fmt.Sprintf("function %s: no KEDA scaler for %s:// triggers here: it does not scale the Deployment", fc.Name(), u.Scheme))
	return nil
}

// natsNames returns the stream and durable consumer a nats:// trigger URL
// names, as triggers/jetstream derives them (OptionsFromURL,
// DefaultConsumerName), without linking that driver.
func natsNames(u *url.URL) (stream, consumer string) {
	q := u.Query()
	subject := q.Get("subject")
	stream = u.Host
	if s := q.Get("stream"); s != "" {
		stream, subject = s, u.Host
	}
	if consumer = q.Get("consumer"); consumer != "" {
		return stream, consumer
	}
	if subject == "" {
		return stream, "jobhost-" + stream
	}
	return stream, strings.NewReplacer(".", "_", "*", "+", ">", "#").Replace(subject)
}

// pgString quotes s as an SQL string literal.
func pgString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// pgIdent quotes s as an SQL identifier.
func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
