package link

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestClaimsCostNoRoundTrip: each end writes its key claim at once, and
// the controlling end its ClientHello right behind it, before the peer has
// said anything: the claims cross with the first TLS flight instead of
// taking a round trip of their own (on a 90 ms path that was 90 ms of
// every TCP and KCP link's setup). The non-controlling end waits for the
// ClientHello, as TLS requires, but not to state its claim, which an end
// of an older version waits for before writing anything more.
func TestClaimsCostNoRoundTrip(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	lo, hi := a, b
	if hi.Public.Less(lo.Public) {
		lo, hi = hi, lo
	}
	for _, tc := range []struct {
		name        string
		self, peer  Identity
		controlling bool
		want        int // bytes written before the peer said anything
	}{
		{"controlling: claim and ClientHello", lo, hi, true, 33},
		{"controlled: claim", hi, lo, false, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, silent := net.Pipe()
			var mu sync.Mutex
			var got bytes.Buffer
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := silent.Read(buf)
					mu.Lock()
					got.Write(buf[:n])
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan attempt, 1)
			go func() {
				done <- handshake(ctx, Candidate{Conn: ours, Path: "direct-tcp"}, tc.self.TLSConfig(tc.peer.Public),
					newEnds(tc.self.Public, tc.peer.Public), 10*time.Second)
			}()
			defer func() {
				cancel()
				if r := <-done; r.err == nil {
					t.Error("a handshake with a silent peer passed")
				}
				silent.Close()
			}()
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				n, head := got.Len(), bytes.Clone(got.Bytes())
				mu.Unlock()
				if n >= tc.want {
					if !bytes.Equal(head[:32], tc.self.Public[:]) {
						t.Fatalf("first 32 bytes %x, want our claim %x", head[:32], tc.self.Public[:])
					}
					if tc.controlling && head[32] != 0x16 {
						t.Fatalf("after the claim %#x, want a TLS handshake record (0x16)", head[32])
					}
					if !tc.controlling && n > 32 {
						t.Fatalf("the controlled end wrote %d bytes before any ClientHello", n)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("wrote %d bytes (%x) to a silent peer, want %d", n, head, tc.want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
