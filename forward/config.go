package forward

import (
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/internal/conf"
)

// Config holds forward's tunables. A zero field means its default (the
// zero Config: all defaults); a negative one is an error (Verify).
type Config struct {
	// HandshakeTimeout bounds a SOCKS5 client's greeting, authentication
	// and request; the deadline is cleared once the request is read.
	// Default: 10s.
	HandshakeTimeout time.Duration

	// RequestTimeout bounds the exit's read of a stream request, and its
	// write of the reply. Default: 10s.
	RequestTimeout time.Duration

	// DialTimeout bounds the exit's work between request and reply: name
	// resolution and the TCP connect (a timeout is reported as
	// CodeTTLExpired). Default: 10s.
	DialTimeout time.Duration

	// ConnectTimeout bounds a local connection's Dial through a peer:
	// opening the stream, sending the request and waiting for the reply.
	// It should exceed the exit's DialTimeout. Default: 30s.
	ConnectTimeout time.Duration

	// UDPIdleTimeout ends an exit's datagram stream (a UDP forward's
	// client or a SOCKS5 UDP association) after this long without a
	// datagram either way, so a peer that vanishes cannot pin sockets
	// here. The opener's idle_timeout usually ends it first. Default: 2m.
	UDPIdleTimeout time.Duration

	// MaxPending caps the local connections still in their handshake (a
	// SOCKS5 client's greeting, authentication and request, or a
	// forward's request to its peer), in all; MaxPendingPerSource caps
	// them per client address (per /64 for IPv6). A connection over
	// either cap is reset at once. Defaults: 512 and 256.
	MaxPending          int
	MaxPendingPerSource int

	// AccessLog logs one line per connection (local side) and per stream
	// (exit side) at info when it ends: target, bytes each way, duration.
	// Off, those lines are at debug, and the daemon logs a summary each
	// minute instead: a browser makes hundreds of connections. Default
	// false.
	AccessLog bool

	// Self names the exit daemon's own listeners, which the exit refuses
	// to dial for any peer, whatever its grant (Policy.WithSelf). Nil:
	// none are known.
	Self Self
}

// Defaults for Config's zero fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultConnectTimeout   = 30 * time.Second
	DefaultUDPIdleTimeout   = 2 * time.Minute

	// Local clients (a browser opening dozens of connections at once)
	// share one loopback source: the per-source cap leaves them room.
	DefaultMaxPending          = 512
	DefaultMaxPendingPerSource = 256
)

// withDefaults returns c with zero fields set to defaults.
func (c Config) withDefaults() Config {
	conf.Default(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	conf.Default(&c.RequestTimeout, DefaultRequestTimeout)
	conf.Default(&c.DialTimeout, DefaultDialTimeout)
	conf.Default(&c.ConnectTimeout, DefaultConnectTimeout)
	conf.Default(&c.UDPIdleTimeout, DefaultUDPIdleTimeout)
	conf.Default(&c.MaxPending, DefaultMaxPending)
	conf.Default(&c.MaxPendingPerSource, DefaultMaxPendingPerSource)
	return c
}

// Verify reports whether c is usable.
func (c Config) Verify() error {
	return errors.Join(conf.NotNegative("forward: HandshakeTimeout", c.HandshakeTimeout),
		conf.NotNegative("forward: RequestTimeout", c.RequestTimeout), conf.NotNegative("forward: DialTimeout", c.DialTimeout),
		conf.NotNegative("forward: ConnectTimeout", c.ConnectTimeout), conf.NotNegative("forward: UDPIdleTimeout", c.UDPIdleTimeout),
		conf.NotNegative("forward: MaxPending", c.MaxPending), conf.NotNegative("forward: MaxPendingPerSource", c.MaxPendingPerSource))
}

// connLevel is the level of the line a connection or stream logs when it
// ends (AccessLog).
func (c Config) connLevel() logrus.Level {
	if c.AccessLog {
		return logrus.InfoLevel
	}
	return logrus.DebugLevel
}
