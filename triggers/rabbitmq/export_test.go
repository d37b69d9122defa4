package rabbitmq

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
