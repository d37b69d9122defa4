package azuritetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jobhost/jobhost/triggers/azurequeue/azuritetest"
)

func TestSharedBlob(t *testing.T) {
	srv := azuritetest.SharedBlob(t)
	if !strings.Contains(srv.ConnectionString, "BlobEndpoint=http://127.0.0.1:") || srv.Port == 0 {
		t.Fatalf("connection string %q, port %d", srv.ConnectionString, srv.Port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := srv.BlobClient(t, false)
	name := srv.NewContainerName(t)
	if _, err := c.CreateContainer(ctx, name, nil); err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	if _, err := c.UploadBuffer(ctx, name, "a/b/status", []byte(`{}`), nil); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if azuritetest.SharedBlob(t) != srv {
		t.Fatal("SharedBlob returned a second server")
	}
}

func TestStartBlobRestart(t *testing.T) {
	srv := azuritetest.StartBlob(t, azuritetest.Options{})
	c := srv.BlobClient(t, true)
	name := srv.NewContainerName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.CreateContainer(ctx, name, nil); err != nil {
		t.Fatalf("create container: %v", err)
	}
	srv.Stop()
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := c.CreateContainer(short, name+"x", nil); err == nil {
		t.Fatal("create container on a stopped server succeeded")
	}
	srv.Restart(t)
	// In memory: the container is gone, so it can be created again.
	if _, err := c.CreateContainer(ctx, name, nil); err != nil {
		t.Fatalf("create container after restart: %v", err)
	}
}
