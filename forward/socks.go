package forward

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	socks5 "github.com/armon/go-socks5"
	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
)

// SOCKS5 listeners wrap github.com/armon/go-socks5, one socks5.Server per
// connection so that its hooks can reach the connection's state:
//
//   - Resolver is a no-op returning a nil IP, so a requested host name
//     reaches the exit peer unresolved (socks5h semantics).
//   - Rules.Allow (socksSession.Allow) runs once the request is read: it
//     clears the handshake deadline and does the remote Dial. A
//     CodeNotAllowed refusal makes it return false, and go-socks5 replies
//     0x02. Any other refusal lets the request through to Dial, which
//     fails; go-socks5 then writes a reply with a code guessed from the
//     error text, and replyConn.Write replaces that code with the exit's.
//   - Dial hands over the stream opened by Allow, wrapped (socksStream)
//     so LocalAddr is a *net.TCPAddr, as go-socks5 type-asserts it.
//
// UDP ASSOCIATE, which go-socks5 answers with 0x07 (command not
// supported), is done in Allow too (socksSession.associate): on success it
// writes the reply itself, relays the association until the client's TCP
// connection ends, and then lets go-socks5's own reply fall into the
// closed connection (replyConn.hijack). github.com/things-go/go-socks5,
// which has ASSOCIATE, is not available from this project's module proxy.
// BIND is answered 0x07.

// handleSocks serves one SOCKS5 client connection.
func (l *Listeners) handleSocks(ctx context.Context, sc config.Socks, c net.Conn, log logrus.FieldLogger, release func()) {
	log = log.WithField("client", c.RemoteAddr().String())
	sess := &socksSession{ctx: ctx, l: l, peer: sc.Peer, log: log, handshaken: release}
	rc := &replyConn{Conn: c, failed: &sess.failed}
	sess.conn = rc
	conf := &socks5.Config{
		Resolver: passNames{},
		Rules:    sess,
		Dial:     sess.dial,
		Logger:   newDebugLogger(log),
	}
	if sc.Username != "" && sc.Password != "" {
		conf.Credentials = credential{user: sc.Username, pass: sc.Password, log: log}
	}
	srv, err := socks5.New(conf)
	if err != nil {
		log.WithError(err).Error("socks setup failed")
		c.Close()
		return
	}

	// Ending early (the daemon stops) cuts a transfer off: it is reset
	// (see failure); a handshake under way is reset too.
	stop := context.AfterFunc(ctx, func() {
		sess.failed.Store(true)
		rc.Close()
	})
	defer stop()
	c.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	srv.ServeConn(rc) // closes c; errors go to the debug logger
	sess.finish()
}

// socksSession is the state of one SOCKS5 connection.
type socksSession struct {
	ctx  context.Context
	l    *Listeners
	peer string
	conn *replyConn
	log  logrus.FieldLogger
	// handshaken gives back the connection's place among those still in
	// their handshake, once the client has authenticated and asked.
	handshaken func()

	// failed is set once a copy through the session fails (see failure).
	failed failure

	mu     sync.Mutex
	stream *socksStream // set by a successful Allow
	err    error        // set by a failed Allow
	target string
	start  time.Time
}

// Allow implements socks5.RuleSet: it dials the exit for CONNECT, and
// runs a whole UDP association for ASSOCIATE.
func (s *socksSession) Allow(ctx context.Context, req *socks5.Request) (context.Context, bool) {
	s.handshaken()
	var exitReq Request
	switch req.Command {
	case socks5.ConnectCommand:
		exitReq = TargetRequest(req.DestAddr.Address())
	case socks5.AssociateCommand:
		exitReq = AssociateRequest()
	default:
		return ctx, true // go-socks5 replies "command not supported"
	}
	s.conn.SetDeadline(time.Time{})
	log := s.log.WithField("target", exitReq.String())

	dctx, cancel := context.WithTimeout(s.ctx, s.l.cfg.ConnectTimeout)
	defer cancel()
	start := time.Now()
	stream, err := Dial(dctx, s.l.opener, s.peer, exitReq)
	if err == nil && req.Command == socks5.AssociateCommand {
		s.associate(stream, req, log)
		return ctx, true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.target, s.start = exitReq.String(), start
	if err != nil {
		s.l.stats.refuse(refusalOf(err))
		logDialError(log, err)
		code := CodeGeneralFailure
		var re *RefusedError
		switch {
		case errors.As(err, &re):
			code = re.Code
		case errors.Is(err, ErrPeerOffline):
			code = CodeHostUnreachable
		}
		if code == CodeNotAllowed {
			return ctx, false
		}
		s.err = err
		s.conn.setReplyCode(code)
		return ctx, true
	}
	s.stream = &socksStream{Conn: stream, failed: &s.failed}
	s.failed.copying.Store(true)
	return ctx, true
}

// dial implements socks5.Config.Dial: it hands over Allow's result.
func (s *socksSession) dial(context.Context, string, string) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream == nil {
		if s.err != nil {
			return nil, s.err
		}
		return nil, errors.New("no stream")
	}
	return s.stream, nil
}

// finish closes the stream (go-socks5 normally has) and logs the session.
func (s *socksSession) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream == nil {
		return
	}
	s.stream.Close()
	in, out := s.stream.in.Load(), s.stream.out.Load()
	s.l.stats.bytes(in, out)
	s.log.WithFields(logrus.Fields{
		"target":    s.target,
		"bytes_in":  in,
		"bytes_out": out,
		"duration":  time.Since(s.start),
	}).Log(s.l.cfg.connLevel(), "connection closed")
}

// failure records that a copy through a SOCKS5 session failed. go-socks5
// copies a CONNECT's bytes itself and half-closes each side when its copy
// ends, failed or not; a failure (the client's reset, a lost link, the
// exit's target resetting) must reach the other side as a reset, not as
// the clean end a half-close is. So both ends note errors here, and
// half-close or close by resetting (abort) once one was seen.
//
// Only the copies count: before them, a client that stalls or hangs up in
// the handshake is an ordinary end, closed as such.
type failure struct {
	copying atomic.Bool
	atomic.Bool
}

// note records err if the copies run and it is a failure: anything but
// nil and io.EOF.
func (f *failure) note(err error) {
	if err != nil && err != io.EOF && f.copying.Load() {
		f.Store(true)
	}
}

// closeWrite half-closes c, or resets it after a failure.
func (f *failure) closeWrite(c net.Conn) error {
	if f.Load() {
		abort(c)
		return nil
	}
	return closeWrite(c)
}

// close closes c, with a reset after a failure.
func (f *failure) close(c net.Conn) error {
	if f.Load() {
		abort(c)
		return nil
	}
	return c.Close()
}

// replyConn is the client connection as go-socks5 sees it. After
// setReplyCode, the next SOCKS5 reply written gets that code; after
// hijack, go-socks5's writes are dropped (its handler has been served).
type replyConn struct {
	net.Conn
	code     atomic.Int32 // reply code + 1; 0 = leave replies alone
	hijacked atomic.Bool
	failed   *failure
}

func (c *replyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.failed.note(err)
	return n, err
}

func (c *replyConn) setReplyCode(code byte) { c.code.Store(int32(code) + 1) }

func (c *replyConn) hijack() { c.hijacked.Store(true) }

func (c *replyConn) Write(p []byte) (int, error) {
	if c.hijacked.Load() {
		return len(p), nil // go-socks5's "not supported", after the fact
	}
	if len(p) >= 2 && p[0] == 5 {
		if code := c.code.Swap(0); code != 0 {
			q := append([]byte(nil), p...)
			q[1] = byte(code - 1)
			return c.Conn.Write(q)
		}
	}
	n, err := c.Conn.Write(p)
	c.failed.note(err)
	return n, err
}

// CloseWrite lets go-socks5 half-close the client connection, or reset
// it after a failure.
func (c *replyConn) CloseWrite() error { return c.failed.closeWrite(c.Conn) }

// Close closes the client connection, with a reset after a failure.
func (c *replyConn) Close() error { return c.failed.close(c.Conn) }

// socksStream is the stream as go-socks5 sees it. It counts bytes (in =
// read from the peer, out = written to it), reports a *net.TCPAddr
// LocalAddr (go-socks5's handleConnect type-asserts it), and always offers
// CloseWrite: go-socks5 waits for both copy directions to end, so a stream
// that cannot half-close is closed instead.
type socksStream struct {
	net.Conn
	in, out atomic.Int64
	failed  *failure
}

func (c *socksStream) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	c.failed.note(err)
	return n, err
}

func (c *socksStream) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	c.failed.note(err)
	return n, err
}

// Close closes the stream, with a reset after a failure.
func (c *socksStream) Close() error { return c.failed.close(c.Conn) }

func (c *socksStream) LocalAddr() net.Addr {
	if a, ok := c.Conn.LocalAddr().(*net.TCPAddr); ok {
		return a
	}
	return &net.TCPAddr{IP: net.IPv4zero}
}

func (c *socksStream) CloseWrite() error { return c.failed.closeWrite(c.Conn) }

// closeWrite half-closes c if it can, else closes it.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// passNames is a socks5.NameResolver that resolves nothing: with a nil IP,
// AddrSpec.Address() yields "name:port" and the exit resolves the name.
type passNames struct{}

func (passNames) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// credential is a socks5.CredentialStore with a single user. It logs
// failed attempts.
type credential struct {
	user, pass string
	log        logrus.FieldLogger
}

func (c credential) Valid(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(c.user))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(c.pass))
	if u&p != 1 {
		c.log.WithField("username", user).Warn("socks authentication failed")
		return false
	}
	return true
}

// newDebugLogger adapts log to the *log.Logger go-socks5 wants; its lines
// are logged at debug level.
func newDebugLogger(l logrus.FieldLogger) *log.Logger {
	return log.New(debugWriter{l}, "", 0)
}

type debugWriter struct{ log logrus.FieldLogger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
