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
	// "direct-udp" or "relay".
	Path string
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
// only: the link's own, and the one for a transport below the link that
// runs a handshake of its own (QUIC). The link still runs its own TLS
// above such a transport.
func (id Identity) TLSConfig(peer identity.PublicKey) *tls.Config {
	return identity.TLSConfig(id.cert, identity.Pinned(peer))
}

// Bytes exchanged on a candidate after TLS completes. The controlled end
// sends ready once it has verified the controlling end's key, and the
// controlling end names the winner with nominate: without ready, a TLS 1.3
// client would learn only later that the server refused its certificate.
const (
	readyByte    = 'R'
	nominateByte = 'N'
)

type attempt struct {
	cand Candidate
	tc   *tls.Conn
	out  *batchConn // below tc
	err  error
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
	controlling := self.Public.Less(peer)
	tlsConf := self.TLSConfig(peer)
	tlsConf.SessionTicketsDisabled = true

	ctx, cancel := context.WithCancel(ctx)
	results := make(chan attempt)
	pending := 0
	defer func() {
		cancel()
		// Every attempt goroutine sends exactly once; drain so they exit.
		for ; pending > 0; pending-- {
			if r := <-results; r.tc != nil {
				r.tc.Close()
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
			go func() { results <- handshake(ctx, c, tlsConf, self.Public, peer, cfg.HandshakeTimeout) }()
		case r := <-results:
			pending--
			if r.err != nil {
				lastErr = r.err
				log.WithFields(logrus.Fields{"remote": r.cand.Conn.RemoteAddr(), "path": r.cand.Path}).
					WithError(r.err).Debug("candidate rejected")
				continue
			}
			if controlling {
				r.tc.SetWriteDeadline(time.Now().Add(cfg.HandshakeTimeout))
				if _, err := r.tc.Write([]byte{nominateByte}); err != nil {
					r.tc.Close()
					lastErr = fmt.Errorf("nominate: %w", err)
					continue
				}
				r.tc.SetWriteDeadline(time.Time{})
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
// exporter of its TLS session to a candidate connection that wants it.
func linkOver(r attempt, peer identity.PublicKey, controlling bool, cfg *Config, log logrus.FieldLogger) (*Link, error) {
	state := r.tc.ConnectionState()
	export := Exporter(state.ExportKeyingMaterial)
	if k, ok := r.cand.Conn.(Keyed); ok {
		k.LinkKeys(export)
	}
	l, err := newLink(newFrameConn(r.tc, r.out), r.cand, peer, controlling, cfg, log)
	if err != nil {
		return nil, err
	}
	l.export = export
	return l, nil
}

func noCandidate(last error) error {
	if last == nil {
		return ErrNoCandidate
	}
	return fmt.Errorf("%w: %w", ErrNoCandidate, last)
}

// handshake runs TLS and the ready/nominate exchange on one candidate.
func handshake(ctx context.Context, c Candidate, conf *tls.Config, self, peer identity.PublicKey, timeout time.Duration) attempt {
	controlling := self.Less(peer)
	fail := func(err error) attempt {
		c.Conn.Close()
		return attempt{cand: c, err: err}
	}
	c.Conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { c.Conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// Each end first states the key it will prove. The claim proves
	// nothing (TLS does that), but it names an impostor at once and keeps
	// the roles consistent even when the claimed key is not the pinned one.
	if err := exchangeClaims(c.Conn, self, peer); err != nil {
		return fail(err)
	}
	out := &batchConn{Conn: c.Conn}
	var tc *tls.Conn
	if controlling {
		tc = tls.Client(out, conf)
	} else {
		tc = tls.Server(out, conf)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("tls: %w", err))
	}
	var b [1]byte
	if controlling {
		if _, err := io.ReadFull(tc, b[:]); err != nil || b[0] != readyByte {
			return fail(fmt.Errorf("peer did not confirm: %w", orUnexpected(err, b[0])))
		}
	} else {
		if _, err := tc.Write([]byte{readyByte}); err != nil {
			return fail(fmt.Errorf("confirm: %w", err))
		}
		if _, err := io.ReadFull(tc, b[:]); err != nil || b[0] != nominateByte {
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
	return attempt{cand: c, tc: tc, out: out}
}

func orUnexpected(err error, b byte) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected byte %#x", b)
}

// exchangeClaims sends our public key and checks the one the other end
// claims against the pinned key.
func exchangeClaims(conn net.Conn, self, pinned identity.PublicKey) error {
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(self[:])
		errc <- err
	}()
	var claim identity.PublicKey
	_, rerr := io.ReadFull(conn, claim[:])
	if werr := <-errc; werr != nil {
		return fmt.Errorf("send key claim: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("read key claim: %w", rerr)
	}
	if err := identity.Pinned(pinned)(claim); err != nil {
		return fmt.Errorf("key claim: %w", err)
	}
	return nil
}
