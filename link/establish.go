package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
)

// Candidate is a raw connection to the peer that may become the link.
type Candidate struct {
	Conn net.Conn
	// Path names how the bytes travel, for status: "direct-tcp",
	// "direct-udp" or "relay" (package session names them).
	Path string
	// Hold, if set, is asked at the controlling end once the candidate is
	// authenticated, before it may be nominated: it returns when the
	// candidate may win (true) or must not (false: it is dropped). The
	// handshake does not wait for it, so a candidate held back for
	// another's sake is ready to win the moment it is let go.
	Hold func(ctx context.Context) bool
}

// Exporter derives keying material from a link's TLS session (RFC 5705,
// RFC 8446 section 7.5); it is tls.ConnectionState.ExportKeyingMaterial.
type Exporter func(label string, context []byte, length int) ([]byte, error)

// Keyed is implemented by a candidate connection that authenticates
// something of its own once it carries the link: a UDP path's roam
// announcements, which must be keyed by the link's TLS session and not by
// anything the rendezvous server or the wire has seen. Establish calls
// LinkKeys on the connection of the candidate it nominates, before it
// returns the link.
type Keyed interface {
	LinkKeys(Exporter)
}

// Secured is implemented by a candidate connection that its transport has
// authenticated and encrypts already: QUIC, whose TLS 1.3 handshake runs
// with this end's TLSConfig for the peer, carrying both certificates.
// Establish runs no TLS of its own over such a connection, which would
// encrypt every byte twice; it checks the transport's handshake with the
// same verifyPeer as its own, and keys the link (Exporter) from it.
type Secured interface {
	// TLSState returns the state of the transport's completed TLS
	// handshake, and false if the transport secures nothing (then the
	// link runs its own TLS over the connection).
	TLSState() (tls.ConnectionState, bool)
}

// Identity is this daemon's key in the form the link needs.
type Identity struct {
	Public identity.PublicKey
	cert   tls.Certificate
}

// NewIdentity prepares k for use in links.
func NewIdentity(k identity.PrivateKey) (Identity, error) {
	cert, err := identity.Certificate(k)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Public: k.Public(), cert: cert}, nil
}

// TLSConfig is this identity's TLS 1.3 configuration for talking to peer
// only: the link's own, and the one a transport below the link must run
// its handshake with (QUIC) for the link to take it as its own (Secured).
// Mutual: each end presents its certificate and accepts only the key
// pinned for the other.
func (id Identity) TLSConfig(peer identity.PublicKey) *tls.Config {
	return identity.TLSConfig(id.cert, identity.Pinned(peer))
}

// verifyPeer is the one answer to "is the other end of this candidate the
// peer": a TLS 1.3 handshake (the link's own or its transport's) that
// completed in full, not resumed from an earlier session, in which the
// other end proved the key pinned for it. The handshake's
// VerifyPeerCertificate already refused any other key (TLSConfig); this
// checks what the link relies on again, for every transport alike, so
// that a transport that ran its handshake with another configuration
// cannot slip an unchecked peer in.
func verifyPeer(state tls.ConnectionState, peer identity.PublicKey) error {
	switch {
	case !state.HandshakeComplete:
		return errors.New("tls handshake not complete")
	case state.Version != tls.VersionTLS13:
		return fmt.Errorf("tls version %#x, want TLS 1.3", state.Version)
	case state.DidResume:
		// A resumed session's certificates were proved in an earlier
		// handshake, which this end did not see.
		return errors.New("tls session resumed, not authenticated afresh")
	}
	got, err := identity.PeerKey(state)
	if err != nil {
		return err
	}
	return identity.Pinned(peer)(got)
}

// Bytes exchanged on a candidate after TLS completes. The controlled end
// sends ready once it has verified the controlling end's key, and the
// controlling end names the winner with nominate: without ready, a TLS 1.3
// client would learn only later that the server refused its certificate.
const (
	readyByte    = 'R'
	nominateByte = 'N'
)

// errHeld is a candidate whose Hold kept it from being nominated.
var errHeld = errors.New("held back until another candidate won")

type attempt struct {
	cand   Candidate
	frames *frameConn // over cand.Conn: the link's TLS, or none if Secured
	export Exporter   // of the TLS session that authenticated the peer
	err    error
}

// Establish authenticates the candidates that arrive on cands, in parallel,
// and returns a Link over the first one nominated. The peer with the lower
// public key is the controlling end: it takes the TLS client role and
// nominates; the other end follows. Establish closes every candidate it does
// not use, including those still arriving after it returns only if the
// sender stops sending once ctx is done (cands should be unbuffered).
//
// It returns ErrNoCandidate (wrapping the last failure) if cands closes or
// ctx ends first.
func Establish(ctx context.Context, cands <-chan Candidate, self Identity, peer identity.PublicKey, cfg *Config, log logrus.FieldLogger) (*Link, error) {
	cfg = cfg.withDefaults()
	e := newEnds(self.Public, peer)
	controlling := e.controlling
	tlsConf := self.TLSConfig(peer)
	tlsConf.SessionTicketsDisabled = true

	ctx, cancel := context.WithCancel(ctx)
	results := make(chan attempt)
	pending := 0
	defer func() {
		cancel()
		// Every attempt goroutine sends exactly once; drain so they exit.
		for ; pending > 0; pending-- {
			if r := <-results; r.frames != nil {
				r.frames.Close()
			}
		}
	}()

	var lastErr error
	for {
		if cands == nil && pending == 0 {
			return nil, noCandidate(lastErr)
		}
		select {
		case c, ok := <-cands:
			if !ok {
				cands = nil
				continue
			}
			pending++
			go func() { results <- try(ctx, c, tlsConf, e, cfg.HandshakeTimeout) }()
		case r := <-results:
			pending--
			if r.err != nil {
				lastErr = r.err
				log.WithFields(logrus.Fields{"remote": r.cand.Conn.RemoteAddr(), "path": r.cand.Path}).
					WithError(r.err).Debug("candidate rejected")
				continue
			}
			if controlling {
				r.frames.SetWriteDeadline(time.Now().Add(cfg.HandshakeTimeout))
				if _, err := r.frames.Conn.Write([]byte{nominateByte}); err != nil {
					r.frames.Close()
					lastErr = fmt.Errorf("nominate: %w", err)
					continue
				}
				r.frames.SetWriteDeadline(time.Time{})
			}
			return linkOver(r, peer, controlling, cfg, log)
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return nil, noCandidate(lastErr)
		}
	}
}

// linkOver runs the link over the nominated attempt r, and hands the
// exporter of the TLS session that authenticated it to a candidate
// connection that wants it.
func linkOver(r attempt, peer identity.PublicKey, controlling bool, cfg *Config, log logrus.FieldLogger) (*Link, error) {
	if k, ok := r.cand.Conn.(Keyed); ok {
		k.LinkKeys(r.export)
	}
	l, err := newLink(r.frames, r.cand, peer, controlling, cfg, log)
	if err != nil {
		return nil, err
	}
	l.export = r.export
	return l, nil
}

func noCandidate(last error) error {
	if last == nil {
		return ErrNoCandidate
	}
	return fmt.Errorf("%w: %w", ErrNoCandidate, last)
}

// ends are the two ends of a link being established, and which of them
// controls (the one with the lower key): decided once, in Establish.
type ends struct {
	self, peer  identity.PublicKey
	controlling bool
}

func newEnds(self, peer identity.PublicKey) ends {
	return ends{self: self, peer: peer, controlling: Controls(self, peer)}
}

// Controls reports whether self is the controlling end of a link (and of
// the punch session below it) with peer: the end with the lower key. It
// takes the TLS client role and nominates; the other end follows.
func Controls(self, peer identity.PublicKey) bool { return self.Less(peer) }

// handshake authenticates one candidate (its transport's TLS if it is
// Secured, else the link's own) and runs the ready/nominate exchange on
// it.
func handshake(ctx context.Context, c Candidate, conf *tls.Config, e ends, timeout time.Duration) attempt {
	controlling := e.controlling
	fail := func(err error) attempt {
		c.Conn.Close()
		return attempt{cand: c, err: err}
	}
	c.Conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { c.Conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var (
		fc    *frameConn
		state tls.ConnectionState
	)
	if sc, ok := c.Conn.(Secured); ok {
		if state, ok = sc.TLSState(); ok {
			fc = newPlainFrameConn(c.Conn)
		}
	}
	if fc == nil {
		var err error
		if fc, state, err = linkTLS(ctx, c.Conn, conf, e); err != nil {
			return fail(err)
		}
	}
	if err := verifyPeer(state, e.peer); err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	// The ready and nominate bytes go where yamux's will: through the
	// link's TLS, or straight onto a secured transport.
	var b [1]byte
	if controlling {
		if _, err := io.ReadFull(fc.Conn, b[:]); err != nil || b[0] != readyByte {
			return fail(fmt.Errorf("peer did not confirm: %w", orUnexpected(err, b[0])))
		}
	} else {
		if _, err := fc.Conn.Write([]byte{readyByte}); err != nil {
			return fail(fmt.Errorf("confirm: %w", err))
		}
		if _, err := io.ReadFull(fc.Conn, b[:]); err != nil || b[0] != nominateByte {
			if errors.Is(err, io.EOF) {
				err = ErrNotNominated
			}
			return fail(orUnexpected(err, b[0]))
		}
	}
	if !stop() {
		return fail(ctx.Err())
	}
	c.Conn.SetDeadline(time.Time{})
	return attempt{cand: c, frames: fc, export: state.ExportKeyingMaterial}
}

// try authenticates candidate c (handshake) and, at the controlling end,
// waits for its Hold before it may be nominated.
func try(ctx context.Context, c Candidate, conf *tls.Config, e ends, timeout time.Duration) attempt {
	r := handshake(ctx, c, conf, e, timeout)
	if r.err == nil && e.controlling && c.Hold != nil && !c.Hold(ctx) {
		r.frames.Close()
		r.frames, r.err = nil, errHeld
	}
	return r
}

// linkTLS runs the link's own TLS over conn, opened with the key claims.
func linkTLS(ctx context.Context, conn net.Conn, conf *tls.Config, e ends) (*frameConn, tls.ConnectionState, error) {
	claims := newClaimConn(conn, e.self, e.peer)
	out := &batchConn{Conn: claims}
	var tc *tls.Conn
	if e.controlling {
		tc = tls.Client(out, conf)
	} else {
		tc = tls.Server(out, conf)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		if cerr := claims.failure(); cerr != nil {
			return nil, tls.ConnectionState{}, cerr
		}
		return nil, tls.ConnectionState{}, fmt.Errorf("tls: %w", err)
	}
	return newTLSFrameConn(tc, out), tc.ConnectionState(), nil
}

func orUnexpected(err error, b byte) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected byte %#x", b)
}
