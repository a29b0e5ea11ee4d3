package link

import (
	"context"
	"net"
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

// quicDial runs the QUIC handshake of a UDP link between a and b as the
// daemon does: the controlling end (the lower key) dials, and each end
// presents its identity and pins the key it was given. It returns each
// end's stream, or its error.
func quicDial(t testing.TB, aID, bID Identity, aPin, bPin identity.PublicKey) (ca, cb net.Conn, erra, errb error) {
	t.Helper()
	sa, sb := quicSocket(t), quicSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	dial := func(s *transport.QUICSocket, id Identity, pin identity.PublicKey, to *transport.QUICSocket, conn *net.Conn, err *error) {
		st, e := s.Dial(ctx, to.LocalAddr().(*net.UDPAddr).AddrPort(), Controls(id.Public, pin), id.TLSConfig(pin), nil)
		if e != nil {
			*err = e
			return
		}
		t.Cleanup(func() { st.Close() })
		*conn = st
	}
	wg.Go(func() { dial(sa, aID, aPin, sb, &ca, &erra) })
	wg.Go(func() { dial(sb, bID, bPin, sa, &cb, &errb) })
	wg.Wait()
	return ca, cb, erra, errb
}

// quicLinks establishes a link between two fresh identities over a QUIC
// connection on loopback.
func quicLinks(t testing.TB) (ra, rb result) {
	t.Helper()
	aID, bID := newIdentity(t), newIdentity(t)
	ca, cb, erra, errb := quicDial(t, aID, bID, bID.Public, aID.Public)
	if erra != nil || errb != nil {
		t.Fatalf("quic: %v / %v", erra, errb)
	}
	return establishBoth(t, aID, bID, bID.Public, aID.Public, []net.Conn{ca}, []net.Conn{cb})
}
