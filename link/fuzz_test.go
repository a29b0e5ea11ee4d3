package link

// Fuzz targets for what a link reads from the peer before yamux does: the
// key claim that opens every candidate (FuzzKeyClaim), the claim and TLS
// handshake together (FuzzHandshake), and the frame boundary tracker that
// every byte of the peer's goes through (FuzzFrameReader).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/fuzztest"
)

// fzCountingReader returns at most chunk(i) bytes of r on its i-th Read,
// and counts what it returned.
type fzCountingReader struct {
	r     []byte
	n     int
	reads int
	chunk func(i int) int
}

func (c *fzCountingReader) Read(b []byte) (int, error) {
	if len(c.r) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), c.chunk(c.reads))], c.r)
	c.reads++
	c.r = c.r[n:]
	c.n += n
	return n, nil
}

// fzBoundaries reads wire as yamux frames, independently of frameReader:
// where each frame starts (and where the last complete one ends), and each
// complete header.
func fzBoundaries(wire []byte) (starts map[int]bool, next func(pos int) int, headers [][]byte) {
	starts = map[int]bool{0: true}
	var list []int
	pos := 0
	list = append(list, 0)
	for pos+12 <= len(wire) {
		h := wire[pos : pos+12]
		headers = append(headers, h)
		body := 0
		if h[1] == 0 { // data: length is the body's
			body = int(binary.BigEndian.Uint32(h[8:12]))
		}
		if body > len(wire) {
			pos = len(wire) + 1 // ends beyond the input
			break
		}
		pos += 12 + body
		starts[pos] = true
		list = append(list, pos)
	}
	next = func(p int) int {
		for _, b := range list {
			if b > p {
				return b
			}
		}
		return 1 << 62
	}
	return starts, next, headers
}

// FuzzFrameReader feeds frameReader an arbitrary byte stream from the
// peer, in chunks of arbitrary sizes, read through buffers of arbitrary
// sizes, with the link's own resets (drops) queued between arbitrary
// reads. The schedule's byte for read i gives the buffer size (low 6 bits,
// plus one) and whether a drop is queued before it (top bit); the next
// byte is how much the peer's side delivers at most.
//
// Whatever the peer sends, frameReader must pass it on unchanged and whole
// (but for the frames observe swallows, which become resets),
// show each of the peer's frame headers to observe exactly once, and put
// each queued reset in whole, in the order queued, at the first frame
// boundary of the peer's stream it reaches: never inside one of the
// peer's frames, and never as part of a frame.
func FuzzFrameReader(f *testing.F) {
	wire := bytes.Join(testFrames, nil)
	f.Add(wire, []byte{0x85, 3, 0x0c, 12, 0xff, 0x80, 1})
	f.Add(wire, []byte{0x80})
	f.Add(wire[:30], []byte{0x3f, 0x81, 0x81, 0x81})
	f.Add(frame(yamuxTypeData, 0, 1, 1<<31, "body"), []byte{0x80, 0x02, 0x80})
	f.Add([]byte{}, []byte{0x80, 0x80})
	f.Add(bytes.Repeat([]byte{0}, 40), []byte{0x8b})
	f.Fuzz(func(t *testing.T, wire, sched []byte) {
		if len(sched) == 0 {
			sched = []byte{0x3f}
		}
		step := func(i int) byte { return sched[i%len(sched)] }
		src := &fzCountingReader{r: wire, chunk: func(i int) int { return 1 + int(step(i+1)) }}
		var observed [][]byte
		fr := &frameReader{r: src, observe: func(h *frameHeader) bool {
			observed = append(observed, bytes.Clone(h[:]))
			return fzSwallowed(h)
		}}
		_, _, headers := fzBoundaries(wire)
		// What yamux must read: swallowed frames are resets of their
		// streams, without their bodies.
		passed := fzSwallow(wire)
		starts, next, _ := fzBoundaries(passed)

		// Read everything, noting for each drop how much had come out
		// when it was queued; then check the output as a whole.
		type queuedDrop struct {
			id    uint32
			outAt int
		}
		var drops []queuedDrop
		var out []byte
		nextID := uint32(0xd0000000)
		buf := make([]byte, 64)
		var end error
		for i := 0; end == nil; i++ {
			if i > 2*len(wire)+16*yamuxHeaderSize+8 {
				t.Fatalf("no end after %d reads", i)
			}
			s := step(i)
			if s&0x80 != 0 && nextID < 0xd0000000+16 {
				fr.drop(nextID)
				drops = append(drops, queuedDrop{nextID, len(out)})
				nextID++
			}
			n, err := fr.Read(buf[:1+int(s&0x3f)])
			if n < 0 || n > 1+int(s&0x3f) {
				t.Fatalf("Read returned %d for a %d-byte buffer", n, 1+int(s&0x3f))
			}
			out = append(out, buf[:n]...)
			end = err
		}
		if end != io.EOF && end != io.ErrUnexpectedEOF {
			t.Fatalf("Read: %v", end)
		}
		fzCheckOutput(t, passed, out, starts, next, func(k int) (uint32, int, bool) {
			if k >= len(drops) {
				return 0, 0, false
			}
			return drops[k].id, drops[k].outAt, true
		})
		if len(observed) != len(headers) {
			t.Fatalf("observed %d headers, the peer sent %d", len(observed), len(headers))
		}
		for i := range headers {
			if !bytes.Equal(observed[i], headers[i]) {
				t.Fatalf("header %d observed as %x, sent as %x", i, observed[i], headers[i])
			}
		}
	})
}

// fzSwallowed is the fuzz test's rule for frames to swallow: data frames
// with a body on streams whose ID is a multiple of 3.
func fzSwallowed(h *frameHeader) bool {
	return h.typ() == yamuxTypeData && h.length() > 0 && h.streamID()%3 == 0
}

// fzSwallow is wire with each frame fzSwallowed picks replaced by a
// reset of its stream, independently of frameReader.
func fzSwallow(wire []byte) []byte {
	var out []byte
	for len(wire) >= yamuxHeaderSize {
		h := frameHeader(wire[:yamuxHeaderSize])
		body := min(h.bodyLength(), int64(len(wire)-yamuxHeaderSize))
		if fzSwallowed(&h) {
			rst := rstFrame(h.streamID())
			out = append(out, rst[:]...)
		} else {
			out = append(out, wire[:yamuxHeaderSize+body]...)
		}
		wire = wire[yamuxHeaderSize+body:]
	}
	return append(out, wire...)
}

// fzCheckOutput checks frameReader's output: the peer's bytes, whole and
// in order (a header cut off by the end of the input excepted), with the
// resets of the drops queued (drop(k): its stream, and how many bytes had
// come out when it was queued) in whole, in order, each at the first
// frame boundary at or after the point it was queued.
func fzCheckOutput(t *testing.T, wire, out []byte, starts map[int]bool, next func(int) int, drop func(k int) (uint32, int, bool)) {
	t.Helper()
	pos, k := 0, 0     // the peer's bytes passed on; drops found
	peerAt := []int{0} // peerAt[o]: the peer's bytes among out[:o]
	for o := 0; o < len(out); {
		id, queuedAt, ok := drop(k)
		if want := rstFrame(id); ok && queuedAt <= o && starts[pos] && bytes.HasPrefix(out[o:], want[:]) {
			from := peerAt[queuedAt]
			bound := from
			if !starts[from] {
				bound = next(from)
			}
			if pos > bound {
				t.Fatalf("reset %d queued at the peer's byte %d went in at %d, past the boundary at %d", k, from, pos, bound)
			}
			for range yamuxHeaderSize {
				peerAt = append(peerAt, pos)
			}
			o += yamuxHeaderSize
			k++
			continue
		}
		if pos >= len(wire) || out[o] != wire[pos] {
			t.Fatalf("output byte %d is not the peer's byte %d, nor a queued reset at a boundary", o, pos)
		}
		pos++
		o++
		peerAt = append(peerAt, pos)
	}
	last := 0
	for b := range starts {
		if b <= len(wire) {
			last = max(last, b)
		}
	}
	if want := len(wire); pos != want && !(pos == last && want-last < yamuxHeaderSize) {
		t.Fatalf("passed on %d of the peer's %d bytes", pos, want)
	}
}

// newFzConn is a candidate connection whose peer sent in and then
// nothing more.
func newFzConn(in []byte) *fuzztest.Conn {
	return fuzztest.NewConn(in, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7000}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 7001})
}

// fzPinned puts the pinned key where an input's claim is all zeros: the
// keys are fresh in every process, and the fuzzer could not guess one.
func fzPinned(in []byte, pinned identity.PublicKey) []byte {
	if len(in) >= len(pinned) && bytes.Equal(in[:len(pinned)], make([]byte, len(pinned))) {
		in = bytes.Clone(in)
		copy(in, pinned[:])
	}
	return in
}

// exchangeClaims runs a claimConn's claims alone, as FuzzKeyClaim drives
// them: it sends our public key and checks the one the other end claims
// against the pinned key, waiting for both.
func exchangeClaims(conn net.Conn, self, pinned identity.PublicKey) error {
	c := newClaimConn(conn, self, pinned)
	rerr := c.readClaim()
	if werr := c.wroteClaim(); werr != nil {
		return werr
	}
	return rerr
}

// FuzzKeyClaim runs the claim exchange against arbitrary bytes from the
// other end (32 zero bytes in an input stand for the pinned key). The
// claim must be accepted exactly when it is the pinned key, must consume
// the claim and not a byte of the TLS after it, and must state our own key.
func FuzzKeyClaim(f *testing.F) {
	self, peer := newIdentity(f), newIdentity(f)
	f.Add(make([]byte, 32))
	f.Add(append(make([]byte, 32), "\x16\x03\x01 TLS follows"...))
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Add(make([]byte, 31))
	f.Fuzz(func(t *testing.T, in []byte) {
		in = fzPinned(in, peer.Public)
		c := newFzConn(in)
		err := exchangeClaims(c, self.Public, peer.Public)
		want := len(in) >= 32 && bytes.Equal(in[:32], peer.Public[:])
		if (err == nil) != want {
			t.Fatalf("claim %x: %v", in[:min(32, len(in))], err)
		}
		if !bytes.Equal(c.Written(), self.Public[:]) {
			t.Fatalf("claimed %x, want our key %x", c.Written(), self.Public[:])
		}
		if read := len(in) - c.Unread(); read != min(32, len(in)) {
			t.Fatalf("read %d bytes of a %d-byte input", read, len(in))
		}
		if err != nil && !errors.Is(err, identity.ErrKeyMismatch) && len(in) >= 32 {
			t.Fatalf("a wrong claim failed with %v, want ErrKeyMismatch", err)
		}
	})
}

// firstFlight returns what a TLS end with conf writes before it needs an
// answer: a client's ClientHello.
func firstFlight(conf *tls.Config) []byte {
	c := newFzConn(nil)
	tls.Client(c, conf).Handshake()
	return c.Written()
}

// serverFlight returns what a TLS server with conf answers a real client
// of peer's: a ServerHello and its encrypted flight, good for another
// handshake's parser to get deep into and fail.
func serverFlight(t testing.TB, server, client *tls.Config) []byte {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rec := &recordingConn{Conn: b}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tc := tls.Client(a, client)
		if tc.Handshake() == nil {
			io.Copy(io.Discard, tc) // the server's tickets, until it is done
		}
	}()
	tls.Server(rec, server).Handshake()
	b.Close()
	<-done
	return rec.out.Bytes()
}

type recordingConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.out.Write(b)
	return c.Conn.Write(b)
}

// FuzzHandshake runs a candidate's whole handshake, claim and TLS, as
// either end, against arbitrary bytes from the other end (32 zero bytes
// stand for the pinned key's claim). Without the pinned key's private half
// nothing can pass: every input must fail, promptly, with the candidate
// closed.
func FuzzHandshake(f *testing.F) {
	a, b := newIdentity(f), newIdentity(f)
	lo, hi := a, b
	if hi.Public.Less(lo.Public) {
		lo, hi = hi, lo
	}
	claim := make([]byte, 32)
	// The seeds' key exchange is X25519 alone: an ML-KEM key share makes
	// a 1.5 KiB ClientHello, and the fuzzer's minimizing of each new input
	// takes time quadratic in its length.
	small := func(c *tls.Config) *tls.Config {
		c.CurvePreferences = []tls.CurveID{tls.X25519}
		return c
	}
	// As the controlled end (the TLS server): the controlling peer's
	// ClientHello.
	f.Add(false, append(bytes.Clone(claim), firstFlight(small(lo.TLSConfig(hi.Public)))...))
	// As the controlling end (the TLS client): a real server's answer to
	// another ClientHello.
	f.Add(true, append(bytes.Clone(claim), serverFlight(f, small(hi.TLSConfig(lo.Public)), small(lo.TLSConfig(hi.Public)))...))
	f.Add(true, append(bytes.Clone(claim), "\x16\x03\x03\x00\x02\x02\x00"...))
	f.Add(false, bytes.Repeat([]byte{0x16}, 64))
	f.Fuzz(func(t *testing.T, controlling bool, in []byte) {
		// TLS draws random numbers (key shares, ML-KEM) that steer its
		// code paths: deterministic ones let the fuzzer tell an input's
		// coverage from chance.
		cryptotest.SetGlobalRandom(t, 1)
		self, peer := hi, lo
		if controlling {
			self, peer = lo, hi
		}
		in = fzPinned(in, peer.Public)
		conf := self.TLSConfig(peer.Public)
		conf.SessionTicketsDisabled = true
		c := newFzConn(in)
		done := make(chan attempt, 1)
		go func() {
			done <- handshake(context.Background(), Candidate{Conn: c, Path: "direct-tcp"}, conf, newEnds(self.Public, peer.Public), 10*time.Second)
		}()
		var r attempt
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("handshake hung on a finished input")
		}
		if r.err == nil {
			t.Fatalf("a handshake passed without the peer's key: %x", in)
		}
		select {
		case <-c.Closed():
		default:
			t.Fatal("a failed candidate was left open")
		}
	})
}
