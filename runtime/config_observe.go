package runtime

import (
	"fmt"
	"time"
)

// DashboardSettings are jobhost.dashboard: the dashboard the HTTP listener
// serves at /.
type DashboardSettings struct {
	// Disabled turns the dashboard off (jobhost.dashboard.enabled: false).
	Disabled bool
	// ReadOnly hides and refuses every action (requeue, purge, cancel).
	ReadOnly bool
	// AllowRemote serves clients other than loopback ones; it needs
	// JOBHOST_ADMIN_KEY or JOBHOST_DASHBOARD_USER and
	// JOBHOST_DASHBOARD_PASSWORD.
	AllowRemote bool
	// RecentInvocations is how many finished invocations the host keeps
	// for the invocations page (default 10000).
	RecentInvocations int
}

// Settings naming the dashboard's basic-auth credentials.
const (
	SettingDashboardUser     = "JOBHOST_DASHBOARD_USER"
	SettingDashboardPassword = "JOBHOST_DASHBOARD_PASSWORD"
)

func (d *decoder) dashboardSection(cfg *Config, v any) {
	m, ok := d.section("jobhost.dashboard", "jobhost.dashboard", v)
	if !ok {
		return
	}
	o := &cfg.Dashboard
	for k, fv := range m {
		key := "jobhost.dashboard." + k
		switch k {
		case "enabled":
			if b, ok := d.boolean(key, "jobhost.dashboard.enabled", fv); ok {
				o.Disabled = !b
			}
		case "readonly":
			if b, ok := d.boolean(key, "jobhost.dashboard.readOnly", fv); ok {
				o.ReadOnly = b
			}
		case "allowremote":
			if b, ok := d.boolean(key, "jobhost.dashboard.allowRemote", fv); ok {
				o.AllowRemote = b
			}
		case "recentinvocations":
			if n, ok := d.integer(key, "jobhost.dashboard.recentInvocations", fv, 1, 1_000_000); ok {
				o.RecentInvocations = n
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

func (d *decoder) tracingSection(cfg *Config, v any) {
	m, ok := d.section("jobhost.tracing", "jobhost.tracing", v)
	if !ok {
		return
	}
	o := &cfg.Tracing
	for k, fv := range m {
		key := "jobhost.tracing." + k
		switch k {
		case "storagequeuebody":
			if b, ok := d.boolean(key, "jobhost.tracing.storageQueueBody", fv); ok {
				o.StorageQueueBody = b
			}
		case "linkafter":
			if t, ok := d.duration(key, "jobhost.tracing.linkAfter", fv, 0, 365*24*time.Hour); ok {
				o.LinkAfter = t
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}

// TimerSettings are jobhost.timers: where timer functions keep their
// schedule status and their one-host-per-occurrence lease.
type TimerSettings struct {
	// Store is "blob" (Azure Storage, as Functions keeps them), "postgres"
	// or "memory" (this process only). Empty: blob when the Storage
	// connection is set, else postgres when jobhost.operations.store is,
	// else memory.
	Store string
	// Connection names the Storage connection (blob) or the app setting
	// holding the database URL (postgres).
	Connection string
	// LeaseDuration is the lease's length (default 60 s; blob leases take
	// 15 to 60 s); a host that loses it stops firing at once, another
	// takes over within two of them.
	LeaseDuration time.Duration
	// AcquireInterval is how often a host without the lease tries for it
	// (default 1 min; at most LeaseDuration is sensible).
	AcquireInterval time.Duration
}

func (d *decoder) timersSection(cfg *Config, v any) {
	m, ok := d.section("jobhost.timers", "jobhost.timers", v)
	if !ok {
		return
	}
	o := &cfg.Timers
	for k, fv := range m {
		key := "jobhost.timers." + k
		switch k {
		case "store":
			s, _ := fv.(string)
			switch s {
			case "blob", "postgres", "memory":
				o.Store = s
			default:
				d.problem(key, "jobhost.timers.store", fmt.Sprintf(`must be "blob", "postgres" or "memory", got %s`, show(fv)))
			}
		case "connection":
			if s, ok := fv.(string); ok && s != "" {
				o.Connection = s
			} else {
				d.problem(key, "jobhost.timers.connection", fmt.Sprintf("must name an app setting or connection, got %s", show(fv)))
			}
		case "leaseduration":
			if t, ok := d.duration(key, "jobhost.timers.leaseDuration", fv, time.Second, time.Hour); ok {
				o.LeaseDuration = t
			}
		case "acquireinterval":
			if t, ok := d.duration(key, "jobhost.timers.acquireInterval", fv, 100*time.Millisecond, time.Hour); ok {
				o.AcquireInterval = t
			}
		default:
			d.warn(key, key, "unknown key, ignored")
		}
	}
}
