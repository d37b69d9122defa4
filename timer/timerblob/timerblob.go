// Package timerblob keeps timer statuses and singleton leases in Azure
// Blob Storage, where and as Azure Functions keeps them, so that jobhost
// and Functions hosts sharing a storage account and host id read each
// other's state:
//
//	azure-webjobs-hosts/timers/{hostId}/{function}/status      the status JSON (timer.Status)
//	azure-webjobs-hosts/locks/{hostId}/{function}.Listener     an empty blob whose lease is the singleton lock
//
// Functions names the function Namespace.Class.Method; jobhost uses the
// function's registered name.
package timerblob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/lease"
	"github.com/google/uuid"

	"github.com/jobhost/jobhost/timer"
)

// Container is the container Functions keeps host state in.
const Container = "azure-webjobs-hosts"

// Blob leases last 15 to 60 seconds (or forever, which a timer lock never
// uses).
const (
	MinLease = 15 * time.Second
	MaxLease = 60 * time.Second
)

// Store is a timer.StatusStore and timer.Locker on one container, for one
// host id. It is safe for concurrent use.
type Store struct {
	c      *container.Client
	hostID string
}

var (
	_ timer.StatusStore = (*Store)(nil)
	_ timer.Locker      = (*Store)(nil)
)

// New returns a Store on client's azure-webjobs-hosts container for
// hostID.
func New(client *azblob.Client, hostID string) (*Store, error) {
	return NewContainer(client.ServiceClient().NewContainerClient(Container), hostID)
}

// NewContainer returns a Store on container c (normally
// azure-webjobs-hosts) for hostID. The container is created when first
// needed.
func NewContainer(c *container.Client, hostID string) (*Store, error) {
	if err := checkName("host id", hostID); err != nil {
		return nil, err
	}
	return &Store{c: c, hostID: hostID}, nil
}

func checkName(what, s string) error {
	if s == "" || strings.ContainsAny(s, "/\\") || strings.TrimSpace(s) != s {
		return fmt.Errorf("timerblob: %s %q must be non-empty, without slashes or surrounding spaces", what, s)
	}
	return nil
}

// StatusPath returns the status blob's name for function.
func (s *Store) StatusPath(function string) string {
	return "timers/" + s.hostID + "/" + function + "/status"
}

// LockPath returns the lock blob's name for function.
func (s *Store) LockPath(function string) string {
	return "locks/" + s.hostID + "/" + timer.LockName(function)
}

// Load implements timer.StatusStore.
func (s *Store) Load(ctx context.Context, function string) (timer.Status, error) {
	if err := checkName("function", function); err != nil {
		return timer.Status{}, err
	}
	resp, err := s.c.NewBlobClient(s.StatusPath(function)).DownloadStream(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return timer.Status{}, fmt.Errorf("%w for %s", timer.ErrNoStatus, function)
	}
	if err != nil {
		return timer.Status{}, fmt.Errorf("timerblob: read %s: %w", s.StatusPath(function), err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return timer.Status{}, fmt.Errorf("timerblob: read %s: %w", s.StatusPath(function), err)
	}
	var st timer.Status
	// Json.NET may write a byte-order mark.
	if err := json.Unmarshal(bytes.TrimPrefix(buf.Bytes(), []byte("\xef\xbb\xbf")), &st); err != nil {
		return timer.Status{}, fmt.Errorf("timerblob: %s: %w", s.StatusPath(function), err)
	}
	return st, nil
}

// Save implements timer.StatusStore.
func (s *Store) Save(ctx context.Context, function string, st timer.Status) error {
	if err := checkName("function", function); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	bb := s.c.NewBlockBlobClient(s.StatusPath(function))
	_, err = bb.UploadBuffer(ctx, b, nil)
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		if err = s.createContainer(ctx); err == nil {
			_, err = bb.UploadBuffer(ctx, b, nil)
		}
	}
	if err != nil {
		return fmt.Errorf("timerblob: write %s: %w", s.StatusPath(function), err)
	}
	return nil
}

func (s *Store) createContainer(ctx context.Context) error {
	_, err := s.c.Create(ctx, nil)
	if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil
	}
	return err
}

// Acquire implements timer.Locker with a blob lease on LockPath(function),
// creating the (empty) lock blob and the container when missing. d must be
// between 15 and 60 seconds, whole seconds.
func (s *Store) Acquire(ctx context.Context, function string, d time.Duration) (timer.Lease, error) {
	if err := checkName("function", function); err != nil {
		return nil, err
	}
	if d < MinLease || d > MaxLease || d%time.Second != 0 {
		return nil, fmt.Errorf("timerblob: lease duration %v: blob leases last 15 to 60 whole seconds", d)
	}
	name := s.LockPath(function)
	bb := s.c.NewBlockBlobClient(name)
	lc, err := lease.NewBlobClient(bb, &lease.BlobClientOptions{LeaseID: to.Ptr(uuid.NewString())})
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		_, err = lc.AcquireLease(ctx, int32(d/time.Second), nil)
		switch {
		case err == nil:
			return &blobLease{lc: lc, name: name}, nil
		case bloberror.HasCode(err, bloberror.LeaseAlreadyPresent, bloberror.LeaseIsBreakingAndCannotBeAcquired):
			return nil, fmt.Errorf("%w: %s", timer.ErrLeaseHeld, name)
		case attempt == 0 && bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound):
			if err := s.createLockBlob(ctx, bb); err != nil {
				return nil, fmt.Errorf("timerblob: create %s: %w", name, err)
			}
			continue
		default:
			return nil, fmt.Errorf("timerblob: lease %s: %w", name, err)
		}
	}
}

// createLockBlob creates the empty lock blob unless it exists (a leased
// blob must not be overwritten), and the container if needed.
func (s *Store) createLockBlob(ctx context.Context, bb *blockblob.Client) error {
	o := &blockblob.UploadBufferOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)},
	}}
	_, err := bb.UploadBuffer(ctx, nil, o)
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		if err = s.createContainer(ctx); err != nil {
			return err
		}
		_, err = bb.UploadBuffer(ctx, nil, o)
	}
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet, bloberror.LeaseIDMissing) {
		return nil // someone else created it (and may hold it)
	}
	var re interface{ StatusCode() int }
	if errors.As(err, &re) && re.StatusCode() == 409 {
		return nil
	}
	return err
}

type blobLease struct {
	lc   *lease.BlobClient
	name string
}

// Renew implements timer.Lease.
func (l *blobLease) Renew(ctx context.Context) error {
	_, err := l.lc.RenewLease(ctx, nil)
	if err == nil {
		return nil
	}
	if bloberror.HasCode(err, bloberror.LeaseIDMismatchWithLeaseOperation, bloberror.LeaseNotPresentWithLeaseOperation,
		bloberror.LeaseLost, bloberror.LeaseIsBrokenAndCannotBeRenewed, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return fmt.Errorf("%w: %s (%s)", timer.ErrLeaseLost, l.name, code(err))
	}
	return fmt.Errorf("timerblob: renew lease on %s: %w", l.name, err)
}

// Release implements timer.Lease.
func (l *blobLease) Release(ctx context.Context) error {
	_, err := l.lc.ReleaseLease(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.LeaseIDMismatchWithLeaseOperation, bloberror.LeaseNotPresentWithLeaseOperation,
		bloberror.LeaseLost, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
		return nil
	}
	return fmt.Errorf("timerblob: release lease on %s: %w", l.name, err)
}

// code returns the storage error code of err, or its text.
func code(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return re.ErrorCode
	}
	return err.Error()
}
