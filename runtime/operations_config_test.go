package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jobhost/jobhost/functions"
	_ "github.com/jobhost/jobhost/operations/pgstore"
	"github.com/jobhost/jobhost/triggers"
)

// pgTestURL is the machine's PostgreSQL, or the test is skipped (failed
// with JOBHOST_REQUIRE_BROKERS=1).
func pgTestURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("JOBHOST_POSTGRES_URL")
	if u == "" {
		u = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err == nil {
		conn.Close(ctx)
		return u
	}
	if os.Getenv("JOBHOST_REQUIRE_BROKERS") == "1" {
		t.Fatalf("PostgreSQL not available: %v", err)
	}
	t.Skipf("POSTGRESQL NOT AVAILABLE (%v)", err)
	return ""
}

// A PostgreSQL store whose table was never migrated stops the host at
// start, naming the command to run, rather than retrying its writes for
// ever.
func TestUnmigratedStoreStopsTheHost(t *testing.T) {
	u := pgTestURL(t)
	reg := &functions.Registry{}
	functions.Add(reg, "F", functions.SubscriptionTrigger("memqueue://ops-unmigrated"),
		func(context.Context, struct{}, *triggers.Message) error { return nil })
	cfg := DefaultConfig()
	cfg.Operations.Store = "postgres"
	cfg.Operations.Table = fmt.Sprintf("jobhost_never_migrated_%d", time.Now().UnixNano())
	h, err := New(Options{Registry: reg, Config: cfg, Logs: discardLogs(t),
		Settings: NewAppSettings(map[string]string{"JOBHOST_POSTGRES_URL": u})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = h.Run(ctx)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "jobhost operations migrate") {
		t.Fatalf("Run: %v; want a configuration problem naming jobhost operations migrate", err)
	}
}
