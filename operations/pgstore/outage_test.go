package pgstore_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/operations"
	"github.com/jobhost/jobhost/operations/pgstore"
)

// TestOutage: a store that cannot reach its server returns errors, never
// ErrNotFound; no error holds the DSN's password.
func TestOutage(t *testing.T) {
	ctx := ctxT(t)
	s := openStore(t, pgstore.Options{})
	if _, err := s.Create(ctx, &operations.Record{ID: "a", Name: "f"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	check := func(op string, err error) {
		t.Helper()
		if err == nil || errors.Is(err, operations.ErrNotFound) || errors.Is(err, operations.ErrExists) {
			t.Errorf("%s on a closed store: %v, want an outage error", op, err)
		}
	}
	_, err := s.Get(ctx, "a")
	check("Get", err)
	_, err = s.Create(ctx, &operations.Record{ID: "b", Name: "f"})
	check("Create", err)
	_, err = s.Update(ctx, "a", operations.Cancel(time.Now()))
	check("Update", err)
	_, err = s.List(ctx, operations.Query{})
	check("List", err)
	_, err = s.Purge(ctx, time.Now(), 10)
	check("Purge", err)
	t.Logf("closed store: %v", err)

	const secret = "s3cr3t-pa55"
	for _, dsn := range []string{
		"postgres://postgres:" + secret + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 user=postgres password=" + secret + " dbname=test connect_timeout=2",
		"postgres://postgres:" + secret + "@127.0.0.1:notaport/test",
		"postgres://postgres:" + secret + "@[::1/test",
		"host=127.0.0.1 password='" + secret + " port=x",
	} {
		s, err := pgstore.Open(ctx, dsn, pgstore.Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open of an unreachable server succeeded")
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v", err), secret) {
			t.Errorf("the error holds the password: %v", err)
		}
		t.Logf("unreachable: %v", err)
	}
	// Wrong password against the real server (trust auth ignores it, so
	// only check the text when it fails).
	if s, err := pgstore.Open(ctx, strings.Replace(require(t), "@", ":"+secret+"@", 1), pgstore.Options{Table: "jhtest_never_created"}); err != nil {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error holds the password: %v", err)
		}
	} else {
		s.Close()
	}
}

// TestServerDropsConnections: when the server ends the store's sessions
// (a restart, a failover), calls fail with errors, never ErrNotFound, and
// the store recovers without being reopened.
func TestServerDropsConnections(t *testing.T) {
	dsn := require(t)
	ctx := ctxT(t)
	app := fmt.Sprintf("jhtest_drop_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if !strings.Contains(dsn, "://") {
		sep = " "
	}
	s := openStore(t, pgstore.Options{})
	s2, err := pgstore.Open(ctx, dsn+sep+"application_name="+app, pgstore.Options{Table: s.Table()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Create(ctx, &operations.Record{ID: "a", Name: "f"}); err != nil {
		t.Fatal(err)
	}
	conn := admin(t)
	var killed int
	if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminated %d sessions: %v", killed, err)
	}
	failures := 0
	for i := range 20 {
		_, err := s2.Get(ctx, "a")
		if err == nil {
			t.Logf("recovered after %d failed calls (%d sessions terminated)", failures, killed)
			return
		}
		if errors.Is(err, operations.ErrNotFound) {
			t.Fatalf("call %d after the sessions ended: %v, want an outage error", i, err)
		}
		t.Logf("call %d: %v", i, err)
		failures++
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the store did not recover")
}
