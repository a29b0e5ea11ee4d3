package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// TestHoldWaitsOnlyForTheNomination: a candidate with a Hold is
// authenticated at once (Hold is asked only after the handshake), and is
// nominated the moment Hold lets it go; a Hold that says no drops it.
func TestHoldWaitsOnlyForTheNomination(t *testing.T) {
	for _, let := range []bool{true, false} {
		t.Run(fmt.Sprintf("let go: %v", let), func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			if b.Public.Less(a.Public) {
				a, b = b, a // a controls
			}
			ca, cb := tcpPairs(t, 1)
			asked, release := make(chan struct{}), make(chan struct{})
			hold := func(ctx context.Context) bool {
				close(asked)
				select {
				case <-release:
					return let
				case <-ctx.Done():
					return false
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			run := func(id Identity, pin Identity, c Candidate, out chan<- result) {
				ch := make(chan Candidate, 1)
				ch <- c
				close(ch)
				l, err := Establish(ctx, ch, id, pin.Public, nil, testLog())
				if l != nil {
					t.Cleanup(func() { l.Close() })
				}
				out <- result{l, err}
			}
			ra, rb := make(chan result, 1), make(chan result, 1)
			go run(a, b, Candidate{Conn: ca[0], Path: "direct-tcp", Hold: hold}, ra)
			go run(b, a, Candidate{Conn: cb[0], Path: "direct-tcp"}, rb)
			select {
			case <-asked:
			case <-time.After(3 * time.Second):
				t.Fatal("Hold was not asked: the handshake waited for it")
			}
			select {
			case r := <-ra:
				t.Fatalf("Establish returned (%v) while its only candidate was held", r.err)
			case <-time.After(100 * time.Millisecond):
			}
			close(release)
			ga, gb := <-ra, <-rb
			if let && (ga.err != nil || gb.err != nil) {
				t.Fatalf("let go, the candidate did not link: %v / %v", ga.err, gb.err)
			}
			if !let && (!errors.Is(ga.err, ErrNoCandidate) || gb.err == nil) {
				t.Fatalf("held back for good, the candidate linked: %v / %v", ga.err, gb.err)
			}
		})
	}
}
