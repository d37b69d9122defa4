package runtime

import (
	"os"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/client"
	"github.com/jobhost/jobhost/functions"
	"github.com/jobhost/jobhost/operations"
)

// ClientOptions returns the options of a client.Client that sends as this
// configuration's host reads: the app settings (with the registry's
// setting defaults) for %Setting% and connections, every function of reg
// addressable by name with its queue, connection, messageEncoding and
// input validation, and the host's encoding rule for other queues (the
// function reading a Storage Queue decides, else host.json's
// extensions.queues.messageEncoding; extensions.pubsub's for URLs). A
// configuration problem (as ResolveFunctions reports it) is an error.
//
// A web app that links the worker's functions sends through it without
// running the host:
//
//	settings, err := runtime.LoadAppSettings(os.Environ(), "local.settings.json", false)
//	cfg, err := runtime.LoadConfig("host.json", false, settings)
//	opts, err := runtime.ClientOptions(cfg, settings, functions.Default)
//	opts.Store = store // for Submit, Get, List, Cancel, Wait
//	c, err := client.New(opts)
func ClientOptions(cfg *Config, settings *AppSettings, reg *functions.Registry) (client.Options, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if reg == nil {
		reg = functions.Default
	}
	if settings == nil {
		settings, _ = LoadAppSettings(os.Environ(), "", false)
	}
	settings = settings.WithDefaults(reg.SettingDefaults())
	funcs, _, err := ResolveFunctions(cfg, reg, settings)
	if err != nil {
		return client.Options{}, err
	}
	return clientOptions(cfg, settings, funcs), nil
}

// clientOptions builds the options from resolved functions.
func clientOptions(cfg *Config, settings *AppSettings, funcs []*FunctionConfig) client.Options {
	o := client.Options{
		Lookup:          settings.Lookup,
		URLEncoding:     cfg.PubSub.MessageEncoding,
		StorageEncoding: storageEncodingRule(cfg, funcs),

		TraceStorageQueueBody: cfg.Tracing.StorageQueueBody,
	}
	for _, fc := range funcs {
		enc := fc.Queues.MessageEncoding
		o.Functions = append(o.Functions, client.Function{
			Name:       fc.Name(),
			Queue:      fc.Definition.Trigger.Queue, // expanded by client.New as ResolveFunctions expanded it
			Connection: fc.Definition.Trigger.Connection,
			Encoding:   &enc,
			Validate:   fc.Definition.Validate,
		})
	}
	return o
}

// storageEncodingRule is how messages for a Storage Queue are encoded: as
// the first function reading it decodes them, else as host.json says.
func storageEncodingRule(cfg *Config, funcs []*FunctionConfig) func(connection, queue string) bindings.Encoding {
	return func(connection, queue string) bindings.Encoding {
		for _, fc := range funcs {
			if fc.StorageQueue() && fc.Queue == queue && fc.Connection == connection {
				return fc.Queues.MessageEncoding
			}
		}
		return cfg.Queues.MessageEncoding
	}
}

// NewClient returns a client built with ClientOptions and store (nil: no
// operations); nil cfg, settings or reg mean DefaultConfig(), the process
// environment and functions.Default.
func NewClient(cfg *Config, settings *AppSettings, reg *functions.Registry, store operations.Store) (*client.Client, error) {
	o, err := ClientOptions(cfg, settings, reg)
	if err != nil {
		return nil, err
	}
	o.Store = store
	return client.New(o)
}
