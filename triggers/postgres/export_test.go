package postgres

import (
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/jobhost/jobhost/triggers"
)

// SetWaitHook makes d call f each time an empty Receive starts waiting,
// with whether the listener was listening on its channel.
func SetWaitHook(d *Driver, f func(listening bool)) { d.waitHook = f }

// SamePool reports whether a and b use one shared pool.
func SamePool(a *Driver, b any) bool {
	switch b := b.(type) {
	case *Driver:
		return a.sc == b.sc
	case *Publisher:
		return a.sc == b.sc
	case *PoisonAdmin:
		return a.sc == b.sc
	}
	return false
}

// GiveBack undoes the claim that leased m, as Receive does when a claim's
// reply is lost.
func GiveBack(d *Driver, m *triggers.Message) {
	d.giveBack(pgtype.UUID{Bytes: m.DriverData.(held).token, Valid: true})
}
