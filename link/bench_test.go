package link

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/warren-p2p/warren/internal/benchtest"
)

// linkPair returns two established links over one loopback TCP pair.
func linkPair(b *testing.B) (*Link, *Link) {
	aID, bID := newIdentity(b), newIdentity(b)
	a, c := tcpPairs(b, 1)
	ra, rb := establishBoth(b, aID, bID, bID.Public, aID.Public, a, c)
	if ra.err != nil || rb.err != nil {
		b.Fatal(ra.err, rb.err)
	}
	b.Cleanup(func() { ra.l.Close(); rb.l.Close() })
	return ra.l, rb.l
}

// BenchmarkStream is one stream of a link over loopback TCP, one
// direction: the whole stack a forward's bytes go through.
func BenchmarkStream(b *testing.B) {
	la, lb := linkPair(b)
	accepted := make(chan net.Conn, 1)
	go func() {
		s, err := lb.Accept()
		if err != nil {
			b.Error(err)
		}
		accepted <- s
	}()
	s, err := la.Open(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	s.Write([]byte{0}) // yamux announces a stream with its first frame
	r := <-accepted
	io.ReadFull(r, make([]byte, 1))
	benchtest.Stream(b, s, r)
}

// BenchmarkTLS is the baseline for BenchmarkStream: the same loopback TCP
// with only the link's TLS 1.3 on it.
func BenchmarkTLS(b *testing.B) {
	aID, bID := newIdentity(b), newIdentity(b)
	a, c := tcpPairs(b, 1)
	client := tls.Client(a[0], aID.TLSConfig(bID.Public))
	server := tls.Server(c[0], bID.TLSConfig(aID.Public))
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	benchtest.Stream(b, client, server)
}

// BenchmarkTCP is the raw loopback path below both.
func BenchmarkTCP(b *testing.B) {
	a, c := tcpPairs(b, 1)
	benchtest.Stream(b, a[0], c[0])
}
