package link

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
)

func testLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func newIdentity(t testing.TB) Identity {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id, err := NewIdentity(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tcpPairs returns n connected loopback TCP pairs.
func tcpPairs(t testing.TB, n int) (a, b []net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		a, b = append(a, c), append(b, s)
		t.Cleanup(func() { c.Close(); s.Close() })
	}
	return a, b
}

type result struct {
	l   *Link
	err error
}

// establishBoth runs Establish on both ends, feeding each its half of the
// candidate pairs.
func establishBoth(t testing.TB, aID, bID Identity, aPin, bPin identity.PublicKey, a, b []net.Conn) (ra, rb result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	run := func(id Identity, pin identity.PublicKey, conns []net.Conn, out chan<- result) {
		ch := make(chan Candidate)
		go func() {
			defer close(ch)
			for _, c := range conns {
				select {
				case ch <- Candidate{Conn: c, Path: "direct-tcp"}:
				case <-ctx.Done():
					c.Close()
				}
			}
		}()
		l, err := Establish(ctx, ch, id, pin, nil, testLog())
		out <- result{l, err}
	}
	ca, cb := make(chan result, 1), make(chan result, 1)
	go run(aID, aPin, a, ca)
	go run(bID, bPin, b, cb)
	ra, rb = <-ca, <-cb
	for _, r := range []result{ra, rb} {
		if r.l != nil {
			t.Cleanup(func() { r.l.Close() })
		}
	}
	return ra, rb
}

func TestEstablishNominatesOneOfMany(t *testing.T) {
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 4)
	ra, rb := establishBoth(t, aID, bID, bID.Public, aID.Public, a, b)
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish: %v / %v", ra.err, rb.err)
	}
	// Both ends must have picked the same pair: a stream must go through.
	s, err := ra.l.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	r, err := rb.l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if ra.l.Peer() != bID.Public || rb.l.Peer() != aID.Public {
		t.Fatal("links report the wrong peer")
	}
}

func TestEstablishRejectsWrongKey(t *testing.T) {
	aID, bID, mallory := newIdentity(t), newIdentity(t), newIdentity(t)
	for _, tc := range []struct {
		name       string
		aPin, bPin identity.PublicKey
	}{
		{"a pins someone else", mallory.Public, aID.Public},
		{"b pins someone else", bID.Public, mallory.Public},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPairs(t, 2)
			ra, rb := establishBoth(t, aID, bID, tc.aPin, tc.bPin, a, b)
			if !errors.Is(ra.err, ErrNoCandidate) || !errors.Is(rb.err, ErrNoCandidate) {
				t.Fatalf("want both ends to fail with ErrNoCandidate, got %v / %v", ra.err, rb.err)
			}
		})
	}
}

func TestHalfCloseAndBulk(t *testing.T) {
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 1)
	ra, rb := establishBoth(t, aID, bID, bID.Public, aID.Public, a, b)
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish: %v / %v", ra.err, rb.err)
	}
	payload := bytes.Repeat([]byte("warren"), 3<<20) // 18 MiB, beyond one window
	go func() {
		s, err := rb.l.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		got, _ := io.ReadAll(s) // ends at the client's CloseWrite
		s.Write([]byte{byte(len(got) % 251)})
	}()
	s, err := ra.l.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := s.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(s)
	if err != nil || len(reply) != 1 || reply[0] != byte(len(payload)%251) {
		t.Fatalf("reply %v, %v", reply, err)
	}
	if st := ra.l.Stats(); st.BytesOut < int64(len(payload)) || st.RTT <= 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxStreamsRefusesExcess(t *testing.T) {
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 1)
	cfg := &Config{MaxStreams: 2}
	ctx := context.Background()
	type res struct {
		l   *Link
		err error
	}
	ca, cb := make(chan res, 1), make(chan res, 1)
	for _, side := range []struct {
		id   Identity
		pin  identity.PublicKey
		conn net.Conn
		out  chan res
	}{{aID, bID.Public, a[0], ca}, {bID, aID.Public, b[0], cb}} {
		go func() {
			ch := make(chan Candidate, 1)
			ch <- Candidate{Conn: side.conn, Path: "direct-tcp"}
			close(ch)
			l, err := Establish(ctx, ch, side.id, side.pin, cfg, testLog())
			side.out <- res{l, err}
		}()
	}
	la, lb := <-ca, <-cb
	if la.err != nil || lb.err != nil {
		t.Fatal(la.err, lb.err)
	}
	defer la.l.Close()
	defer lb.l.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			s, err := lb.l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- s
		}
	}()
	var opened []net.Conn
	for range 3 {
		s, err := la.l.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("x"))
		opened = append(opened, s)
	}
	// The third stream is refused: its reader sees a reset, not data, and
	// the refusing end keeps nothing of it.
	opened[2].SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := opened[2].Read(make([]byte, 1)); n != 0 || !errors.Is(err, yamux.ErrConnectionReset) {
		t.Fatalf("excess stream read = %d, %v; want a reset", n, err)
	}
	if got := len(accepted); got != 2 {
		t.Fatalf("accepted %d streams, want 2", got)
	}
	waitStreams(t, lb.l, 2)
	// Closing one frees a slot.
	(<-accepted).Close()
	s, err := la.l.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("y"))
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("stream after a freed slot was not accepted")
	}
}

func TestLinkClosesWhenConnDies(t *testing.T) {
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 1)
	ra, rb := establishBoth(t, aID, bID, bID.Public, aID.Public, a, b)
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	a[0].Close()
	for _, l := range []*Link{ra.l, rb.l} {
		select {
		case <-l.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("link did not notice its connection died")
		}
	}
	if _, err := ra.l.Open(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open on a dead link = %v, want ErrClosed", err)
	}
}

// TestClaimProvesNothing: an impostor that claims the pinned key before
// TLS but holds another private key is still rejected by the handshake.
func TestClaimProvesNothing(t *testing.T) {
	aID, bID, mallory := newIdentity(t), newIdentity(t), newIdentity(t)
	liar := Identity{Public: bID.Public, cert: mallory.cert}
	a, b := tcpPairs(t, 1)
	ra, rb := establishBoth(t, aID, liar, bID.Public, aID.Public, a, b)
	if !errors.Is(ra.err, ErrNoCandidate) || !errors.Is(rb.err, ErrNoCandidate) {
		t.Fatalf("want both ends to fail, got %v / %v", ra.err, rb.err)
	}
	if !errors.Is(ra.err, identity.ErrKeyMismatch) && !strings.Contains(ra.err.Error(), "tls") {
		t.Fatalf("honest end failed for the wrong reason: %v", ra.err)
	}
}

// streamPair opens a stream on a fresh link pair and returns both ends.
func streamPair(t testing.TB) (opened, accepted net.Conn) {
	t.Helper()
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 1)
	ra, rb := establishBoth(t, aID, bID, bID.Public, aID.Public, a, b)
	return linkStream(t, ra, rb)
}

// linkStream opens a stream on the established links ra and rb and
// returns both ends.
func linkStream(t testing.TB, ra, rb result) (opened, accepted net.Conn) {
	t.Helper()
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish: %v / %v", ra.err, rb.err)
	}
	t.Cleanup(func() { ra.l.Close(); rb.l.Close() })
	acc := make(chan net.Conn, 1)
	go func() {
		s, err := rb.l.Accept()
		if err != nil {
			t.Error(err)
		}
		acc <- s
	}()
	s, err := ra.l.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Write([]byte("hello")); err != nil { // yamux announces a stream with data
		t.Fatal(err)
	}
	r := <-acc
	t.Cleanup(func() { r.Close() })
	if _, err := io.ReadFull(r, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// A sender whose receiver closes with data unread gets an error, as from a
// TCP RST, instead of blocking on a window that never reopens.
func TestCloseWithUnreadDataResetsTheSender(t *testing.T) {
	s, r := streamPair(t)
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := s.Write(buf); err != nil {
				werr <- err
				return
			}
		}
	}()
	// Let the sender fill the window, so that it blocks.
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	r.Close()
	select {
	case err := <-werr:
		if !strings.Contains(err.Error(), "reset") {
			t.Fatalf("sender got %v, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sender still blocked 5s after the receiver closed")
	}
}

// A reply written just before Close still reaches the peer: without unread
// data, Close sends a FIN, not a reset.
func TestCloseAfterReplyDeliversIt(t *testing.T) {
	s, r := streamPair(t)
	if _, err := r.Write([]byte("refused: not allowed")); err != nil {
		t.Fatal(err)
	}
	r.Close()
	time.Sleep(50 * time.Millisecond) // let any reset arrive before the read
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "refused: not allowed" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestGivenUpOpen: an Open whose caller gave up while yamux waited for the
// peer leaves the wait to the link. The stream the wait yields is reset,
// never leaked, and Close ends a wait still going and waits for it.
func TestGivenUpOpen(t *testing.T) {
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 1)
	ra, rb := establishBoth(t, aID, bID, bID.Public, aID.Public, a, b)
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	// b accepts nothing yet, so after AcceptBacklog
	// unacknowledged opens, yamux's OpenStream waits.
	backlog := ra.l.cfg.yamux().AcceptBacklog
	for i := range backlog {
		if _, err := ra.l.Open(context.Background()); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	giveUp := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if s, err := ra.l.Open(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Open with a full backlog = %v, %v; want the deadline", s, err)
		}
	}
	giveUp()
	// Accepting frees the backlog: the given-up open goes through, and
	// its stream reaches b only to be reset. (Closing each frees its slot
	// under MaxStreams.)
	for i := range backlog {
		s, err := rb.l.Accept()
		if err != nil {
			t.Fatalf("accept %d: %v", i, err)
		}
		s.Close()
	}
	late, err := rb.l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	late.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := late.Read(make([]byte, 1)); n != 0 || !isReset(err) {
		t.Fatalf("given-up stream read = %d, %v; want a reset", n, err)
	}

	// Fill the backlog again and give up once more: this wait is still
	// going when the link closes.
	for i := range backlog {
		if _, err := ra.l.Open(context.Background()); err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	giveUp()
	ra.l.Close()
	if _, err := ra.l.Open(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close = %v, want ErrClosed", err)
	}
	rb.l.Close()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "warren/link.(*Link)") && !strings.Contains(g, "TestGivenUpOpen") {
			t.Errorf("a link goroutine outlived Close:\n%s", g)
		}
	}
}
