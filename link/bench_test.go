package link

import (
	"crypto/tls"
	"testing"

	"github.com/warren-p2p/warren/internal/benchtest"
)

// BenchmarkStream is one stream of a link over loopback TCP, one
// direction: the whole stack a forward's bytes go through.
func BenchmarkStream(b *testing.B) {
	s, r := streamPair(b)
	benchtest.Stream(b, s, r)
}

// BenchmarkStreamRoundTrip is the latency of a 64-byte request and its
// echo over a link's stream; BenchmarkTCPRoundTrip is its baseline.
func BenchmarkStreamRoundTrip(b *testing.B) {
	s, r := streamPair(b)
	benchtest.RoundTrip(b, s, r, 64)
}

func BenchmarkTCPRoundTrip(b *testing.B) {
	a, c := tcpPairs(b, 1)
	benchtest.RoundTrip(b, a[0], c[0], 64)
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
