package azuritetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

func TestSharedTable(t *testing.T) {
	srv := azuritetest.SharedTable(t)
	if !strings.Contains(srv.ConnectionString, "TableEndpoint=http://127.0.0.1:") || srv.Port == 0 {
		t.Fatalf("connection string %q, port %d", srv.ConnectionString, srv.Port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	name := srv.NewTableName(t)
	c := srv.TableServiceClient(t, false)
	if _, err := c.CreateTable(ctx, name, nil); err != nil {
		t.Fatalf("create table %s: %v", name, err)
	}
	if azuritetest.SharedTable(t) != srv {
		t.Fatal("SharedTable returned a second server")
	}
}

func TestStartTableRestart(t *testing.T) {
	srv := azuritetest.StartTable(t, azuritetest.Options{})
	c := srv.TableServiceClient(t, true)
	name := srv.NewTableName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.CreateTable(ctx, name, nil); err != nil {
		t.Fatalf("create table: %v", err)
	}
	srv.Stop()
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := c.CreateTable(short, name+"x", nil); err == nil {
		t.Fatal("create table on a stopped server succeeded")
	}
	srv.Restart(t)
	// In memory: the table is gone, so it can be created again.
	if _, err := c.CreateTable(ctx, name, nil); err != nil {
		t.Fatalf("create table after restart: %v", err)
	}
}
