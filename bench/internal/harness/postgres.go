package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/jobhost/jobhost/bench/internal/workload"
)

// pgSrv is the bench's own pool on the machine's PostgreSQL.
type pgSrv struct {
	dsn string
	// riverSchema and jobhostSchema hold River's and jobhost's tables,
	// named afresh for each bench run (bench_river_<random>,
	// bench_jobhost_<random>) and dropped at the end of scenario i.
	riverSchema, jobhostSchema string
	pool                       *pgxpool.Pool
	// river and riverFast are insert-only clients; River notifies a queue
	// of an insert at most once per the inserting client's FetchCooldown,
	// so riverFast (1 ms, as the tuned worker) sends the open loop of the
	// tuned rows and river (the default 100 ms) that of the default ones.
	river, riverFast *river.Client[pgx.Tx]
}

func dialPG(dsn string) (*pgSrv, error) {
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	sfx := randSuffix()
	return &pgSrv{dsn: dsn, pool: pool, riverSchema: "bench_river_" + sfx, jobhostSchema: "bench_jobhost_" + sfx}, nil
}

func (p *pgSrv) close() { p.pool.Close() }

func (p *pgSrv) version() string {
	var v string
	if err := p.pool.QueryRow(bg, "show server_version").Scan(&v); err != nil {
		return "?"
	}
	return v
}

// settings describes the server settings that bear on a commit.
func (p *pgSrv) settings() string {
	var parts []string
	for _, k := range []string{"synchronous_commit", "fsync", "max_connections"} {
		var v string
		if err := p.pool.QueryRow(bg, "select current_setting($1)", k).Scan(&v); err != nil {
			v = "?"
		}
		parts = append(parts, k+" "+v)
	}
	return strings.Join(parts, ", ")
}

// setupRiver creates River's schema and migrates it up (rivermigrate), and
// opens an insert-only River client on it.
func (p *pgSrv) setupRiver(ctx context.Context) (string, error) {
	if _, err := p.pool.Exec(ctx, "create schema if not exists "+p.riverSchema); err != nil {
		return "", err
	}
	drv := riverpgxv5.New(p.pool)
	m, err := rivermigrate.New(drv, &rivermigrate.Config{Schema: p.riverSchema})
	if err != nil {
		return "", err
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return "", fmt.Errorf("rivermigrate: %w", err)
	}
	p.river, err = river.NewClient(drv, &river.Config{Schema: p.riverSchema})
	if err != nil {
		return "", err
	}
	p.riverFast, err = river.NewClient(drv, &river.Config{Schema: p.riverSchema, FetchCooldown: time.Millisecond})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d migrations applied", len(res.Versions)), nil
}

// truncateRiver empties River's tables (all but river_migration).
func (p *pgSrv) truncateRiver(ctx context.Context) error {
	rows, err := p.pool.Query(ctx, "select tablename from pg_tables where schemaname = $1 and tablename <> 'river_migration'", p.riverSchema)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	for i, n := range names {
		names[i] = p.riverSchema + "." + pgx.Identifier{n}.Sanitize()
	}
	_, err = p.pool.Exec(ctx, "truncate "+strings.Join(names, ", "))
	return err
}

func (p *pgSrv) dropRiver() {
	_, _ = p.pool.Exec(bg, "drop schema if exists "+p.riverSchema+" cascade")
}

func riverArgs(id int64, sentAt time.Time) workload.RiverOrder {
	o, _ := workload.Decode(workload.Body(id, sentAt))
	return workload.RiverOrder{Order: o}
}

// riverPrefill inserts ids [0,n) into queue with InsertManyFast (COPY),
// 1,000 a batch.
func (p *pgSrv) riverPrefill(ctx context.Context, queue string, n int64) error {
	opts := &river.InsertOpts{Queue: queue}
	for i := int64(0); i < n; i += 1000 {
		var params []river.InsertManyParams
		for id := i; id < min(i+1000, n); id++ {
			params = append(params, river.InsertManyParams{Args: riverArgs(id, time.Time{}), InsertOpts: opts})
		}
		if _, err := p.river.InsertManyFast(ctx, params); err != nil {
			return err
		}
	}
	return nil
}

// riverSend inserts one job stamped now (its own transaction; River's
// insert notifies the queue's listeners, at most once per the client's
// FetchCooldown: 1 ms with fast, else 100 ms).
func (p *pgSrv) riverSend(ctx context.Context, queue string, id int64, fast bool) error {
	c := p.river
	if fast {
		c = p.riverFast
	}
	_, err := c.Insert(ctx, riverArgs(id, time.Now()), &river.InsertOpts{Queue: queue})
	return err
}

func (p *pgSrv) riverLeft(ctx context.Context, queue string) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, "select count(*) from "+p.riverSchema+".river_job where queue = $1 and state not in ('completed', 'cancelled', 'discarded')", queue).Scan(&n)
	return n, err
}

// xacts returns the committed and rolled-back transactions of the
// database so far (pg_stat_database, every client of the database; a
// backend reports its counts at most once a second, and an idle one up to
// ten seconds late).
func (p *pgSrv) xacts(ctx context.Context) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, "select xact_commit + xact_rollback from pg_stat_database where datname = current_database()").Scan(&n)
	return n, err
}

// postmaster returns the pid of the server's postmaster: the parent of
// the backend serving the bench's connection (the server must run on
// this machine). 0 when it cannot be found.
func (p *pgSrv) postmaster(ctx context.Context) int {
	var backend int
	if err := p.pool.QueryRow(ctx, "select pg_backend_pid()").Scan(&backend); err != nil {
		return 0
	}
	f := procStatFields(backend)
	if len(f) < 2 {
		return 0
	}
	pm, _ := strconv.Atoi(f[1])
	if !isPostgres(pm) {
		return 0
	}
	return pm
}

// counters reads the database's transactions (pg_stat_database: every
// client of the database) and the server's WAL syncs and bytes
// (pg_stat_wal: the whole server). Backends report their transactions at
// most once a second, so a short window's count is approximate.
func (p *pgSrv) counters(ctx context.Context) (map[string]int64, error) {
	var xacts, syncs, walBytes int64
	err := p.pool.QueryRow(ctx, `select (select xact_commit + xact_rollback from pg_stat_database where datname = current_database()),
		wal_sync, wal_bytes::bigint from pg_stat_wal`).Scan(&xacts, &syncs, &walBytes)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"databaseXacts": xacts, "walSyncs": syncs, "walBytes": walBytes}, nil
}

// pgCPU returns the CPU seconds of the PostgreSQL server whose postmaster
// is pm: the postmaster, every child of it (background processes and
// backends, the bench's and everyone else's) and the children it has
// reaped (its cutime and cstime), so that backends that come and go are
// counted too. Other PostgreSQL servers on the machine (tests start their
// own) are not. -1 when pm is gone.
func pgCPU(pm int) float64 {
	f := procStatFields(pm)
	if len(f) < 15 {
		return -1
	}
	total := 0.0
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		total += v / clkTck
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pm {
			continue
		}
		f := procStatFields(pid)
		if len(f) < 13 || f[1] != strconv.Itoa(pm) {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += (ut + st) / clkTck
	}
	return total
}

// procStatFields returns the fields of /proc/<pid>/stat after the command
// name (state is [0], ppid [1], utime [11], stime [12], cutime [13],
// cstime [14]); nil when unreadable.
func procStatFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	j := bytes.LastIndexByte(b, ')')
	if j < 0 {
		return nil
	}
	return strings.Fields(string(b[j+1:]))
}

func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "postgres"
}
