package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/internal/admit"
	"github.com/warren-p2p/warren/internal/bufcopy"
	"github.com/warren-p2p/warren/internal/waitfor"
)

// Listeners runs the local side: the [[socks]] and [[forward]] listeners,
// whose connections (and UDP clients) become streams to peers through an
// Opener. Reload swaps their configuration without touching what did not
// change.
type Listeners struct {
	opener Opener
	cfg    Config
	log    logrus.FieldLogger
	stats  counters
	copier bufcopy.Copier
	gate   *admit.Gate // connections still in their handshake (Config.MaxPending)

	mu      sync.Mutex
	socks   []config.Socks
	fwds    []config.Forward
	started bool
	closed  bool
	ctx     context.Context // serves listeners that Reload binds
	cancel  context.CancelFunc
	bound   map[string]*listener // by listenerKey
	order   []*listener          // socks in config order, then forwards
	wg      sync.WaitGroup       // serve loops and connection handlers
}

// listener is one bound [[socks]] or [[forward]] entry. Its socket lives
// across reloads as long as its key (kind, protocol, address) does; the
// entry it serves may change, and new connections get the new one.
type listener struct {
	key   string
	ln    net.Listener // TCP
	pc    *net.UDPConn // UDP forward
	conf  atomic.Pointer[listenerConf]
	stop  context.CancelFunc
	ended chan struct{} // closed when its serve loop returns
}

// listenerConf is what a listener serves: one of socks and fwd is set.
type listenerConf struct {
	name  string // "socks[0]", "forward[2]": the entry's key in the config
	socks *config.Socks
	fwd   *config.Forward
	log   logrus.FieldLogger
}

func (l *listener) addr() net.Addr {
	if l.pc != nil {
		return l.pc.LocalAddr()
	}
	return l.ln.Addr()
}

func (l *listener) close() {
	if l.pc != nil {
		l.pc.Close()
	} else {
		l.ln.Close()
	}
}

// listenerKey is what must stay the same for a listener's socket to be
// kept over a reload: kind, protocol and address, and for port 0 (each
// such entry gets a port of its own) also the entry's place in the config.
func listenerKey(name, protocol, addr string) string {
	kind, _, _ := strings.Cut(name, "[")
	key := kind + " " + protocol + " " + addr
	if _, port, _ := net.SplitHostPort(addr); strings.Trim(port, "0") == "" {
		key += " " + name
	}
	return key
}

// NewListeners prepares listeners for socks and fwds (nothing is bound
// until Start). Connections reach peers through o. cfg's zero fields take
// defaults.
func NewListeners(socks []config.Socks, fwds []config.Forward, o Opener, cfg Config, log logrus.FieldLogger) *Listeners {
	cfg = cfg.withDefaults()
	return &Listeners{
		socks:  socks,
		fwds:   fwds,
		opener: o,
		cfg:    cfg,
		log:    log,
		gate:   admit.NewGate(cfg.MaxPendingPerSource, cfg.MaxPending),
		bound:  make(map[string]*listener),
	}
}

// Start binds every listener and then serves them in the background until
// ctx is done or Close is called. If any listener cannot be bound (or a
// forward is unusable), those already bound are closed and an error naming
// the listener is returned, e.g.
// "forward[1] listen 127.0.0.1:13389: address already in use". Start may
// be called once.
func (l *Listeners) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.closed {
		return errors.New("forward: listeners already started or closed")
	}
	l.started = true
	l.ctx, l.cancel = context.WithCancel(ctx)
	return l.applyLocked(l.socks, l.fwds)
}

// Reload makes the listeners serve socks and fwds instead: listeners whose
// kind, protocol and address are unchanged keep their socket and their
// open connections (new connections get the new entry), new ones are
// bound, and removed ones stop accepting (their open connections run on
// until they end). If anything cannot be bound or is unusable, nothing
// changes and the error names the entry.
func (l *Listeners) Reload(socks []config.Socks, fwds []config.Forward) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started || l.closed {
		return errors.New("forward: listeners not running")
	}
	return l.applyLocked(socks, fwds)
}

// applyLocked binds what is new in socks and fwds, then switches to them.
func (l *Listeners) applyLocked(socks []config.Socks, fwds []config.Forward) error {
	type want struct {
		key  string
		conf *listenerConf
		bind func(lc *net.ListenConfig) (*listener, error)
	}
	var wants []want
	for i := range socks {
		sc := &socks[i]
		name := fmt.Sprintf("socks[%d]", i)
		wants = append(wants, want{listenerKey(name, "tcp", sc.Listen), &listenerConf{name: name, socks: sc},
			func(lc *net.ListenConfig) (*listener, error) {
				ln, err := lc.Listen(l.ctx, "tcp", sc.Listen)
				if err != nil {
					return nil, config.NewBindError(name+".listen", sc.Listen, err)
				}
				return &listener{ln: ln}, nil
			}})
	}
	for i := range fwds {
		f := &fwds[i]
		name := fmt.Sprintf("forward[%d]", i)
		if err := checkForward(*f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		wants = append(wants, want{listenerKey(name, cmp.Or(f.Protocol, "tcp"), f.Listen), &listenerConf{name: name, fwd: f},
			func(lc *net.ListenConfig) (*listener, error) {
				if f.Protocol == "udp" {
					pc, err := lc.ListenPacket(l.ctx, "udp", f.Listen)
					if err != nil {
						return nil, config.NewBindError(name+".listen", f.Listen, err)
					}
					return &listener{pc: pc.(*net.UDPConn)}, nil
				}
				ln, err := lc.Listen(l.ctx, "tcp", f.Listen)
				if err != nil {
					return nil, config.NewBindError(name+".listen", f.Listen, err)
				}
				return &listener{ln: ln}, nil
			}})
	}

	// Bind everything new first, so that a failure changes nothing.
	var lc net.ListenConfig
	fresh := map[string]*listener{}
	for _, w := range wants {
		if l.bound[w.key] != nil || fresh[w.key] != nil {
			continue
		}
		ln, err := w.bind(&lc)
		if err != nil {
			for _, f := range fresh {
				f.close()
			}
			return err
		}
		ln.key = w.key
		fresh[w.key] = ln
	}

	keep := map[string]*listener{}
	var order []*listener
	for _, w := range wants {
		ln := l.bound[w.key]
		if ln == nil {
			ln = fresh[w.key]
		}
		w.conf.log = l.log.WithFields(logrus.Fields{"listener": w.conf.name, "listen": ln.addr().String(), "peer": confPeer(w.conf)})
		ln.conf.Store(w.conf)
		keep[w.key] = ln
		order = append(order, ln)
	}
	for key, ln := range l.bound {
		if keep[key] == nil {
			ln.stop()
			ln.close()
		}
	}
	for _, ln := range fresh {
		ctx, stop := context.WithCancel(l.ctx)
		ln.stop, ln.ended = stop, make(chan struct{})
		l.wg.Go(func() {
			defer close(ln.ended)
			if ln.pc != nil {
				l.serveUDP(ctx, ln)
			} else {
				l.serve(ctx, ln)
			}
		})
	}
	l.bound, l.order, l.socks, l.fwds = keep, order, socks, fwds
	return nil
}

func confPeer(c *listenerConf) string {
	if c.socks != nil {
		return c.socks.Peer
	}
	return c.fwd.Peer
}

// SocksAddrs returns the bound address of each [[socks]] listener, in
// config order (nil before Start).
func (l *Listeners) SocksAddrs() []net.Addr {
	return l.addrs(func(c *listenerConf) bool { return c.socks != nil })
}

// ForwardAddrs returns the bound address of each [[forward]] listener, in
// config order (nil before Start).
func (l *Listeners) ForwardAddrs() []net.Addr {
	return l.addrs(func(c *listenerConf) bool { return c.fwd != nil })
}

func (l *Listeners) addrs(match func(*listenerConf) bool) []net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []net.Addr
	for _, ln := range l.order {
		if match(ln.conf.Load()) {
			out = append(out, ln.addr())
		}
	}
	return out
}

// Stats returns the listeners' counters. BytesIn is what came back from
// peers, BytesOut what was sent to them.
func (l *Listeners) Stats() Stats { return l.stats.snapshot() }

// Close stops the listeners, closes every active connection and waits for
// all goroutines to end. It is safe to call more than once.
func (l *Listeners) Close() error {
	l.mu.Lock()
	l.closed = true
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	l.wg.Wait()
	return nil
}

// Shutdown stops accepting at once and lets open connections finish until
// ctx ends; then it closes what is left, as Close does. UDP forwards have
// no connections to finish: they stop at once.
func (l *Listeners) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	for _, ln := range l.bound {
		// Stopping the listener's serve loop also ends its UDP clients,
		// which have no connection to finish; TCP connections run on.
		ln.stop()
		ln.close()
	}
	l.mu.Unlock()
	// The watcher ends once Close below has run, if not before.
	_ = waitfor.Group(ctx, &l.wg) // either way, Close ends the rest
	return l.Close()
}

// serve accepts on ln until ctx is done, handling each connection in its
// own goroutine owned by l.wg, with the entry ln serves at that moment.
// Accept errors (out of file descriptors) make it back off, never stop
// (admit.Serve). A connection holds a place in l.gate until its SOCKS5
// handshake or its forward's request to the peer is over; one over the
// caps is closed at once.
func (l *Listeners) serve(ctx context.Context, ln *listener) {
	defer ln.close()
	admit.Serve(ctx, ln.ln, ln.conf.Load().log, func(c net.Conn) {
		conf := ln.conf.Load()
		release, ok := l.gate.Admit(c.RemoteAddr())
		if !ok {
			conf.log.WithField("client", c.RemoteAddr().String()).Debug("too many connections still in their handshake; closed")
			abort(c)
			return
		}
		l.wg.Go(func() {
			defer l.stats.open()()
			defer release()
			// Connections outlive their listener's removal by a reload:
			// they run on l's context, not the listener's.
			if conf.socks != nil {
				l.handleSocks(l.ctx, *conf.socks, c, conf.log, release)
			} else {
				l.handleForward(l.ctx, *conf.fwd, c, conf.log, release)
			}
		})
	})
}

// handleForward carries one [[forward]] connection through the peer. It
// calls release once the peer has answered.
func (l *Listeners) handleForward(ctx context.Context, f config.Forward, c net.Conn, log logrus.FieldLogger, release func()) {
	start := time.Now()
	defer c.Close()
	// Ending early (the daemon stops) cuts the transfer off: both sides
	// are reset, not finished (see join).
	stop := context.AfterFunc(ctx, func() { abort(c) })
	defer func() { stop() }()

	req := forwardRequest(f)
	// The entry with the connection's fields is built where a line is
	// logged, not held by an idle connection (its map is 0.4 KiB).
	connLog := func() *logrus.Entry {
		return log.WithFields(logrus.Fields{"client": c.RemoteAddr().String(), "target": req.String()})
	}

	s, n, err := l.dial(ctx, f.Peer, req, c, connLog)
	release()
	if err != nil {
		// The peer did not take the connection: the client learns it as
		// from a refusing server, whether or not it sent anything first.
		abort(c)
		return
	}
	defer s.Close()
	// One registration for both, which an idle connection holds.
	stop()
	stop = context.AfterFunc(ctx, func() { abort(c); abort(s) })

	out, in := join(&l.copier, c, s)
	out += int64(n)
	l.stats.bytes(in, out)
	connLog().WithFields(logrus.Fields{
		"bytes_in":  in,
		"bytes_out": out,
		"duration":  time.Since(start),
	}).Log(l.cfg.connLevel(), "connection closed")
}

// dial opens a stream to peer for req within ConnectTimeout, sending with
// the request what client (if not nil) has sent already; n is how much.
// A failure is counted and logged here.
func (l *Listeners) dial(ctx context.Context, peer string, req Request, client net.Conn, log func() *logrus.Entry) (s net.Conn, n int, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout)
	defer cancel()
	s, n, err = dialWith(ctx, l.opener, peer, req, client)
	if err != nil {
		l.stats.refuse(refusalOf(err))
		logDialError(log(), err)
	}
	return s, n, err
}

// logDialError logs a failed Dial once: refusals with the peer's code and
// reason, other failures (no link, protocol error) as errors.
func logDialError(log logrus.FieldLogger, err error) {
	var re *RefusedError
	if errors.As(err, &re) {
		log.WithFields(logrus.Fields{"code": re.Code, "reason": refusalReason(re)}).Warn("refused by peer")
		return
	}
	if errors.Is(err, ErrPeerOffline) {
		// Not this daemon's fault, nor news: status says so too.
		log.WithError(err).Info("cannot reach peer")
		return
	}
	log.WithError(err).Warn("cannot reach peer")
}

// checkForward rejects forwards this package cannot serve.
func checkForward(f config.Forward) error {
	if f.Protocol != "" && f.Protocol != "tcp" && f.Protocol != "udp" {
		return fmt.Errorf("protocol %q not supported", f.Protocol)
	}
	if (f.Service == "") == (f.Target == "") {
		return errors.New("exactly one of service and target must be set")
	}
	return forwardRequest(f).Validate()
}

// forwardRequest is what a [[forward]] asks its peer for.
func forwardRequest(f config.Forward) Request {
	udp := f.Protocol == "udp"
	switch {
	case f.Service != "" && udp:
		return Request{Kind: KindUDPService, Payload: f.Service}
	case f.Service != "":
		return ServiceRequest(f.Service)
	case udp:
		return Request{Kind: KindUDPTarget, Payload: f.Target}
	}
	return TargetRequest(f.Target)
}
