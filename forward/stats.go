package forward

import "sync/atomic"

// Stats is a snapshot of a Server's or a Listeners' counters.
type Stats struct {
	// Conns counts connections (Listeners) or streams (Server) handled.
	Conns uint64
	// Active is how many are open now.
	Active int64
	// Refused counts those that got a non-zero reply or no reply at all.
	Refused uint64
	// BytesIn counts bytes received from the peer's streams; BytesOut
	// bytes sent into them. Counted when a connection closes.
	BytesIn, BytesOut uint64
}

// counters backs Stats; safe for concurrent use.
type counters struct {
	conns, refused, bytesIn, bytesOut atomic.Uint64
	active                            atomic.Int64
}

// open counts a new connection and returns the func that ends it.
func (c *counters) open() (done func()) {
	c.conns.Add(1)
	c.active.Add(1)
	return func() { c.active.Add(-1) }
}

func (c *counters) bytes(in, out int64) {
	c.bytesIn.Add(uint64(max(in, 0)))
	c.bytesOut.Add(uint64(max(out, 0)))
}

func (c *counters) snapshot() Stats {
	return Stats{
		Conns:    c.conns.Load(),
		Active:   c.active.Load(),
		Refused:  c.refused.Load(),
		BytesIn:  c.bytesIn.Load(),
		BytesOut: c.bytesOut.Load(),
	}
}
