// Package tablestore keeps operation records in Azure Table Storage (or
// Azurite), as an operations.Store registered as the "table" store kind.
//
// # Layout
//
// Records live in one table (Options.Table, "jobhostoperations" by
// default), one entity a record: PartitionKey is the record's id, RowKey is
// empty. Its properties:
//
//	Name, RunAs                 Edm.String, always written ('' when not set), for List's filters
//	Status, State               Edm.Int32, Dataverse codes (State is derived, for readers)
//	Attempt                     Edm.Int32
//	ErrorCode                   Edm.String, omitted when empty
//	StartTime, EndTime          Edm.DateTime (UTC), omitted when not set
//	CreatedOn, LastUpdated,
//	ExpiresOn                   Edm.DateTime (UTC)
//	Input, Output, Progress,
//	ErrorMessage, CallbackURL,
//	IdempotencyKey              Edm.String, or split (see below); omitted when not set
//
// Input, Output and Progress are JSON text, kept exactly as written (byte
// for byte). A value that is valid UTF-8 and fits one string property (at
// most 32 Ki UTF-16 code units, the service's 64 KiB limit) is kept as
// that property, readable in Storage Explorer. A larger one is split into
// Edm.Binary properties of at most 64 KiB each, named after the field and
// numbered from 0 (Input0, Input1, ...), which together hold its bytes; so
// an input of operations.MaxInput (512 KiB) takes eight. The same goes for
// ErrorMessage, CallbackURL and IdempotencyKey.
//
// An entity is at most 1 MiB (counted as the service counts it, and as the
// JSON sent, in which binary is base64), so a record's values together
// cannot all be at their largest: a 512 KiB input leaves room for an output
// of about 250 KiB. A Create that does not fit is refused with an error
// wrapping ErrTooLarge. An Update that does not fit gives up what is too
// large rather than fail a write the host would retry in vain: a new
// output is dropped and the record says OutputTooLarge instead (as
// operations.Succeed does for an output over operations.MaxOutput; the
// operation keeps its status), then a new error message over 16 KiB is
// cut. An Update that still does not fit is refused with ErrTooLarge.
//
// Times are kept in UTC at the service's precision of 100 ns; the store
// truncates them before writing, so what it returns is what it stored.
//
// # Concurrency, lists and purges
//
// Update reads the entity, applies the change to a copy and replaces the
// entity only if its ETag still matches (If-Match); when another write came
// in between (412) it reads again and retries, at most MaxAttempts times in
// a row, then fails with ErrConflict. The ETag is the record's Version.
//
// List runs one OData query (Name, Status, Since, RunAs and "not expired"
// become a filter, the cursor a PartitionKey gt '<id>' condition); results
// come in PartitionKey order, which is id order. The cursor is opaque (the
// page's last id, versioned and base64url-encoded); one List did not make
// is an error wrapping ErrBadCursor. Purge queries ExpiresOn lt now and deletes
// what it finds (conditionally, so a record rewritten in between stays).
//
// The table is created on first use unless Options.CreateIfMissing is
// false; it is created again should it vanish (as in an in-memory Azurite
// restarted).
//
// # Connections
//
// FromConnectionString takes a storage connection string; Open and
// NewServiceClient resolve a connection name from app settings as the
// queue driver does (AzureWebJobsStorage by default, UseDevelopmentStorage=true
// meaning Azurite's table service on 127.0.0.1:10002). The "table" store
// kind of operations.OpenStore opens the store that way, on
// OpenOptions.Connection, Table and TimeToLive.
//
// No error holds an account key, a shared access signature or a connection
// string.
package tablestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/jobhost/jobhost/operations"
)

// DefaultTable is the table used when Options.Table is empty.
const DefaultTable = "jobhostoperations"

// MaxAttempts bounds how many times Update reads and writes a record that
// other writers keep changing before it gives up with ErrConflict.
const MaxAttempts = 100

// Errors the store returns besides operations' own.
var (
	// ErrTooLarge: the record does not fit one table entity (1 MiB) or a
	// property (Name, RunAs, ErrorCode: 32 Ki UTF-16 code units each).
	ErrTooLarge = errors.New("tablestore: the record is too large for a table entity")
	// ErrConflict: Update lost MaxAttempts races for one record in a row.
	ErrConflict = errors.New("tablestore: too many conflicting writes")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("tablestore: the store is closed")
	// ErrBadCursor: List was given a cursor no List returned.
	ErrBadCursor = fmt.Errorf("tablestore: %w", operations.ErrInvalidCursor)
)

// Options configure a Store.
type Options struct {
	// Table is the table's name: 3 to 63 letters and digits, starting
	// with a letter, not "tables". Empty means DefaultTable.
	Table string
	// TimeToLive is how long a record is kept after it is created, when it
	// is created without an ExpiresOn (0 means
	// operations.DefaultTimeToLive).
	TimeToLive time.Duration
	// Now is the store's clock (nil means time.Now); tests set it.
	Now func() time.Time
	// CreateIfMissing says whether the store creates its table on first
	// use (an existing one is fine). Nil means true; with false the table
	// must exist and calls fail with the service's TableNotFound when it
	// does not.
	CreateIfMissing *bool
	// ClientOptions are used when the store builds the service client
	// itself (FromConnectionString, Open); nil means the SDK's defaults.
	ClientOptions *aztables.ClientOptions
}

// Store is an Azure Table Storage operations.Store. It is safe for
// concurrent use.
type Store struct {
	client *aztables.Client
	table  string
	ttl    time.Duration
	now    func() time.Time
	create bool

	mu      sync.Mutex
	created bool // the table is known to exist
	closed  bool
}

var _ operations.Store = (*Store)(nil)

func init() {
	operations.RegisterStore("table", func(_ context.Context, o operations.OpenOptions) (operations.Store, error) {
		return Open(o.Connection, o.Lookup, Options{Table: o.Table, TimeToLive: o.TimeToLive})
	})
}

// New returns a store keeping records in a table of the service client's
// account. It makes no request: the table is created (if need be) on
// first use.
func New(client *aztables.ServiceClient, o Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("tablestore: no service client")
	}
	table := o.Table
	if table == "" {
		table = DefaultTable
	}
	if err := ValidateTableName(table); err != nil {
		return nil, err
	}
	s := &Store{
		client: client.NewClient(table),
		table:  table,
		ttl:    o.TimeToLive,
		now:    o.Now,
		create: o.CreateIfMissing == nil || *o.CreateIfMissing,
	}
	if s.ttl <= 0 {
		s.ttl = operations.DefaultTimeToLive
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// FromConnectionString returns a store on the account a storage connection
// string names (see NewServiceClientFromConnectionString).
func FromConnectionString(conn string, o Options) (*Store, error) {
	c, err := NewServiceClientFromConnectionString(conn, o.ClientOptions)
	if err != nil {
		return nil, err
	}
	return New(c, o)
}

// Open returns a store on the connection named by an app setting, resolved
// as NewServiceClient does ("" means the AzureWebJobsStorage setting).
func Open(connection string, lookup Lookup, o Options) (*Store, error) {
	c, err := NewServiceClient(connection, lookup, o.ClientOptions)
	if err != nil {
		return nil, err
	}
	return New(c, o)
}

// ValidateTableName reports whether name is a valid table name: 3 to 63
// characters, only ASCII letters and digits, starting with a letter, and
// not the reserved "tables". The error says which rule was broken.
func ValidateTableName(name string) error {
	if n := len(name); n < 3 || n > 63 {
		return fmt.Errorf("tablestore: invalid table name %q: it is %d characters long; it must be 3 to 63", name, n)
	}
	for i, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9':
			if i == 0 {
				return fmt.Errorf("tablestore: invalid table name %q: it must start with a letter", name)
			}
		default:
			return fmt.Errorf("tablestore: invalid table name %q: %q at position %d; only letters and digits are allowed", name, c, i)
		}
	}
	if strings.EqualFold(name, "tables") {
		return fmt.Errorf("tablestore: invalid table name %q: it is reserved", name)
	}
	return nil
}

// Table returns the name of the table the store keeps records in.
func (s *Store) Table() string { return s.table }

// Close marks the store closed: later calls fail with ErrClosed. It is
// idempotent. (The SDK's client holds nothing to release.)
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// clock returns now in UTC at the service's precision.
func (s *Store) clock() time.Time { return norm(s.now()) }

// ready fails once the store is closed and creates the table on first use.
func (s *Store) ready(ctx context.Context) error {
	s.mu.Lock()
	closed, known := s.closed, s.created || !s.create
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if known {
		return nil
	}
	return s.createTable(ctx)
}

// createTable creates the table, tolerating one that exists.
func (s *Store) createTable(ctx context.Context) error {
	if _, err := s.client.CreateTable(ctx, nil); err != nil && errorCode(err) != string(aztables.TableAlreadyExists) {
		return wrap(fmt.Sprintf("create table %s", s.table), nil, err)
	}
	s.mu.Lock()
	s.created = true
	s.mu.Unlock()
	return nil
}

// do runs call once the store is ready. When the table turns out to be
// missing and the store creates it, it creates it again and calls again.
func (s *Store) do(ctx context.Context, call func() error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	err := call()
	if !s.create || errorCode(err) != string(aztables.TableNotFound) {
		return err
	}
	s.mu.Lock()
	s.created = false
	s.mu.Unlock()
	if err := s.createTable(ctx); err != nil {
		return err
	}
	return call()
}
