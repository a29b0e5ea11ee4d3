package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// bulkSize is the per-direction volume of the bulk tests.
func bulkSize(t testing.TB) int64 {
	switch {
	case raceEnabled:
		return 8 << 20
	case testing.Short():
		return 16 << 20
	}
	return 64 << 20
}

// TestBulkBothWays sends bulkSize bytes each way at once over one stream
// and checks them by sha256.
func TestBulkBothWays(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	ca, cb := dialPair(t, a, b, 1, nil)
	n := bulkSize(t)

	type result struct {
		dir    string
		intact bool
		err    error
		took   time.Duration
	}
	run := func(dir string, w, r *Conn, out chan<- result) {
		start := time.Now()
		intact, err := sendRandom(w, r, n, nil)
		out <- result{dir, intact, err, time.Since(start)}
	}
	out := make(chan result, 2)
	go run("a->b", ca, cb, out)
	go run("b->a", cb, ca, out)
	for range 2 {
		r := <-out
		if r.err != nil {
			t.Fatalf("%s: %v", r.dir, r.err)
		}
		if !r.intact {
			t.Fatalf("%s: sha256 mismatch", r.dir)
		}
		t.Logf("%s: %d MiB in %v: %.1f MB/s (both directions at once)", r.dir, n>>20, r.took.Round(time.Millisecond), float64(n)/r.took.Seconds()/1e6)
	}
	t.Logf("SRTT a=%v b=%v; demux a %+v", ca.SRTT(), cb.SRTT(), a.Stats())
}

// TestSingleStreamThroughput measures one direction alone.
func TestSingleStreamThroughput(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	ca, cb := dialPair(t, a, b, 7, nil)
	n := bulkSize(t)
	start := time.Now()
	intact, err := sendRandom(ca, cb, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !intact {
		t.Fatal("sha256 mismatch")
	}
	rcv, snd := a.SocketBuffers()
	t.Logf("one direction: %d MiB in %v: %.1f MB/s; socket buffers rcv=%d snd=%d", n>>20, took.Round(time.Millisecond), float64(n)/took.Seconds()/1e6, rcv, snd)
}

// TestTwoSessionsStaySeparate runs two streams with different conv on the
// same pair of sockets at once.
func TestTwoSessionsStaySeparate(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	a1, b1 := dialPair(t, a, b, 100, nil)
	a2, b2 := dialPair(t, a, b, 200, nil)
	n := bulkSize(t) / 4

	var wg sync.WaitGroup
	check := func(name string, w, r *Conn) {
		defer wg.Done()
		intact, err := sendRandom(w, r, n, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !intact {
			t.Errorf("%s: data mixed up (sha256 mismatch)", name)
		}
	}
	wg.Add(3)
	go check("conv 100 a->b", a1, b1)
	go check("conv 200 a->b", a2, b2)
	go check("conv 200 b->a", b2, a2)
	wg.Wait()
}

// TestDialBeforePeer: one end dials and writes well before the other
// exists; KCP's retransmissions get the data across once it does.
func TestDialBeforePeer(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	ca, err := a.Dial(addrOf(b), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if _, err := ca.Write([]byte("early bird")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cb, err := b.Dial(addrOf(a), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	buf := make([]byte, 10)
	cb.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(cb, buf); err != nil || string(buf) != "early bird" {
		t.Fatalf("got %q, %v", buf, err)
	}
}

// TestCloseDeliversThenEOF: data written before Close arrives, then the
// peer's Read returns io.EOF and its Write ErrPeerClosed, promptly.
func TestCloseDeliversThenEOF(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	ca, cb := dialPair(t, a, b, 9, nil)
	// Close right after the last Write: Close must deliver it.
	intact, err := sendRandom(ca, cb, 4<<20, ca.Close)
	if err != nil {
		t.Fatal(err)
	}
	if !intact {
		t.Fatal("sha256 mismatch")
	}
	within(t, 2*time.Second, "Read after peer Close", func() {
		if n, err := cb.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("Read after peer close = %d, %v; want io.EOF", n, err)
		}
	})
	if _, err := cb.Write([]byte("x")); !errors.Is(err, ErrPeerClosed) {
		t.Errorf("Write after peer close: %v; want ErrPeerClosed", err)
	}
	if _, err := ca.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after own Close: %v; want net.ErrClosed", err)
	}
	if _, err := ca.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after own Close: %v; want net.ErrClosed", err)
	}
	if err := ca.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v; want net.ErrClosed", err)
	}
	within(t, time.Second, "release of the peer-closed end", func() { cb.Close(); <-cb.runDone })
}

// TestCloseBothAtOnce: simultaneous Closes with data in flight both ways
// finish cleanly and promptly.
func TestCloseBothAtOnce(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	ca, cb := dialPair(t, a, b, 10, nil)
	ca.Write(bytes.Repeat([]byte("a"), 100000))
	cb.Write(bytes.Repeat([]byte("b"), 100000))
	go io.Copy(io.Discard, ca)
	go io.Copy(io.Discard, cb)
	go ca.Close()
	go cb.Close()
	d := within(t, 3*time.Second, "release after two Closes", func() { <-ca.runDone; <-cb.runDone })
	t.Logf("both released in %v", d)
}

// TestPeerVanishes: the peer disappears without a word (its socket is
// closed under it); Read fails with ErrPeerTimeout after IdleTimeout.
func TestPeerVanishes(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	cfg := fastConfig()
	ca, cb := dialPair(t, a, b, 11, cfg)
	if _, err := cb.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ca, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	b.conn.Close() // no FIN, no RST (b.Close would send one): to a, b just went silent
	d := within(t, cfg.IdleTimeout+time.Second, "Read on a vanished peer", func() {
		if _, err := ca.Read(make([]byte, 1)); !errors.Is(err, ErrPeerTimeout) {
			t.Errorf("Read: %v; want ErrPeerTimeout", err)
		}
	})
	t.Logf("dead peer detected after %v (IdleTimeout %v)", d, cfg.IdleTimeout)
	if _, err := ca.Write([]byte("x")); !errors.Is(err, ErrPeerTimeout) {
		t.Errorf("Write: %v; want ErrPeerTimeout", err)
	}
	_ = cb // b's end also times out: its socket is gone
}

// TestDemuxCloseTellsPeer: closing a demux under an open stream resets it
// at the peer at once; closing it after the stream's Done is a clean close.
func TestDemuxCloseTellsPeer(t *testing.T) {
	t.Run("open stream", func(t *testing.T) {
		a, b := newDemux(t), newDemux(t)
		ca, cb := dialPair(t, a, b, 31, nil) // default IdleTimeout: 30s
		ca.Write([]byte("hi"))
		io.ReadFull(cb, make([]byte, 2))
		a.Close()
		within(t, time.Second, "Read after the peer's demux closed", func() {
			if _, err := cb.Read(make([]byte, 1)); !errors.Is(err, ErrPeerReset) {
				t.Errorf("Read: %v; want ErrPeerReset", err)
			}
		})
	})
	t.Run("closed stream", func(t *testing.T) {
		a, b := newDemux(t), newDemux(t)
		ca, cb := dialPair(t, a, b, 32, nil)
		ca.Write([]byte("bye"))
		ca.Close()
		within(t, time.Second, "Done after Close", func() { <-ca.Done() })
		a.Close()
		within(t, time.Second, "reading to EOF", func() {
			got, err := io.ReadAll(cb)
			if err != nil || string(got) != "bye" {
				t.Errorf("ReadAll = %q, %v; want \"bye\", nil", got, err)
			}
		})
	})
}

// TestCloseWithoutPeer: Close with undelivered data and no peer returns at
// once, and the stream gives up lingering after CloseTimeout.
func TestCloseWithoutPeer(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	cfg := fastConfig()
	ca, err := a.Dial(addrOf(b), 12, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Small enough to fit Conn's buffer: until the peer speaks, KCP
	// assumes a 32-packet window and accepts little more.
	if _, err := ca.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	within(t, 100*time.Millisecond, "Close", func() { ca.Close() })
	d := within(t, cfg.CloseTimeout+time.Second, "release without peer", func() { <-ca.runDone })
	if d < cfg.CloseTimeout/2 {
		t.Errorf("released after %v: it cannot have delivered anything", d)
	}
}

// TestResetReachesPeer: a peer that cannot deliver before CloseTimeout
// resets the stream, and the other end learns of it at once.
func TestResetReachesPeer(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	cfg := fastConfig()
	cfg.RecvWindow = 16 // the reader does not read: a small window jams quickly
	ca, cb := dialPair(t, a, b, 13, cfg)
	// cb never reads, so ca's data cannot all be acknowledged: KCP acks
	// in-order data only up to cb's receive window plus Conn's buffer.
	ca.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := ca.Write(make([]byte, 4<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a jammed peer: %v; want a timeout", err)
	}
	ca.Close()
	within(t, cfg.CloseTimeout+time.Second, "Write on a reset stream", func() {
		for {
			if _, err := cb.Write([]byte("x")); err != nil {
				if !errors.Is(err, ErrPeerReset) {
					t.Errorf("Write: %v; want ErrPeerReset", err)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestPeerNeverDials: a stream whose peer never shows up fails after
// IdleTimeout rather than waiting forever.
func TestPeerNeverDials(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	cfg := fastConfig()
	ca, err := a.Dial(addrOf(b), 14, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	within(t, cfg.IdleTimeout+time.Second, "Read without peer", func() {
		if _, err := ca.Read(make([]byte, 1)); !errors.Is(err, ErrPeerTimeout) {
			t.Errorf("Read: %v; want ErrPeerTimeout", err)
		}
	})
}

// TestKeepaliveKeepsIdleStream: an idle stream outlives IdleTimeout many
// times over thanks to the keepalives.
func TestKeepaliveKeepsIdleStream(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	cfg := fastConfig()
	ca, cb := dialPair(t, a, b, 15, cfg)
	time.Sleep(3 * cfg.IdleTimeout)
	if _, err := ca.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cb, buf); err != nil {
		t.Fatal(err)
	}
}

// TestDeadlines covers read and write deadlines, including one set while
// a Read is blocked.
func TestDeadlines(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	ca, cb := dialPair(t, a, b, 16, nil)

	ca.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := ca.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past deadline: %v; want a timeout net.Error", err)
	}

	ca.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		ca.SetReadDeadline(time.Now()) // cancels the blocked Read below
	}()
	within(t, 2*time.Second, "cancelled Read", func() {
		if _, err := ca.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("cancelled Read: %v", err)
		}
	})

	// cb never reads: ca's Write eventually blocks, and its deadline fires.
	ca.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	var total int
	within(t, 10*time.Second, "Write against a full window", func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := ca.Write(buf)
			total += n
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("Write: %v", err)
				}
				return
			}
		}
	})
	t.Logf("%d KiB buffered before a non-reading peer stopped the writer", total>>10)

	ca.SetDeadline(time.Time{})
	cb.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.CopyN(io.Discard, cb, int64(total)); err != nil {
		t.Fatalf("reading what was written before the deadline: %v", err)
	}
}

// TestNetConn runs x/net's net.Conn conformance suite (deadlines, close
// semantics, concurrent use); run with -race for full effect.
func TestNetConn(t *testing.T) {
	conv := uint32(1000)
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
		a, b := newDemux(t), newDemux(t)
		conv++
		ca, err := a.Dial(addrOf(b), conv, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		cb, err := b.Dial(addrOf(a), conv, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		stop := func() { ca.Close(); cb.Close(); a.Close(); b.Close() }
		return ca, cb, stop, nil
	})
}

// TestNoGoroutineLeak: after streams and demuxes are closed, every
// goroutine they started (theirs and kcp-go's) is gone.
func TestNoGoroutineLeak(t *testing.T) {
	settle := func() int { runtime.GC(); return runtime.NumGoroutine() }
	before := settle()

	for range 3 {
		a, _ := NewDemux(listenLoopback(t))
		b, _ := NewDemux(listenLoopback(t))
		ca, _ := a.Dial(addrOf(b), 1, fastConfig())
		cb, _ := b.Dial(addrOf(a), 1, fastConfig())
		orphan, _ := a.Dial(addrOf(b), 2, fastConfig()) // left to Demux.Close
		ca.Write(make([]byte, 1<<20))
		io.CopyN(io.Discard, cb, 1<<20)
		ca.Close()
		cb.Close()
		_ = orphan
		a.Close()
		b.Close()
	}

	deadline := time.Now().Add(3 * time.Second)
	for {
		after := settle()
		if after <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDualStackSocket: a demux on a dual-stack socket sees IPv4 peers as
// IPv4-mapped IPv6 addresses; streams dialed with the plain IPv4 address
// must still match them.
func TestDualStackSocket(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
	if err != nil {
		t.Skipf("no dual-stack socket: %v", err)
	}
	a, err := NewDemux(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := newDemux(t)
	aV4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addrOf(a).Port())
	ca, err := a.Dial(addrOf(b), 21, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := b.Dial(aV4, 21, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	go ca.Write([]byte("ping"))
	buf := make([]byte, 4)
	cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cb, buf); err != nil {
		t.Fatal(err)
	}
	go cb.Write([]byte("pong"))
	ca.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(ca, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("got %q, %v", buf, err)
	}
}
