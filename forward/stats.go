package forward

import (
	"errors"
	"sync/atomic"
)

// Stats is a snapshot of a Server's or a Listeners' counters.
type Stats struct {
	// Conns counts connections (Listeners) or streams (Server) handled.
	Conns uint64
	// Active is how many are open now.
	Active int64
	// Refused counts those that got a non-zero reply or no reply at all.
	Refused uint64
	// Refusals breaks Refused down by reason: index i counts refusals
	// whose RefusalName is RefusalName(i), i.e. the reply code i for
	// 1 to 8, then RefusalNoLink and RefusalProtocol. Index 0 stays 0.
	Refusals [NumRefusals]uint64
	// BytesIn counts bytes received from the peer's streams; BytesOut
	// bytes sent into them. Counted when a connection closes.
	BytesIn, BytesOut uint64
}

// Refusal reasons beyond the reply codes, which index Stats.Refusals
// themselves (CodeGeneralFailure to CodeAddrNotSupported).
const (
	// RefusalNoLink: the local side could not open a stream to the peer
	// (no link up in time, or no such peer).
	RefusalNoLink = int(CodeAddrNotSupported) + 1 + iota
	// RefusalProtocol: the request/reply exchange failed: a malformed or
	// cut-off request or reply, or no reply in time.
	RefusalProtocol
	// NumRefusals is the length of Stats.Refusals.
	NumRefusals
)

// RefusalName names a Stats.Refusals index for metrics and logs, in
// snake_case: "general_failure", "not_allowed", "network_unreachable",
// "host_unreachable", "connection_refused", "ttl_expired",
// "command_not_supported", "address_not_supported", "no_link",
// "protocol_error"; "" for 0 and out-of-range indexes.
func RefusalName(i int) string {
	switch i {
	case int(CodeGeneralFailure):
		return "general_failure"
	case int(CodeNotAllowed):
		return "not_allowed"
	case int(CodeNetworkUnreachable):
		return "network_unreachable"
	case int(CodeHostUnreachable):
		return "host_unreachable"
	case int(CodeConnectionRefused):
		return "connection_refused"
	case int(CodeTTLExpired):
		return "ttl_expired"
	case int(CodeCommandNotSupported):
		return "command_not_supported"
	case int(CodeAddrNotSupported):
		return "address_not_supported"
	case RefusalNoLink:
		return "no_link"
	case RefusalProtocol:
		return "protocol_error"
	}
	return ""
}

// counters backs Stats; safe for concurrent use.
type counters struct {
	conns, refused, bytesIn, bytesOut atomic.Uint64
	refusals                          [NumRefusals]atomic.Uint64
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

// refuse counts a refusal for reason, an index of Stats.Refusals; a
// reason out of range counts as a general failure.
func (c *counters) refuse(reason int) {
	if reason <= 0 || reason >= NumRefusals {
		reason = int(CodeGeneralFailure)
	}
	c.refused.Add(1)
	c.refusals[reason].Add(1)
}

// refusalOf is the Stats.Refusals index for an error from Dial.
func refusalOf(err error) int {
	var re *RefusedError
	var oe *openError
	switch {
	case errors.As(err, &re):
		return int(re.Code)
	case errors.As(err, &oe):
		return RefusalNoLink
	}
	return RefusalProtocol
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Conns:    c.conns.Load(),
		Active:   c.active.Load(),
		Refused:  c.refused.Load(),
		BytesIn:  c.bytesIn.Load(),
		BytesOut: c.bytesOut.Load(),
	}
	for i := range c.refusals {
		s.Refusals[i] = c.refusals[i].Load()
	}
	return s
}
