package runtime

import (
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
