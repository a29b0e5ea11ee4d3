package link

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/transport"
)

// quicSocket opens a QUICSocket on a fresh loopback port.
func quicSocket(t testing.TB) *transport.QUICSocket {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := transport.NewQUICSocket(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// quicEnd is one end of a QUIC connection being opened: the TLS
// configuration its handshake runs with, what it got, and the error.
type quicEnd struct {
	conf *tls.Config
	conn net.Conn
	err  error
}

// quicConnect opens a QUIC connection from client to server on loopback,
// each running its handshake with its conf, as the daemon does with the
// link's TLSConfig (the controlling end dials).
func quicConnect(t testing.TB, client, server *quicEnd, cfg *transport.QUICConfig) {
	t.Helper()
	sc, ss := quicSocket(t), quicSocket(t)
	addr := func(s *transport.QUICSocket) netip.AddrPort { return s.LocalAddr().(*net.UDPAddr).AddrPort() }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	dial := func(s *transport.QUICSocket, e *quicEnd, to netip.AddrPort, dials bool) {
		st, err := s.Dial(ctx, to, dials, e.conf, cfg)
		if err != nil {
			e.err = err
			return
		}
		t.Cleanup(func() { st.Close() })
		e.conn = st
	}
	wg.Go(func() { dial(sc, client, addr(ss), true) })
	wg.Go(func() { dial(ss, server, addr(sc), false) })
	wg.Wait()
}

// quicPins opens a QUIC connection between a and b, each presenting its
// identity and pinning the key it was given, the controlling end (by
// their real keys) dialling.
func quicPins(t testing.TB, a, b Identity, aPin, bPin identity.PublicKey, cfg *transport.QUICConfig) (ea, eb *quicEnd) {
	t.Helper()
	ea, eb = &quicEnd{conf: a.TLSConfig(aPin)}, &quicEnd{conf: b.TLSConfig(bPin)}
	if Controls(a.Public, b.Public) {
		quicConnect(t, ea, eb, cfg)
	} else {
		quicConnect(t, eb, ea, cfg)
	}
	return ea, eb
}

// quicLinks establishes a link between two fresh identities over a QUIC
// connection on loopback.
func quicLinks(t testing.TB) (ra, rb result) {
	t.Helper()
	_, _, ra, rb = quicLinksVia(t, func(c net.Conn) net.Conn { return c })
	return ra, rb
}

// quicLinksVia is quicLinks with each end's QUIC stream handed to the
// link through wrap (a's first).
func quicLinksVia(t testing.TB, wrap func(net.Conn) net.Conn) (aID, bID Identity, ra, rb result) {
	t.Helper()
	aID, bID = newIdentity(t), newIdentity(t)
	ea, eb := quicPins(t, aID, bID, bID.Public, aID.Public, nil)
	if ea.err != nil || eb.err != nil {
		t.Fatalf("quic: %v / %v", ea.err, eb.err)
	}
	ca := wrap(ea.conn) // before eb's, as documented
	ra, rb = establishBoth(t, aID, bID, bID.Public, aID.Public, []net.Conn{ca}, []net.Conn{wrap(eb.conn)})
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish: %v / %v", ra.err, rb.err)
	}
	return aID, bID, ra, rb
}

// tappedQUICLinks is quicLinks with each end's QUIC stream tapped.
func tappedQUICLinks(t testing.TB) (aID, bID Identity, qa, qb *tapConn, ra, rb result) {
	t.Helper()
	var taps []*tapConn
	aID, bID, ra, rb = quicLinksVia(t, func(c net.Conn) net.Conn {
		tc := &tapConn{Conn: c}
		taps = append(taps, tc)
		return tc
	})
	return aID, bID, taps[0], taps[1], ra, rb
}

// fastFail gives up a QUIC handshake that cannot succeed quickly.
var fastFail = &transport.QUICConfig{HandshakeTimeout: time.Second}

// TestQUICRefusesKeysNotPinned: a QUIC handshake fails when either end
// holds a key the other does not pin (as a peer not in [[peers]] does),
// and no link comes of what is left of it. The end that refused names the
// key mismatch: the client in its dial, the server in its accept.
func TestQUICRefusesKeysNotPinned(t *testing.T) {
	a, b, mallory := newIdentity(t), newIdentity(t), newIdentity(t)
	impostor := Identity{Public: b.Public, cert: mallory.cert} // claims b's key, holds mallory's
	for _, tc := range []struct {
		name                 string
		client, server       Identity
		clientPin, serverPin identity.PublicKey
		refuser              string // "client" or "server"
	}{
		{"unknown client", mallory, b, b.Public, a.Public, "server"},
		{"unknown server", a, mallory, b.Public, a.Public, "client"},
		{"wrong server key", a, b, mallory.Public, a.Public, "client"},
		{"impostor server", a, impostor, b.Public, a.Public, "client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := &quicEnd{conf: tc.client.TLSConfig(tc.clientPin)}, &quicEnd{conf: tc.server.TLSConfig(tc.serverPin)}
			quicConnect(t, c, s, fastFail)
			refuser := map[string]*quicEnd{"client": c, "server": s}[tc.refuser]
			if !errors.Is(refuser.err, identity.ErrKeyMismatch) {
				t.Fatalf("the %s's handshake ended with %v, want a key mismatch", tc.refuser, refuser.err)
			}
			// A TLS 1.3 client finishes before the server has checked its
			// certificate: its QUIC dial may succeed, but no link must.
			for _, e := range []struct {
				end  *quicEnd
				self Identity
				pin  identity.PublicKey
			}{{c, tc.client, tc.clientPin}, {s, tc.server, tc.serverPin}} {
				if e.end.conn == nil {
					continue
				}
				if _, err := establishOne(t, e.end.conn, e.self, e.pin); !errors.Is(err, ErrNoCandidate) {
					t.Fatalf("a link came of a refused handshake: %v", err)
				}
			}
		})
	}
}

// establishOne runs Establish on conn alone, as one end.
func establishOne(t testing.TB, conn net.Conn, self Identity, pin identity.PublicKey) (*Link, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ch := make(chan Candidate, 1)
	ch <- Candidate{Conn: conn, Path: "direct-udp"}
	close(ch)
	l, err := Establish(ctx, ch, self, pin, nil, testLog())
	if l != nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

// TestQUICLinkChecksTheTransportsHandshake: a transport whose handshake
// ran with a configuration that pins nothing (as a careless caller might
// pass) still gets no link with a key that is not the peer's: Establish
// checks the transport's handshake with the same verifyPeer as its own.
func TestQUICLinkChecksTheTransportsHandshake(t *testing.T) {
	a, b, mallory := newIdentity(t), newIdentity(t), newIdentity(t)
	anyKey := func(id Identity) *tls.Config {
		return identity.TLSConfig(id.cert, func(identity.PublicKey) error { return nil })
	}
	ea, em := &quicEnd{conf: anyKey(a)}, &quicEnd{conf: anyKey(mallory)}
	quicConnect(t, ea, em, nil)
	if ea.err != nil || em.err != nil {
		t.Fatalf("quic: %v / %v", ea.err, em.err)
	}
	// a pins b; mallory answers. a's Establish must find the mismatch
	// itself (mallory's goes along, pinning a, and fails with it).
	done := make(chan error, 1)
	go func() {
		_, err := establishOne(t, em.conn, mallory, a.Public)
		done <- err
	}()
	_, err := establishOne(t, ea.conn, a, b.Public)
	if !errors.Is(err, ErrNoCandidate) || !errors.Is(err, identity.ErrKeyMismatch) {
		t.Fatalf("Establish over a QUIC handshake with mallory = %v, want a key mismatch", err)
	}
	<-done
}

// tapConn is a secured candidate connection that keeps a copy of
// what it reads, and takes the link's exporter (Keyed), as a UDP link's
// connection does.
type tapConn struct {
	net.Conn
	mu     sync.Mutex
	read   bytes.Buffer
	export Exporter
}

func (r *tapConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.read.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

func (r *tapConn) TLSState() (tls.ConnectionState, bool) {
	if s, ok := r.Conn.(Secured); ok {
		return s.TLSState()
	}
	return tls.ConnectionState{}, false
}

func (r *tapConn) LinkKeys(e Exporter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.export = e
}

func (r *tapConn) recorded() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.read.Bytes())
}

// sendThrough writes msg on a new stream of from and reads it at to.
func sendThrough(t *testing.T, from, to *Link, msg []byte) {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		s, err := to.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer s.Close()
		b, _ := io.ReadAll(s)
		got <- b
	}()
	s, err := from.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatalf("the stream carried %d bytes, want %d", len(b), len(msg))
	}
}

// TestQUICLinkRunsNoSecondTLS: over QUIC, the link's frames go onto the
// QUIC stream as they are (QUIC's handshake authenticated the peer, and
// QUIC encrypts them, once): what a link stream carries appears verbatim
// in what the QUIC stream delivers, right after the nomination. Over TCP
// the same bytes never appear on the connection: the link runs its TLS.
func TestQUICLinkRunsNoSecondTLS(t *testing.T) {
	msg := []byte("warren: a line that only a link stream carries, 0123456789")
	aID, bID, qa, qb, ra, rb := tappedQUICLinks(t)
	sendThrough(t, ra.l, rb.l, msg)
	sendThrough(t, rb.l, ra.l, msg)
	// The controlled end's first bytes: the nomination, then yamux's
	// first frame header (version 0).
	controlled := qb
	if !Controls(aID.Public, bID.Public) {
		controlled = qa
	}
	rec := controlled.recorded()
	if len(rec) < 2 || rec[0] != nominateByte || rec[1] != 0 {
		t.Fatalf("the QUIC stream began with %q, want the nomination and a yamux frame", rec[:min(len(rec), 16)])
	}
	if !bytes.Contains(rec, msg) {
		t.Fatal("the stream's bytes are not on the QUIC stream as they are: a second layer of encryption")
	}

	ta, tb := tcpPairs(t, 1)
	ca, cb := &tapConn{Conn: ta[0]}, &tapConn{Conn: tb[0]}
	ra, rb = establishBoth(t, aID, bID, bID.Public, aID.Public, []net.Conn{ca}, []net.Conn{cb})
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish over tcp: %v / %v", ra.err, rb.err)
	}
	sendThrough(t, ra.l, rb.l, msg)
	sendThrough(t, rb.l, ra.l, msg)
	if bytes.Contains(ca.recorded(), msg) || bytes.Contains(cb.recorded(), msg) {
		t.Fatal("over TCP the stream's bytes crossed in clear: the link ran no TLS")
	}
}

// TestQUICLinkExporter: a link over QUIC keys what needs keys (roaming)
// from QUIC's TLS session, the one that authenticated the peer: both ends
// and the candidate connection (Keyed) derive the same keys, which are
// QUIC's own exporter's.
func TestQUICLinkExporter(t *testing.T) {
	_, _, qa, qb, ra, rb := tappedQUICLinks(t)
	const label = "EXPERIMENTAL warren test"
	key := func(e Exporter) []byte {
		t.Helper()
		k, err := e(label, nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	x := key(ra.l.ExportKeyingMaterial)
	if !bytes.Equal(x, key(rb.l.ExportKeyingMaterial)) {
		t.Fatal("the two ends derived different keys")
	}
	state, _ := qa.TLSState()
	if !bytes.Equal(x, key(state.ExportKeyingMaterial)) {
		t.Fatal("the link's keys are not QUIC's TLS session's")
	}
	for _, q := range []*tapConn{qa, qb} {
		q.mu.Lock()
		e := q.export
		q.mu.Unlock()
		if e == nil || !bytes.Equal(key(e), x) {
			t.Fatal("the candidate connection did not get the link's exporter")
		}
	}
}
