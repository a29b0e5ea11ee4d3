package punch

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/internal/admit"
	"github.com/warren-p2p/warren/internal/conf"
)

// Config tunes TCP punching. A zero field means its default; a negative
// one is an error (Verify).
type Config struct {
	// AttemptTimeout bounds one connect attempt. Linux retransmits a SYN
	// only after 1s, so a fresh attempt sooner than that gets a SYN out
	// when the first one was dropped by the peer's NAT. Default 500ms.
	AttemptTimeout time.Duration

	// RetryDelay is the pause after an attempt fails fast (the peer's
	// NAT answered RST, or the route is down). Default 50ms.
	RetryDelay time.Duration

	// HelloTimeout bounds the hello exchange on a new connection: the
	// handshake deadline of the shared port. Default 5s.
	HelloTimeout time.Duration

	// Budget is drawn on once per connect attempt (a SYN), with the UDP
	// punches that share it. Default: no budget; attempts are paced by
	// AttemptTimeout and RetryDelay only.
	Budget *Budget

	// MaxPending caps the inbound connections the shared port holds
	// before their hello names a session, in all; MaxPendingPerSource
	// caps them per source address (per /64 for IPv6). Connections over
	// either cap are closed at once, so a flood from a few sources can
	// neither exhaust the daemon's file descriptors nor crowd out a
	// peer's punch. Defaults 256 and 16.
	MaxPending          int
	MaxPendingPerSource int

	// Log receives the Acceptor's accept errors. Nil: discarded.
	Log logrus.FieldLogger
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		AttemptTimeout:      500 * time.Millisecond,
		RetryDelay:          50 * time.Millisecond,
		HelloTimeout:        5 * time.Second,
		MaxPending:          256,
		MaxPendingPerSource: 16,
		Log:                 discard(),
	}
}

func discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func (c *Config) withDefaults() *Config {
	d := DefaultConfig()
	if c == nil {
		return d
	}
	out := *c
	conf.Default(&out.AttemptTimeout, d.AttemptTimeout)
	conf.Default(&out.RetryDelay, d.RetryDelay)
	conf.Default(&out.HelloTimeout, d.HelloTimeout)
	conf.Default(&out.MaxPending, d.MaxPending)
	conf.Default(&out.MaxPendingPerSource, d.MaxPendingPerSource)
	if out.Log == nil {
		out.Log = d.Log
	}
	return &out
}

// Verify reports whether c (nil means defaults) is usable.
func (c *Config) Verify() error {
	if c == nil {
		return nil
	}
	return errors.Join(conf.NotNegative("punch: AttemptTimeout", c.AttemptTimeout),
		conf.NotNegative("punch: RetryDelay", c.RetryDelay), conf.NotNegative("punch: HelloTimeout", c.HelloTimeout),
		conf.NotNegative("punch: MaxPending", c.MaxPending), conf.NotNegative("punch: MaxPendingPerSource", c.MaxPendingPerSource))
}

// TCP punches TCP towards every candidate from localPort: it connects
// again and again, as the peer does towards us, until the two NATs have
// both opened the way and a connect (or a simultaneous open) succeeds.
// Each connection whose hello names session id is sent on out; other
// connections are closed. TCP returns once every candidate has produced a
// connection or ctx has ended; a connection that cannot be sent before ctx
// ends is closed.
func TCP(ctx context.Context, cfg *Config, localPort int, id SessionID, cands []netip.AddrPort, out chan<- net.Conn) {
	cfg = cfg.withDefaults()
	var wg sync.WaitGroup
	for _, c := range Dedup(cands) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := punchOne(ctx, cfg, localPort, id, c)
			if conn == nil {
				return
			}
			select {
			case out <- conn:
			case <-ctx.Done():
				conn.Close()
			}
		}()
	}
	wg.Wait()
}

func punchOne(ctx context.Context, cfg *Config, localPort int, id SessionID, c netip.AddrPort) net.Conn {
	d := Dialer(localPort)
	addr := c.String()
	for ctx.Err() == nil {
		if cfg.Budget != nil && !cfg.Budget.wait(ctx) {
			return nil
		}
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
		conn, err := d.DialContext(actx, "tcp", addr)
		cancel()
		if err == nil {
			if err = exchangeHello(ctx, conn, id, cfg.HelloTimeout, true); err == nil {
				return conn
			}
			conn.Close()
		}
		// The 4-tuple already carries a connection (the listener
		// accepted the peer's SYN first): that one reaches the peer.
		if errors.Is(err, errAddrInUse) || errors.Is(err, errAddrNotAvail) {
			return nil
		}
		// No route to that family (an IPv6-only host, a peer's IPv4
		// address): retrying only spends the budget.
		if errors.Is(err, errNetUnreach) {
			return nil
		}
		// Jitter: two sides retrying on the same rhythm against NATs that
		// answer RST can stay in lockstep, each SYN killed by the other
		// NAT before the other side's SYN has opened the way.
		if wait := cfg.RetryDelay + rand.N(cfg.RetryDelay) - time.Since(start); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
	}
	return nil
}

// exchangeHello sends and checks hellos. The dialling side writes first;
// the accepting side has already read the peer's hello and only answers.
func exchangeHello(ctx context.Context, conn net.Conn, id SessionID, timeout time.Duration, dialer bool) error {
	conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeHello(conn, id); err != nil {
		return err
	}
	if dialer {
		got, err := readHello(conn)
		if err != nil {
			return err
		}
		if got != id {
			return ErrBadHello
		}
	}
	conn.SetDeadline(time.Time{})
	return nil
}

// Acceptor serves the listener on the shared port: it reads the hello of
// each inbound connection and hands the connection to the punch session it
// names. Connections for no session are closed, and so are those beyond
// the caps on connections still without a hello (Config.MaxPending).
type Acceptor struct {
	ln      net.Listener
	timeout time.Duration
	gate    *admit.Gate
	log     logrus.FieldLogger

	// mu guards the fields below.
	mu       sync.Mutex
	sessions map[SessionID]registration
	changed  chan struct{} // closed and replaced whenever sessions gains one
}

type registration struct {
	ctx context.Context
	out chan<- net.Conn
}

// NewAcceptor returns an Acceptor for ln; call Serve to run it.
func NewAcceptor(ln net.Listener, cfg *Config) *Acceptor {
	cfg = cfg.withDefaults()
	return &Acceptor{
		ln:       ln,
		timeout:  cfg.HelloTimeout,
		gate:     admit.NewGate(cfg.MaxPendingPerSource, cfg.MaxPending),
		log:      cfg.Log,
		sessions: make(map[SessionID]registration),
		changed:  make(chan struct{}),
	}
}

// Port returns the shared local port.
func (a *Acceptor) Port() int { return PortOf(a.ln.Addr()) }

// Register routes inbound connections for session id to out until ctx ends
// or the returned function is called.
func (a *Acceptor) Register(ctx context.Context, id SessionID, out chan<- net.Conn) (unregister func()) {
	a.mu.Lock()
	a.sessions[id] = registration{ctx: ctx, out: out}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		delete(a.sessions, id)
		a.mu.Unlock()
	}
}

// lookup finds the session for id, waiting until deadline for it to be
// registered: the peer may start punching a moment before we do.
func (a *Acceptor) lookup(ctx context.Context, id SessionID, deadline time.Time) (registration, bool) {
	for {
		a.mu.Lock()
		r, ok := a.sessions[id]
		changed := a.changed
		a.mu.Unlock()
		if ok {
			return r, true
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
			return r, false
		case <-ctx.Done():
			return r, false
		}
	}
}

// Serve accepts connections until ctx ends (or the listener is closed
// under it, which it reports as net.ErrClosed); it closes the listener and
// waits for its connection handlers before returning. Accept errors such
// as running out of file descriptors do not end it: it backs off and goes
// on (admit.Serve).
func (a *Acceptor) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	return admit.Serve(ctx, a.ln, a.log.WithField("listener", "punch"), func(conn net.Conn) {
		release, ok := a.gate.Admit(conn.RemoteAddr())
		if !ok {
			conn.Close()
			return
		}
		wg.Go(func() { a.handle(ctx, conn, release) })
	})
}

// handle reads conn's hello and hands conn to the session it names. The
// gate's place is held until the hello exchange is over, whatever its
// outcome.
func (a *Acceptor) handle(ctx context.Context, conn net.Conn, release func()) {
	r, ok := a.hello(ctx, conn, release)
	if !ok {
		conn.Close()
		return
	}
	select {
	case r.out <- conn:
	case <-r.ctx.Done():
		conn.Close()
	case <-ctx.Done():
		conn.Close()
	}
}

// hello reads conn's hello, finds its session and answers, within the
// acceptor's timeout; then it gives back the gate's place.
func (a *Acceptor) hello(ctx context.Context, conn net.Conn, release func()) (registration, bool) {
	defer release()
	deadline := time.Now().Add(a.timeout)
	conn.SetDeadline(deadline)
	id, err := readHello(conn)
	if err != nil {
		return registration{}, false
	}
	r, ok := a.lookup(ctx, id, deadline)
	if !ok {
		return registration{}, false
	}
	if err := exchangeHello(r.ctx, conn, id, time.Until(deadline), false); err != nil {
		return registration{}, false
	}
	return r, true
}
