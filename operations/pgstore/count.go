package pgstore

import (
	"context"

	"github.com/jobhost/jobhost/operations"
)

var _ operations.Counter = (*Store)(nil)

// CountByStatus returns how many unexpired records each status has, of
// function name ("" for all), in one GROUP BY query that reads no record.
func (s *Store) CountByStatus(ctx context.Context, name string) (map[operations.Status]int, error) {
	sql := `SELECT status, count(*) FROM ` + s.qtable + ` WHERE expires_on >= $1`
	args := []any{s.clock()}
	if name != "" {
		sql += ` AND name = $2`
		args = append(args, text(name))
	}
	rows, err := s.pool.Query(ctx, sql+` GROUP BY status`, args...)
	if err != nil {
		return nil, s.fail("count", err)
	}
	defer rows.Close()
	out := map[operations.Status]int{}
	for rows.Next() {
		var status int16
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			return nil, s.fail("count", err)
		}
		out[operations.Status(status)] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("count", err)
	}
	return out, nil
}
