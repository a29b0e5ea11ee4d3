package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/internal/bufcopy"
)

// Server is the exit side: it serves streams that peers open to this
// daemon. It is safe for concurrent use.
type Server struct {
	policy atomic.Pointer[Policy]
	cfg    Config
	log    logrus.FieldLogger
	dialer net.Dialer
	stats  counters
	copier bufcopy.Copier
}

// NewServer returns a Server that authorizes with policy. cfg's zero
// fields take defaults.
func NewServer(policy *Policy, cfg Config, log logrus.FieldLogger) *Server {
	s := &Server{cfg: cfg.withDefaults(), log: log}
	s.SetPolicy(policy)
	return s
}

// SetPolicy makes new streams (and new destinations of open UDP
// associations) authorize with policy. Open streams keep what they were
// granted, as established connections outlive a firewall change.
// Config.Self's reserved targets stay out of reach whatever policy grants.
func (s *Server) SetPolicy(policy *Policy) { s.policy.Store(policy.WithSelf(s.cfg.Self)) }

// Stats returns the Server's counters. BytesIn is what peers sent through
// their streams, BytesOut what went back to them.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// ServeStream serves one stream opened by peer: it reads the request
// (within RequestTimeout), authorizes and dials it (within DialTimeout),
// replies, then copies bytes both ways until both sides are done. It
// blocks until then, closes stream before returning, and stops early when
// ctx is done. It logs one line per stream.
//
// The request's handling (open) and the copy (carry) have frames of their
// own: what this goroutine holds on its stack while the stream sits idle
// is this frame, carry's and the copy's, and the runtime shrinks a stack
// that holds less than a quarter of its size. With the request's frame
// under the copy, an idle stream kept an 8 KiB stack here instead of 4.
func (s *Server) ServeStream(ctx context.Context, stream net.Conn, peer string) {
	start := time.Now()
	defer stream.Close()
	defer s.stats.open()()
	// Ending early (the daemon stops, the peer is removed) cuts the
	// transfer off: both sides are reset, not finished (see join).
	stop := context.AfterFunc(ctx, func() { abort(stream) })
	defer func() { stop() }()
	target, req := s.open(ctx, stream, peer, start)
	if target == nil {
		return
	}
	defer target.Close()
	// One registration for both, which an idle stream holds.
	stop()
	stop = context.AfterFunc(ctx, func() { abort(stream); abort(target) })
	s.carry(ctx, stream, target, peer, req, start)
}

// open reads stream's request, connects it and replies: it returns the
// connected target, or nil once it has refused the stream (or the stream
// failed), having logged why. Its log entry, with its fields' map, stays
// in its frame: an idle stream does not hold it (streamLog builds it again
// for the closing line).
func (s *Server) open(ctx context.Context, stream net.Conn, peer string, start time.Time) (net.Conn, Request) {
	log := s.log.WithField("peer", peer)
	stream.SetReadDeadline(start.Add(s.cfg.RequestTimeout))
	req, err := ReadRequest(stream)
	if err != nil {
		s.stats.refuse(RefusalProtocol)
		log.WithError(err).Warn("bad stream request")
		forget(stream)
		return nil, req
	}
	stream.SetReadDeadline(time.Time{})
	log = requestLog(log, req)
	target, err := aside(func() (net.Conn, error) { return s.connect(ctx, peer, req) })
	if err != nil {
		s.refuse(stream, asRefused(err, peer, req), log, start)
		return nil, req
	}
	log = withTarget(log, req, target)
	stream.SetWriteDeadline(time.Now().Add(s.cfg.RequestTimeout))
	if err := WriteReply(stream, Reply{Code: CodeSucceeded}); err != nil {
		log.WithError(err).WithField("duration", time.Since(start)).Info("stream closed before reply")
		target.Close()
		return nil, req
	}
	stream.SetWriteDeadline(time.Time{})
	return target, req
}

// streamLog is the log entry of peer's stream for req, connected to
// target.
func (s *Server) streamLog(peer string, req Request, target net.Conn) *logrus.Entry {
	return withTarget(requestLog(s.log.WithField("peer", peer), req), req, target)
}

// withTarget adds to a service's log entry the address its name stands for.
func withTarget(log *logrus.Entry, req Request, target net.Conn) *logrus.Entry {
	if req.service() {
		return log.WithField("target", target.RemoteAddr().String())
	}
	return log
}

// requestLog is log with req's fields.
func requestLog(log *logrus.Entry, req Request) *logrus.Entry {
	log = log.WithField("target", req.Payload)
	if req.Kind == KindUDPAssociate {
		log = log.WithField("target", "udp associate")
	}
	if req.service() {
		log = log.WithField("service", req.Payload)
	}
	if req.udp() {
		log = log.WithField("protocol", "udp")
	}
	return log
}

// refuse replies re to stream, logs the refusal, and has the link forget
// the stream.
func (s *Server) refuse(stream net.Conn, re *RefusedError, log *logrus.Entry, start time.Time) {
	s.stats.refuse(int(re.Code))
	stream.SetWriteDeadline(time.Now().Add(s.cfg.RequestTimeout))
	werr := WriteReply(stream, Reply{Code: re.Code, Msg: re.Msg})
	entry := log.WithFields(logrus.Fields{
		"code":     re.Code,
		"reason":   refusalReason(re),
		"duration": time.Since(start),
	})
	if werr != nil {
		entry = entry.WithField("reply_error", werr)
	}
	if re.Code == CodeNotAllowed {
		entry.Warn("stream refused")
	} else {
		entry.Info("stream refused")
	}
	forget(stream)
}

// carry copies between stream and its connected target until both are
// done, and logs the stream's line. Its frame sits under the copy while
// the stream is idle: the logging, with its maps, is a call away.
func (s *Server) carry(ctx context.Context, stream, target net.Conn, peer string, req Request, start time.Time) {
	var in, out int64
	var fields logrus.Fields
	if sock, ok := target.(*net.UDPConn); ok {
		var r datagramResult
		if req.Kind == KindUDPAssociate {
			r = s.associate(ctx, stream, sock, peer, s.streamLog(peer, req, target))
		} else {
			r = relayConnected(ctx, stream, sock, s.cfg.UDPIdleTimeout)
		}
		in, out, fields = r.in, r.out, r.fields()
	} else {
		in, out = join(&s.copier, stream, target)
	}
	s.closed(s.streamLog(peer, req, target), fields, in, out, start)
}

// closed counts a stream's bytes and logs its line.
//
//go:noinline
func (s *Server) closed(log *logrus.Entry, fields logrus.Fields, in, out int64, start time.Time) {
	s.stats.bytes(in, out)
	log.WithFields(fields).WithFields(logrus.Fields{
		"bytes_in":  in,
		"bytes_out": out,
		"duration":  time.Since(start),
	}).Log(s.cfg.connLevel(), "stream closed")
}

// forget ends a stream the exit refused with a reset after its reply,
// where the stream can (a link stream delivers what was written before
// the reset): the link then forgets it at once, where Close would keep it
// until the peer finishes its side, for up to the link's stream close
// timeout (issue 15, finding 9: a peer flooding refused streams had
// 39,920 held at once). A TCP connection is left to Close: its reset
// could overtake the reply.
func forget(stream net.Conn) {
	if a, ok := stream.(aborter); ok {
		a.Abort()
	}
}

// aside runs f on a goroutine of its own and returns its result.
// Resolving and dialling take a deep stack (8 KiB), and a goroutine's
// stack does not shrink back while the stream it serves sits idle: run on
// ServeStream's goroutine, they made an idle stream cost the exit 20.5 KiB
// instead of 17.4 (BenchmarkIdleStreams, 10k streams).
func aside(f func() (net.Conn, error)) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := f()
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// connect authorizes req and dials the granted addresses in order.
func (s *Server) connect(ctx context.Context, peer string, req Request) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	g, err := s.policy.Load().Authorize(ctx, peer, req)
	if err != nil {
		return nil, err
	}
	if req.Kind == KindUDPAssociate {
		// Unconnected: the association's datagrams go wherever the
		// policy lets each of them.
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, &RefusedError{Code: CodeGeneralFailure, Msg: err.Error(), Peer: peer, Target: g.Target}
		}
		return c, nil
	}
	network := "tcp"
	if req.udp() {
		network = "udp"
	}
	var first error
	for _, a := range g.Addrs {
		c, err := s.dialer.DialContext(ctx, network, a.String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if first == nil {
		first = errors.New("no address to dial")
	}
	return nil, &RefusedError{Code: dialErrorCode(first), Msg: first.Error(), Peer: peer, Target: g.Target}
}

// dialErrorCode maps a dial error to a reply code.
func dialErrorCode(err error) byte {
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return CodeConnectionRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return CodeTTLExpired
	case errors.Is(err, syscall.ENETUNREACH):
		return CodeNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.As(err, &dnsErr):
		return CodeHostUnreachable
	default:
		return CodeGeneralFailure
	}
}

// asRefused turns any connect error into the RefusedError to reply with.
func asRefused(err error, peer string, req Request) *RefusedError {
	var re *RefusedError
	if errors.As(err, &re) {
		return re
	}
	return &RefusedError{Code: CodeGeneralFailure, Msg: err.Error(), Peer: peer, Target: req.String()}
}

func refusalReason(re *RefusedError) string {
	if re.Msg == "" {
		return CodeText(re.Code)
	}
	return fmt.Sprintf("%s: %s", CodeText(re.Code), re.Msg)
}
