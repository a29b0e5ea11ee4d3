package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
)

// Listeners runs the local side: the [[socks]] and [[forward]] listeners,
// whose connections become streams to peers through an Opener.
type Listeners struct {
	socks  []config.Socks
	fwds   []config.Forward
	opener Opener
	cfg    Config
	log    logrus.FieldLogger
	stats  counters
	copier copier

	mu       sync.Mutex
	started  bool
	closed   bool
	socksLns []net.Listener
	fwdLns   []net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup // serve loops and connection handlers
}

// NewListeners prepares listeners for socks and fwds (nothing is bound
// until Start). Connections reach peers through o. cfg's zero fields take
// defaults.
func NewListeners(socks []config.Socks, fwds []config.Forward, o Opener, cfg Config, log logrus.FieldLogger) *Listeners {
	return &Listeners{
		socks:  socks,
		fwds:   fwds,
		opener: o,
		cfg:    cfg.withDefaults(),
		log:    log,
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

	fail := func(err error) error {
		for _, ln := range slices.Concat(l.socksLns, l.fwdLns) {
			ln.Close()
		}
		l.socksLns, l.fwdLns = nil, nil
		return err
	}
	var lc net.ListenConfig
	for i, s := range l.socks {
		ln, err := lc.Listen(ctx, "tcp", s.Listen)
		if err != nil {
			return fail(listenError(fmt.Sprintf("socks[%d]", i), s.Listen, err))
		}
		l.socksLns = append(l.socksLns, ln)
	}
	for i, f := range l.fwds {
		name := fmt.Sprintf("forward[%d]", i)
		if err := checkForward(f); err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		ln, err := lc.Listen(ctx, "tcp", f.Listen)
		if err != nil {
			return fail(listenError(name, f.Listen, err))
		}
		l.fwdLns = append(l.fwdLns, ln)
	}

	ctx, l.cancel = context.WithCancel(ctx)
	for i, ln := range l.socksLns {
		s := l.socks[i]
		log := l.log.WithFields(logrus.Fields{"listener": fmt.Sprintf("socks[%d]", i), "listen": ln.Addr().String(), "peer": s.Peer})
		l.wg.Go(func() {
			l.serve(ctx, ln, log, func(c net.Conn) { l.handleSocks(ctx, s, c, log) })
		})
	}
	for i, ln := range l.fwdLns {
		f := l.fwds[i]
		log := l.log.WithFields(logrus.Fields{"listener": fmt.Sprintf("forward[%d]", i), "listen": ln.Addr().String(), "peer": f.Peer})
		l.wg.Go(func() {
			l.serve(ctx, ln, log, func(c net.Conn) { l.handleForward(ctx, f, c, log) })
		})
	}
	return nil
}

// SocksAddrs returns the bound address of each [[socks]] listener, in
// config order (nil before Start).
func (l *Listeners) SocksAddrs() []net.Addr {
	return l.addrs(func() []net.Listener { return l.socksLns })
}

// ForwardAddrs returns the bound address of each [[forward]] listener, in
// config order (nil before Start).
func (l *Listeners) ForwardAddrs() []net.Addr {
	return l.addrs(func() []net.Listener { return l.fwdLns })
}

func (l *Listeners) addrs(get func() []net.Listener) []net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []net.Addr
	for _, ln := range get() {
		out = append(out, ln.Addr())
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
// ctx ends; then it closes what is left, as Close does.
func (l *Listeners) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	lns := append(append([]net.Listener(nil), l.socksLns...), l.fwdLns...)
	l.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	// Ends once Close below has run, if not before.
	done := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return l.Close()
}

// serve accepts on ln until ctx is done, handling each connection in its
// own goroutine owned by l.wg.
func (l *Listeners) serve(ctx context.Context, ln net.Listener, log logrus.FieldLogger, handle func(net.Conn)) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.WithError(err).Warn("accept failed")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		l.wg.Go(func() {
			defer l.stats.open()()
			handle(c)
		})
	}
}

// handleForward carries one [[forward]] connection through the peer.
func (l *Listeners) handleForward(ctx context.Context, f config.Forward, c net.Conn, log logrus.FieldLogger) {
	start := time.Now()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	req := forwardRequest(f)
	log = log.WithFields(logrus.Fields{"client": c.RemoteAddr().String(), "target": req.String()})

	dctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout)
	s, err := Dial(dctx, l.opener, f.Peer, req)
	cancel()
	if err != nil {
		l.stats.refused.Add(1)
		logDialError(log, err)
		return
	}
	defer s.Close()
	stopStream := context.AfterFunc(ctx, func() { s.Close() })
	defer stopStream()

	out, in := l.copier.join(c, s)
	l.stats.bytes(in, out)
	log.WithFields(logrus.Fields{
		"bytes_in":  in,
		"bytes_out": out,
		"duration":  time.Since(start),
	}).Debug("connection closed")
}

// logDialError logs a failed Dial once: refusals with the peer's code and
// reason, other failures (no link, protocol error) as errors.
func logDialError(log logrus.FieldLogger, err error) {
	var re *RefusedError
	if errors.As(err, &re) {
		log.WithFields(logrus.Fields{"code": re.Code, "reason": refusalReason(re)}).Warn("refused by peer")
		return
	}
	log.WithError(err).Warn("cannot reach peer")
}

// checkForward rejects forwards this package cannot serve.
func checkForward(f config.Forward) error {
	if f.Protocol != "" && f.Protocol != "tcp" {
		return fmt.Errorf("protocol %q not supported", f.Protocol)
	}
	if (f.Service == "") == (f.Target == "") {
		return errors.New("exactly one of service and target must be set")
	}
	return forwardRequest(f).Validate()
}

// forwardRequest is what a [[forward]] asks its peer for.
func forwardRequest(f config.Forward) Request {
	if f.Service != "" {
		return ServiceRequest(f.Service)
	}
	return TargetRequest(f.Target)
}

// listenError formats a bind failure as "NAME listen ADDR: CAUSE", CAUSE
// being the bare system error when there is one ("address already in
// use").
func listenError(name, addr string, err error) error {
	cause := err
	var oe *net.OpError
	if errors.As(err, &oe) {
		cause = oe.Err
	}
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err
	}
	return fmt.Errorf("%s listen %s: %w", name, addr, cause)
}
