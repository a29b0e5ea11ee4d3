package rendezvous

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
)

// ServerConfig configures a Server. Zero durations mean their defaults.
type ServerConfig struct {
	// Key is the server's identity; peers pin its public half. Required.
	Key identity.PrivateKey
	// Token, if set, must be presented by every registering peer.
	Token string
	// AllowKeys, if not empty, are the only keys that may register: a
	// private server that strangers cannot use at all, not even to be
	// refused by a peer. Default: any key.
	AllowKeys []identity.PublicKey
	// HandshakeTimeout bounds TLS plus the register message. Default 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout drops a peer that sends nothing (not even a ping) this
	// long. Default 60s.
	IdleTimeout time.Duration
	// PairWindow suppresses a second punch session for the same two peers
	// within this time, so that both sides asking at once yields one
	// session. Default 3s.
	PairWindow time.Duration
	// ConsentWait is how long the server waits for a peer to consent to
	// a connect request naming it. Every "no" (the peer is offline, did
	// not answer, or is the asker) is answered when it has passed, so
	// that an asker cannot tell a peer that refuses it from one that is
	// offline by the timing of the answer. Default 2s.
	ConsentWait time.Duration
	// NATWait bounds how long a punch session waits for both peers to
	// report their NAT (they do so just after registering). Default 3s.
	NATWait time.Duration
	// UDPWait bounds how long a punch session waits for both sides' UDP
	// session probes before telling each side what it has. Default 1s.
	UDPWait time.Duration
	// Relay lets peers relay through this server when they find no direct
	// path. Default: off in a zero ServerConfig; `warren rendezvous`
	// turns it on unless configured off.
	Relay bool
	// MaxRelays caps relayed sessions at once. Default 1000.
	MaxRelays int
	// RelayWindow is how long after a punch session starts its peers may
	// open a relay for it. Default 1m.
	RelayWindow time.Duration
	// RelayWait is how long a relay connection waits for the other side.
	// Default 10s.
	RelayWait time.Duration
	// RelayIdle closes a relay that carried nothing this long. Default 2m
	// (links ping every 15s).
	RelayIdle time.Duration
	// RelayRate caps the bytes per second each key may send through
	// relays, all its relays together. Default 8 MiB/s; negative: no
	// cap.
	RelayRate int64
	// RelayDailyBytes caps the bytes each key may send through relays in
	// a day (from its first relay of the day); past it, its relays end
	// and new ones are refused until the day is over. Default 16 GiB;
	// negative: no cap.
	RelayDailyBytes int64
	// RelayCapacity is the bytes per second this server's relays may
	// carry in all (each relayed byte counted once), the measure of its
	// load in a cluster: a node past 80% of it, or of MaxRelays, is
	// chosen for a new relay only when every node is. Default 100 MiB/s
	// (most of a gigabit link); it caps nothing by itself.
	RelayCapacity int64
	// MaxRelaysPerKey caps the relay connections one key holds at once
	// (waiting for the other side, or relaying). Default 32; negative: no
	// cap.
	MaxRelaysPerKey int
	// MaxConns caps the TCP connections of every kind (control, relay,
	// probe) the server holds at once, so that its memory stays bounded;
	// past it, a new connection is closed as soon as it is accepted.
	// Default 16384. Negative: no cap (as for every limit below).
	MaxConns int
	// MaxHandshakes caps the connections still in their handshake (TLS
	// and register, or a probe's or relay's header). Default 1024.
	MaxHandshakes int
	// MaxConnsPerSource caps one source's connections at once. A source
	// is an IPv4 address or an IPv6 /64. Default 256.
	MaxConnsPerSource int
	// MaxHandshakesPerSource caps one source's connections still in their
	// handshake. Default 32.
	MaxHandshakesPerSource int
	// ConnRate is how many new connections per second one source may
	// open, in bursts of up to ConnBurst. Default 20 and 64.
	ConnRate  float64
	ConnBurst int
	// ConnectRate is how many connect requests per second one registered
	// peer may make, in bursts of up to ConnectBurst; the others are
	// answered with a rate_limited error. Default 10 and 100.
	ConnectRate  float64
	ConnectBurst int
	// ProbeRate is how many UDP probes per second the server answers for
	// one source, in bursts of up to ProbeBurst; the others are dropped.
	// Default 50 and 100.
	ProbeRate  float64
	ProbeBurst int
	// MaxSessions caps the punch sessions the server keeps for relays
	// (each for RelayWindow); past it, the oldest is forgotten. Default
	// 262144 (about 30 MiB).
	MaxSessions int
	// RefusalLogInterval is how often refusals (and failed handshakes)
	// are logged: one summary line per source per interval. Default 10s.
	// It is also the interval of the limit on other lines a source can
	// cause (registrations, NAT reports, punch sessions, relays):
	// LogBurst of each kind per source, then one summary line.
	RefusalLogInterval time.Duration
	// LogBurst is how many lines of one kind one source may cause per
	// RefusalLogInterval. Default 5.
	LogBurst int
	// FallbackListen is a further TCP address that ListenAndServe serves
	// exactly like its others (control connections, relays, TCP probes),
	// for daemons on networks that let out only HTTPS: typically port
	// 443. No UDP is bound there. Default: none.
	FallbackListen string
	// UDPEndpoints are the UDP probe endpoints advertised to peers at
	// registration; an unspecified host means "the address you dialled".
	// ListenAndServe fills them in.
	UDPEndpoints []string
	// IPv6Endpoints are the TCP endpoints (global IPv6 addresses at the
	// control port) where peers that registered over IPv4 have their IPv6
	// address observed (observe6.go). ListenAndServe fills them in when
	// its listen address takes IPv6 ("[::]:7777" or ":7777": every global
	// IPv6 address of the host; or one global IPv6 address).
	IPv6Endpoints []string
	// Log receives the server's logs. Default: logrus' standard logger.
	Log logrus.FieldLogger
	// Cluster, if set, makes the server one node of a cluster over NATS
	// (doc.go, "Clustering"). Nil: a single node, which uses no NATS.
	Cluster *ClusterConfig
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.MaxRelays <= 0 {
		c.MaxRelays = 1000
	}
	if c.RelayCapacity <= 0 {
		c.RelayCapacity = DefaultRelayCapacity
	}
	if c.RelayWindow <= 0 {
		c.RelayWindow = time.Minute
	}
	if c.RelayWait <= 0 {
		c.RelayWait = 10 * time.Second
	}
	if c.RelayIdle <= 0 {
		c.RelayIdle = 2 * time.Minute
	}
	if c.NATWait <= 0 {
		c.NATWait = 3 * time.Second
	}
	if c.UDPWait <= 0 {
		c.UDPWait = time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.ConsentWait <= 0 {
		c.ConsentWait = 2 * time.Second
	}
	if c.PairWindow <= 0 {
		c.PairWindow = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = logrus.StandardLogger()
	}
	limit(&c.MaxConns, 16384)
	limit(&c.MaxHandshakes, 1024)
	limit(&c.MaxConnsPerSource, 256)
	limit(&c.MaxHandshakesPerSource, 32)
	limit(&c.MaxSessions, 1<<18)
	limit(&c.MaxRelaysPerKey, 32)
	limit(&c.RelayRate, 8<<20)
	limit(&c.RelayDailyBytes, 16<<30)
	for _, r := range []struct {
		rate     *float64
		burst    *int
		def      float64
		defBurst int
	}{
		{&c.ConnRate, &c.ConnBurst, 20, 64},
		{&c.ConnectRate, &c.ConnectBurst, 10, 100},
		{&c.ProbeRate, &c.ProbeBurst, 50, 100},
	} {
		if *r.rate == 0 {
			*r.rate = r.def
		}
		if *r.burst <= 0 {
			*r.burst = r.defBurst
		}
	}
	if c.RefusalLogInterval <= 0 {
		c.RefusalLogInterval = 10 * time.Second
	}
	if c.LogBurst <= 0 {
		c.LogBurst = 5
	}
	return c
}

// limit gives a limit its default def if zero, and holds a negative one
// (no limit) as unlimited.
func limit[T int | int64](v *T, def T) {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		*v = unlimited
	}
}

// DefaultRelayCapacity is ServerConfig.RelayCapacity's default.
const DefaultRelayCapacity = 100 << 20
