package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
)

// Link is an authenticated, multiplexed session with one peer.
// Its methods are safe for concurrent use.
type Link struct {
	peer   identity.PublicKey
	path   string
	local  net.Addr
	remote net.Addr
	since  time.Time
	cfg    *Config
	log    logrus.FieldLogger

	export Exporter // the TLS session's
	raw    *countingConn
	frames *frameConn // below raw
	sess   *yamux.Session

	// slots holds one token per inbound stream open, capping them at
	// MaxStreams.
	slots   chan struct{}
	streams atomic.Int64
	rtt     atomic.Int64 // nanoseconds, 0 until the first ping

	closing closing     // streams we closed that the peer has not
	open    streamTable // our Stream wrappers, for the peer's FINs
	budget  *budget     // the peer's bytes not read yet (ReceiveBudget)

	// Refusals of the peer's streams, logged at most once a second.
	overLimit, overBudget refusalLog
	kicking               atomic.Bool // a kick's ping is out

	closeOnce sync.Once
	done      chan struct{}

	// wg counts the link's goroutines (keepalive and those spawn starts),
	// which Close waits for. spawnMu orders spawn against Close: no
	// goroutine starts once closed is set, so wg never grows from zero
	// while Close waits.
	spawnMu sync.Mutex
	closed  bool
	wg      sync.WaitGroup
}

func newLink(fc *frameConn, c Candidate, peer identity.PublicKey, controlling bool, cfg *Config, log logrus.FieldLogger) (*Link, error) {
	l := &Link{
		peer:   peer,
		path:   c.Path,
		local:  c.Conn.LocalAddr(),
		remote: c.Conn.RemoteAddr(),
		since:  time.Now(),
		cfg:    cfg,
		log:    log,
		raw:    &countingConn{Conn: fc},
		frames: fc,
		slots:  make(chan struct{}, cfg.MaxStreams),
		budget: newBudget(cfg.ReceiveBudget),
		done:   make(chan struct{}),
	}
	l.overLimit = refusalLog{log: log, interval: time.Second}
	l.overBudget = refusalLog{log: log, interval: time.Second}
	fc.in.observe = l.observe // before yamux starts reading
	fc.in.processed = l.open.processed
	var err error
	if controlling {
		l.sess, err = yamux.Client(l.raw, cfg.yamux())
	} else {
		l.sess, err = yamux.Server(l.raw, cfg.yamux())
	}
	if err != nil {
		fc.Close()
		return nil, fmt.Errorf("yamux: %w", err)
	}
	l.wg.Go(l.keepalive)
	return l, nil
}

// ExportKeyingMaterial derives length bytes for label and context from the
// link's TLS session (RFC 8446 section 7.5): keys only the two ends of this
// link can compute. Labels starting with "EXPERIMENTAL" are for private
// use (RFC 5705).
func (l *Link) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	return l.export(label, context, length)
}

// Peer returns the peer's verified key.
func (l *Link) Peer() identity.PublicKey { return l.peer }

// Path returns how the link's bytes travel ("direct-tcp", ...).
func (l *Link) Path() string { return l.path }

// Local returns this end's address on the wire: for a link over a UDP
// socket bound to every address, the unspecified address.
func (l *Link) Local() net.Addr { return l.local }

// Remote returns the peer's endpoint as seen on the wire.
func (l *Link) Remote() net.Addr { return l.remote }

// Done is closed when the link starts closing, for whatever reason; Close
// returns once it has closed.
func (l *Link) Done() <-chan struct{} { return l.done }

// Stats is a snapshot of a link's counters.
type Stats struct {
	Since    time.Time
	RTT      time.Duration // 0 until measured
	BytesIn  int64         // on the wire, including TLS and framing
	BytesOut int64
	Streams  int64 // open now, both directions
	// Buffered is what the peer sent on the link's streams that no one
	// has read yet, bounded by Config.ReceiveBudget.
	Buffered int64
}

// Stats returns the link's counters.
func (l *Link) Stats() Stats {
	return Stats{
		Since:    l.since,
		RTT:      time.Duration(l.rtt.Load()),
		BytesIn:  l.raw.in.Load(),
		BytesOut: l.raw.out.Load(),
		Streams:  l.streams.Load(),
		Buffered: l.budget.buffered(),
	}
}

// Open opens a new stream to the peer.
func (l *Link) Open(ctx context.Context) (net.Conn, error) {
	type result struct {
		s   *yamux.Stream
		err error
	}
	// yamux's OpenStream can block while the peer is slow to acknowledge
	// earlier streams; it takes no context, so wait beside it.
	if err := ctx.Err(); err != nil {
		return nil, err // no stream to open only to abort it
	}
	// ch is unbuffered, so a stream is either taken by this call or, once
	// it gave up, aborted: never both, never neither.
	ch := make(chan result)
	started := l.spawn(func() {
		s, err := l.sess.OpenStream()
		if s != nil {
			// Before the peer can answer the SYN: its reply is counted.
			l.budget.open(s.StreamID())
		}
		select {
		case ch <- result{s, err}:
		case <-ctx.Done():
			if s != nil {
				l.abort(s.StreamID()) // no one will use it
			}
		}
	})
	if !started {
		return nil, fmt.Errorf("%w: open stream", ErrClosed)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, l.wrapErr(r.err)
		}
		return l.newStream(r.s, nil), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Accept waits for the peer to open a stream. Streams beyond MaxStreams
// (those closed here that the peer has not finished count) are reset at
// once and not returned; the peer's Open succeeds, and its first Read or
// Write on the stream fails with ErrStreamReset.
func (l *Link) Accept() (net.Conn, error) {
	for {
		s, err := l.sess.AcceptStream()
		if err != nil {
			return nil, l.wrapErr(err)
		}
		select {
		case l.slots <- struct{}{}:
			return l.newStream(s, l.slots), nil
		default:
			l.overLimit.refused("peer exceeded its stream limit; stream refused",
				logrus.Fields{"max_streams": l.cfg.MaxStreams})
			l.abort(s.StreamID())
		}
	}
}

// Ping measures the round trip to the peer.
func (l *Link) Ping() (time.Duration, error) {
	d, err := l.sess.Ping()
	if err != nil {
		return 0, l.wrapErr(err)
	}
	l.rtt.Store(int64(d))
	return d, nil
}

// Close closes the link and every stream on it, and waits for the
// link's goroutines.
func (l *Link) Close() error {
	err := l.shutdown()
	l.wg.Wait()
	return err
}

// shutdown closes the link without waiting for its goroutines, so that
// they can call it themselves.
func (l *Link) shutdown() error {
	var err error
	l.closeOnce.Do(func() {
		l.spawnMu.Lock()
		l.closed = true
		l.spawnMu.Unlock()
		// Done fires before the peer can learn of the close, so that
		// anything the peer does about it (a new punch session) comes
		// after Done here.
		close(l.done)
		err = l.sess.Close()
		l.closing.stop()
		l.open.notifyAll()
		l.open.clear()
		l.budget.stop()
	})
	return err
}

// spawn runs f on a goroutine Close waits for. Once the link is closing it
// runs nothing and returns false: f could only act on a closed link. f
// must end once the session is closed, and must not call Close.
func (l *Link) spawn(f func()) bool {
	l.spawnMu.Lock()
	defer l.spawnMu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Go(f)
	return true
}

func (l *Link) wrapErr(err error) error {
	if errors.Is(err, yamux.ErrSessionShutdown) || l.sess.IsClosed() {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// keepalive pings the peer every interval and closes the link when a ping
// fails. It also closes the link when yamux shuts the session down on its
// own, so Done always fires.
func (l *Link) keepalive() {
	t := time.NewTicker(l.cfg.KeepAliveInterval)
	defer t.Stop()
	first := time.After(0)
	for {
		select {
		case <-l.done:
			return
		case <-l.sess.CloseChan():
			l.shutdown()
			return
		case <-first:
		case <-t.C:
		}
		if _, err := l.Ping(); err != nil {
			l.log.WithError(err).Warn("link keepalive failed; closing link")
			l.shutdown()
			return
		}
	}
}

// countingConn counts the bytes the link moves on the wire.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}
