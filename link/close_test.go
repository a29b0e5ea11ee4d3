package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// linksWith returns two links with cfg over one loopback TCP pair.
func linksWith(t *testing.T, cfg *Config) (a, b *Link) {
	t.Helper()
	aID, bID := newIdentity(t), newIdentity(t)
	ac, bc := tcpPairs(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	establish := func(self, peer Identity, c Candidate, out chan<- result) {
		cands := make(chan Candidate, 1)
		cands <- c
		close(cands)
		l, err := Establish(ctx, cands, self, peer.Public, cfg, testLog())
		out <- result{l, err}
	}
	ca, cb := make(chan result, 1), make(chan result, 1)
	go establish(aID, bID, Candidate{Conn: ac[0], Path: "direct-tcp"}, ca)
	go establish(bID, aID, Candidate{Conn: bc[0], Path: "direct-tcp"}, cb)
	ra, rb := <-ca, <-cb
	for _, r := range []result{ra, rb} {
		if r.l != nil {
			t.Cleanup(func() { r.l.Close() })
		}
	}
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish: %v / %v", ra.err, rb.err)
	}
	return ra.l, rb.l
}

// openStreams opens a stream from a to b, sends a byte through it (yamux
// announces a stream with its first frame) and returns both ends.
func openStreams(t *testing.T, a, b *Link) (opened, accepted *Stream) {
	t.Helper()
	acc := make(chan *Stream, 1)
	go func() {
		s, err := b.Accept()
		if err != nil {
			t.Error(err)
			acc <- nil
			return
		}
		acc <- s.(*Stream)
	}()
	c, err := a.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := c.(*Stream)
	t.Cleanup(func() { s.Close() })
	if _, err := s.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r == nil {
		t.FailNow()
	}
	t.Cleanup(func() { r.Close() })
	if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// waitStreams waits up to 3s (a fifth of the default keepalive interval)
// for l's yamux session to hold n streams.
func waitStreams(t *testing.T, l *Link, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for l.sess.NumStreams() != n {
		if time.Now().After(deadline) {
			t.Fatalf("yamux session holds %d streams, want %d", l.sess.NumStreams(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isReset(err error) bool { return errors.Is(err, yamux.ErrConnectionReset) }

// A half-closed stream is not timed out: it stays readable for as long as
// the peer sends, many StreamCloseTimeouts if need be.
func TestHalfCloseOutlivesStreamCloseTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	la, lb := linksWith(t, &Config{StreamCloseTimeout: timeout})
	s, r := openStreams(t, la, lb)
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer read %d, %v after CloseWrite; want EOF", n, err)
	}
	type sent struct {
		n   int
		err error
	}
	done := make(chan sent, 1)
	go func() {
		chunk := bytes.Repeat([]byte("w"), 1000)
		total := 0
		for end := time.Now().Add(6 * timeout); time.Now().Before(end); {
			n, err := r.Write(chunk)
			total += n
			if err != nil {
				done <- sent{total, err}
				return
			}
			time.Sleep(timeout / 10)
		}
		done <- sent{total, r.Close()}
	}()
	got, err := io.ReadAll(s)
	w := <-done
	if w.err != nil {
		t.Fatalf("peer's writes failed after %d bytes: %v", w.n, w.err)
	}
	if err != nil || len(got) != w.n {
		t.Fatalf("read %d of %d bytes, then %v", len(got), w.n, err)
	}
	s.Close()
	waitStreams(t, la, 0)
	waitStreams(t, lb, 0)
}

// A stream closed on a peer that never finishes its side lingers for
// StreamCloseTimeout; then the peer is reset and both ends forget it.
func TestCloseTimesOutQuietPeer(t *testing.T) {
	const timeout = 500 * time.Millisecond
	la, lb := linksWith(t, &Config{StreamCloseTimeout: timeout})
	s, r := openStreams(t, la, lb)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer read %d, %v after Close; want EOF", n, err)
	}
	time.Sleep(timeout / 5)
	if la.sess.NumStreams() != 1 {
		t.Fatalf("closed stream forgotten after %v, before StreamCloseTimeout", time.Since(start))
	}
	waitStreams(t, la, 0)
	if d := time.Since(start); d < timeout {
		t.Fatalf("closed stream forgotten after %v, before StreamCloseTimeout", d)
	}
	waitStreams(t, lb, 0)
	if _, err := r.Write([]byte("late")); !isReset(err) {
		t.Fatalf("peer's write after the timeout: %v; want a reset", err)
	}
	if n := la.closing.n.Load(); n != 0 {
		t.Fatalf("%d streams still watched", n)
	}
}

// A peer that finishes its side before StreamCloseTimeout ends the close
// gracefully: yamux forgets the stream, and so does the link's watch.
func TestClosePeerFinishesInTime(t *testing.T) {
	la, lb := linksWith(t, &Config{StreamCloseTimeout: time.Minute})
	s, r := openStreams(t, la, lb)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := la.closing.n.Load(); n != 1 {
		t.Fatalf("%d streams watched after Close, want 1", n)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 0 {
		t.Fatalf("peer read %q, %v; want EOF", got, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	waitStreams(t, la, 0)
	waitStreams(t, lb, 0)
	if n := la.closing.n.Load(); n != 0 {
		t.Fatalf("%d streams still watched after the peer's FIN", n)
	}
}

// Close with unread data resets the peer and forgets the stream at once,
// even on a link that then goes quiet (the keepalive is 15s away).
func TestCloseWithUnreadDataForgetsStream(t *testing.T) {
	la, lb := linksWith(t, nil)
	s, r := openStreams(t, la, lb)
	if _, err := r.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	// The ping's answer follows the data, so the data has arrived.
	if _, err := la.Ping(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitStreams(t, la, 0)
	waitStreams(t, lb, 0)
	if _, err := r.Write([]byte("x")); !isReset(err) {
		t.Fatalf("peer's write after Close: %v; want a reset", err)
	}
}

// Data that arrives after Close is answered with a reset, as TCP answers
// data for a closed socket, so the sender does not block on a window that
// never reopens.
func TestDataAfterCloseResetsSender(t *testing.T) {
	la, lb := linksWith(t, nil)
	s, r := openStreams(t, la, lb)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := r.Write(buf); err != nil {
				werr <- err
				return
			}
		}
	}()
	select {
	case err := <-werr:
		if !isReset(err) {
			t.Fatalf("sender got %v, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sender still blocked 5s after the receiver closed")
	}
	waitStreams(t, la, 0)
	waitStreams(t, lb, 0)
}

// TestLinkEndIsNoEOF: when the link ends under a stream, Read reports the
// stream lost rather than io.EOF, on both ends, so that a copy does not
// pass on a cut-off transfer as a finished one; a stream the peer finished
// before the link ended still ends in io.EOF after its data.
func TestLinkEndIsNoEOF(t *testing.T) {
	for _, tc := range []struct {
		name   string
		finish bool // the peer finishes the stream before the link ends
	}{
		{"cut off", false},
		{"finished first", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := linksWith(t, DefaultConfig())
			opened, accepted := openStreams(t, a, b)
			if _, err := opened.Write([]byte("last words")); err != nil {
				t.Fatal(err)
			}
			if tc.finish {
				if err := opened.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			// Let the data (and the FIN) arrive before the link dies.
			buf := make([]byte, len("last words"))
			if _, err := io.ReadFull(accepted, buf); err != nil {
				t.Fatal(err)
			}
			if tc.finish {
				waitFinished(t, accepted)
			}
			a.raw.Conn.Close() // the path dies under both links
			<-b.Done()
			<-a.Done()

			_, err := accepted.Read(buf)
			if tc.finish && err != io.EOF {
				t.Errorf("accepted end of a finished stream: %v, want io.EOF", err)
			}
			if !tc.finish && !errors.Is(err, ErrStreamLost) {
				t.Errorf("accepted end of a cut-off stream: %v, want ErrStreamLost", err)
			}
			if _, err := opened.Read(buf); !errors.Is(err, ErrStreamLost) {
				t.Errorf("opening end, which the peer never finished: %v, want ErrStreamLost", err)
			}
		})
	}
}

// waitFinished waits up to 3s for s to have seen its peer's FIN.
func waitFinished(t *testing.T, s *Stream) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !s.finished.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's FIN did not arrive")
		}
	}
}

// TestAbortResetsThePeer: Abort ends a stream with a reset, whichever end
// calls it and whatever the stream is doing: the peer reads what was sent
// before, then a reset instead of io.EOF, and its writes fail; a
// read blocked here returns at once; both links forget the stream and the
// accepting end frees its slot.
func TestAbortResetsThePeer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		acceptor bool // the accepting end aborts
	}{
		{"opener aborts", false},
		{"acceptor aborts", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la, lb := linksWith(t, &Config{MaxStreams: 1})
			s, r := openStreams(t, la, lb)
			aborting, peer := s, r
			if tc.acceptor {
				aborting, peer = r, s
			}
			if _, err := aborting.Write([]byte("part of a transfer")); err != nil {
				t.Fatal(err)
			}
			blocked := make(chan error, 1)
			go func() {
				_, err := aborting.Read(make([]byte, 1))
				blocked <- err
			}()
			time.Sleep(20 * time.Millisecond) // let the Read block
			if err := aborting.Abort(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-blocked:
				if err == nil {
					t.Fatal("a read blocked across Abort returned data")
				}
			case <-time.After(3 * time.Second):
				t.Fatal("a read blocked across Abort did not return")
			}
			peer.SetReadDeadline(time.Now().Add(3 * time.Second))
			got, err := io.ReadAll(peer)
			if string(got) != "part of a transfer" || !isReset(err) {
				t.Fatalf("peer read %q, %v; want the data, then a reset", got, err)
			}
			if _, err := peer.Write([]byte("x")); !isReset(err) {
				t.Fatalf("peer's write after the abort: %v, want a reset", err)
			}
			// The peer's application closes the stream it read the reset
			// on; then neither end holds it. MaxStreams is 1: the
			// accepting end's slot is free again.
			peer.Close()
			waitStreams(t, la, 0)
			waitStreams(t, lb, 0)
			openStreams(t, la, lb)
		})
	}
}

// TestEndNotifiesReader: Close and Abort tell the stream's NotifyReadable
// function, whose reader the link no longer tells anything: a copy with no
// goroutine in Read (a forward's idle pump) would otherwise wait for
// ever on a stream cut off under it.
func TestEndNotifiesReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(*Stream) error
	}{
		{"close", (*Stream).Close},
		{"abort", (*Stream).Abort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la, lb := linksWith(t, nil)
			s, _ := openStreams(t, la, lb)
			notified := make(chan struct{}, 1)
			s.NotifyReadable(func() {
				select {
				case notified <- struct{}{}:
				default:
				}
			})
			if err := tc.end(s); err != nil {
				t.Fatal(err)
			}
			select {
			case <-notified:
			case <-time.After(3 * time.Second):
				t.Fatal("the reader was not told the stream ended")
			}
			if _, err := s.Read(make([]byte, 1)); err == nil {
				t.Error("a read after the end returned data")
			}
		})
	}
}
