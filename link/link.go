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
	kicking atomic.Bool // a kick's ping is out

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup // the keepalive goroutine
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
		done:   make(chan struct{}),
	}
	fc.in.observe = l.observe // before yamux starts reading
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
	l.wg.Add(1)
	go l.keepalive()
	return l, nil
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

// Done is closed when the link has closed, for whatever reason.
func (l *Link) Done() <-chan struct{} { return l.done }

// Stats is a snapshot of a link's counters.
type Stats struct {
	Since    time.Time
	RTT      time.Duration // 0 until measured
	BytesIn  int64         // on the wire, including TLS and framing
	BytesOut int64
	Streams  int64 // open now, both directions
}

// Stats returns the link's counters.
func (l *Link) Stats() Stats {
	return Stats{
		Since:    l.since,
		RTT:      time.Duration(l.rtt.Load()),
		BytesIn:  l.raw.in.Load(),
		BytesOut: l.raw.out.Load(),
		Streams:  l.streams.Load(),
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
	ch := make(chan result, 1)
	go func() {
		s, err := l.sess.OpenStream()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, l.wrapErr(r.err)
		}
		return l.newStream(r.s, nil), nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				l.abort(r.s.StreamID()) // no one will use it
			}
		}()
		return nil, ctx.Err()
	}
}

// Accept waits for the peer to open a stream. Streams beyond MaxStreams are
// reset at once and not returned.
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
			l.log.WithField("max_streams", l.cfg.MaxStreams).Warn("peer exceeded its stream limit; stream refused")
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

// Close closes the link and every stream on it.
func (l *Link) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.sess.Close()
		l.closing.stop()
		l.open.clear()
		close(l.done)
	})
	l.wg.Wait()
	return err
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
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.KeepAliveInterval)
	defer t.Stop()
	first := time.After(0)
	for {
		select {
		case <-l.done:
			return
		case <-l.sess.CloseChan():
			go l.Close()
			return
		case <-first:
		case <-t.C:
		}
		if _, err := l.Ping(); err != nil {
			l.log.WithError(err).Warn("link keepalive failed; closing link")
			go l.Close()
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
