package runtime

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// jobhost.dashboard and jobhost.tracing are read, and a bad value is one
// problem naming its key.
func TestLoadConfigDashboardAndTracing(t *testing.T) {
	p := writeHostJSON(t, `{"version": "2.0", "jobhost": {
	  "dashboard": {"enabled": true, "readOnly": true, "allowRemote": true, "recentInvocations": 500},
	  "tracing": {"storageQueueBody": true, "linkAfter": "00:05:00"}}}`)
	cfg, err := LoadConfig(p, true, NewAppSettings(nil))
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Dashboard; d.Disabled || !d.ReadOnly || !d.AllowRemote || d.RecentInvocations != 500 {
		t.Errorf("dashboard = %+v", d)
	}
	if tr := cfg.Tracing; !tr.StorageQueueBody || tr.LinkAfter != 5*time.Minute {
		t.Errorf("tracing = %+v", tr)
	}

	p = writeHostJSON(t, `{"version": "2.0", "jobhost": {"dashboard": {"enabled": "yes", "recentInvocations": 0},
	  "tracing": {"linkAfter": 5}}}`)
	_, err = LoadConfig(p, true, NewAppSettings(nil))
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("err = %v; want three problems", err)
	}
	for _, key := range []string{"jobhost.dashboard.enabled", "jobhost.dashboard.recentInvocations", "jobhost.tracing.linkAfter"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("no problem names %s: %v", key, err)
		}
	}
}
