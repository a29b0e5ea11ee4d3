package transport

import (
	"fmt"
	"time"

	"github.com/warren-p2p/warren/internal/conf"
)

// Config tunes one KCP stream. The zero value of a field means its default;
// a nil *Config means all defaults. The defaults aim at bulk throughput on
// LAN-like and on lossy long paths alike: the send window, not KCP's
// loss-based congestion window, bounds what is in flight (CongestionWindow
// says why).
//
// Both ends of a stream should use the same Config: KCP's windows and
// timers are per end, and a mismatch works but tunes neither end well.
type Config struct {
	// MTU is the largest UDP payload a stream sends, in bytes, KCP's 24-byte
	// header included. Default 1200, QUIC's smallest datagram: with IPv6
	// (40) and UDP (8) headers it fits the 1280 bytes every IPv6 path
	// carries, and so paths that tunnels or PPPoE shrink below Ethernet's
	// 1500 and that drop the ICMP that would say so (a PMTU black hole).
	// KCP has no path MTU discovery of its own, so it takes the size that
	// needs none. It sends 11% more packets than at 1350: through the
	// lab's loss-free forward, alternating runs on a loaded machine gave
	// 127 and 102 Mbit/s at 1200 against 142 and 122 at 1350 (KCP is
	// chosen for lossy paths, where its windows, not its packet rate,
	// bound it). At most 1500 (kcp-go's buffer size), at least 256.
	MTU int

	// SendWindow and RecvWindow are KCP's windows, in packets. The send
	// window caps packets in flight, and so throughput at
	// SendWindow*MTU/RTT; the receive window is what we advertise to the
	// peer. Default 1024 each: ~1.3 MB in flight, ~270 MB/s at 5 ms RTT
	// and ~27 MB/s at 50 ms. Larger windows help long paths but cost CPU
	// on every flush (kcp-go scans the whole send buffer): on loopback
	// 2048 was 10-20% slower than 1024, 4096 ~25% slower, and 512 only
	// ~5% faster. At most 32768 (the advertised window is 16 bits).
	SendWindow int
	RecvWindow int

	// Interval is KCP's clock tick: how often it flushes delayed
	// acknowledgements and checks retransmission timers. Default 10ms, the
	// minimum kcp-go accepts; at most 5s.
	Interval time.Duration

	// FastResend retransmits a segment as soon as this many later segments
	// were acknowledged before it (like TCP's duplicate-ACK fast
	// retransmit). Default 2; negative disables fast retransmission.
	FastResend int

	// ConservativeRTO turns KCP's "nodelay" mode off: the minimum
	// retransmission timeout rises from 30ms to 100ms and timeouts double
	// instead of growing by half. Default false (nodelay on), because
	// waiting 100ms on a LAN stalls the whole window.
	ConservativeRTO bool

	// CongestionWindow turns on KCP's own loss-based congestion window
	// (slow start, halving on a fast retransmit, back to one packet on a
	// timeout). Default false: on a lossy path every loss is taken for
	// congestion and the window never grows (see doc.go for the figures:
	// 1.7 against 14.2 Mbit/s on an emulated mobile path). Without it the
	// windows alone bound what is in flight, SendWindow*MTU per round
	// trip, as kcptun and frp's KCP mode run it.
	CongestionWindow bool

	// KeepAliveInterval is how often a stream sends a keepalive control
	// packet and checks IdleTimeout. Default 5s.
	KeepAliveInterval time.Duration

	// IdleTimeout fails a stream with ErrPeerTimeout once nothing at all
	// has arrived from the peer for this long (data, acks and keepalives
	// all count). It also bounds how long a stream waits for a peer that
	// never dials. Default 30s; must exceed KeepAliveInterval.
	IdleTimeout time.Duration

	// CloseTimeout bounds how long Close waits for the peer to acknowledge
	// everything written before it (the linger). A Close that runs out
	// resets the stream instead of closing it cleanly. Default 5s.
	CloseTimeout time.Duration
}

const (
	minMTU     = 256
	maxMTU     = maxKCPPacket
	maxWindow  = 32768
	minTick    = 10 * time.Millisecond
	maxTick    = 5 * time.Second
	defaultMTU = 1200
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		MTU:               defaultMTU,
		SendWindow:        1024,
		RecvWindow:        1024,
		Interval:          10 * time.Millisecond,
		FastResend:        2,
		KeepAliveInterval: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
		CloseTimeout:      5 * time.Second,
	}
}

// withDefaults returns a copy of c (nil allowed) with zero fields defaulted.
func (c *Config) withDefaults() *Config {
	d := DefaultConfig()
	if c == nil {
		return d
	}
	out := *c
	conf.Default(&out.MTU, d.MTU)
	conf.Default(&out.SendWindow, d.SendWindow)
	conf.Default(&out.RecvWindow, d.RecvWindow)
	conf.Default(&out.Interval, d.Interval)
	conf.Default(&out.FastResend, d.FastResend)
	conf.Default(&out.KeepAliveInterval, d.KeepAliveInterval)
	conf.Default(&out.IdleTimeout, d.IdleTimeout)
	conf.Default(&out.CloseTimeout, d.CloseTimeout)
	return &out
}

// Verify reports whether c (after defaults) is usable.
func (c *Config) Verify() error {
	c = c.withDefaults()
	switch {
	case c.MTU < minMTU || c.MTU > maxMTU:
		return fmt.Errorf("transport config: MTU %d outside [%d, %d]", c.MTU, minMTU, maxMTU)
	case c.SendWindow < 0 || c.SendWindow > maxWindow:
		return fmt.Errorf("transport config: SendWindow %d outside [1, %d]", c.SendWindow, maxWindow)
	case c.RecvWindow < 0 || c.RecvWindow > maxWindow:
		return fmt.Errorf("transport config: RecvWindow %d outside [1, %d]", c.RecvWindow, maxWindow)
	case c.Interval < minTick || c.Interval > maxTick:
		return fmt.Errorf("transport config: Interval %v outside [%v, %v]", c.Interval, minTick, maxTick)
	case c.KeepAliveInterval < 0, c.IdleTimeout < 0, c.CloseTimeout < 0:
		return fmt.Errorf("transport config: durations must be positive")
	case c.IdleTimeout <= c.KeepAliveInterval:
		return fmt.Errorf("transport config: IdleTimeout %v must exceed KeepAliveInterval %v", c.IdleTimeout, c.KeepAliveInterval)
	}
	return nil
}
