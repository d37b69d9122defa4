package rabbitmq

import (
	amqp "github.com/rabbitmq/amqp091-go"
)

// CutConnection closes the driver's TCP connection under the AMQP library,
// as a network failure or a broker crash would. It reports whether there
// was a connection to cut.
func CutConnection(d *Driver) bool {
	d.mu.Lock()
	s := d.sess
	d.mu.Unlock()
	if s == nil || s.netConn == nil {
		return false
	}
	s.netConn.Close()
	return true
}

// sharedOf returns the shared connection of a publisher, poison
// administration or driver (its Publish's).
func sharedOf(v any) *shared {
	switch v := v.(type) {
	case *publisher:
		return v.sc
	case *poisonAdmin:
		return v.sc
	case *Driver:
		v.pubMu.Lock()
		defer v.pubMu.Unlock()
		if v.pub != nil {
			return v.pub.sc
		}
	}
	return nil
}

// SharedConn returns the AMQP connection v (from OpenPublisherURL or
// OpenPoisonURL, or a Driver that has published) shares, nil if it has
// none yet.
func SharedConn(v any) *amqp.Connection {
	sc := sharedOf(v)
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.conn
}

// CutShared closes the TCP connection under v's shared connection and
// waits until the AMQP library has noticed. It reports whether there was
// one to cut.
func CutShared(v any) bool {
	sc := sharedOf(v)
	if sc == nil {
		return false
	}
	sc.mu.Lock()
	conn, nc := sc.conn, sc.netConn
	sc.mu.Unlock()
	if conn == nil || nc == nil {
		return false
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	nc.Close()
	<-closed
	return true
}
