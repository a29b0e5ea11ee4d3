package forward

// Fuzz targets for what forward reads from the network, beyond stream
// requests (FuzzReadRequest) and association addresses (FuzzParseUDPAddr):
// a SOCKS5 client's whole handshake (FuzzSocksHandshake), the exit's reply
// as Dial reads it (FuzzDialReply), datagram stream framing
// (FuzzDatagramStream), and an association's frames as the exit
// authorizes them (FuzzAssociateFrame).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
)

// fzExit is an Opener whose peer answers every request the same way:
// mode 0 is no link at all, 1 success (and then the end of the stream),
// 2 to 9 a refusal with code mode-1. It records the requests it gets.
type fzExit struct {
	mode byte
	mu   sync.Mutex
	reqs []Request
	errs []error
}

func (o *fzExit) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	if o.mode == 0 {
		return nil, errors.New("no link to peer")
	}
	local, remote := net.Pipe()
	stream := &fzExitStream{Conn: local, dialled: make(chan struct{})}
	go func() {
		defer remote.Close()
		remote.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := ReadRequest(remote)
		o.mu.Lock()
		o.reqs, o.errs = append(o.reqs, req), append(o.errs, err)
		o.mu.Unlock()
		if err != nil {
			return
		}
		code := CodeSucceeded
		if o.mode > 1 {
			code = o.mode - 1
		}
		if WriteReply(remote, Reply{Code: code, Msg: "fuzz"}) == nil && code == CodeSucceeded {
			// The stream ends once Dial is done with it: a net.Pipe whose
			// far end is closed fails SetDeadline, which a link's stream
			// does not.
			select {
			case <-stream.dialled:
			case <-time.After(10 * time.Second):
			}
		}
	}()
	return stream, nil
}

// fzExitStream is the local end of a stream to fzExit. Dial's clearing of
// its deadline, its last step, closes dialled.
type fzExitStream struct {
	net.Conn
	once    sync.Once
	dialled chan struct{}
}

func (s *fzExitStream) SetDeadline(t time.Time) error {
	err := s.Conn.SetDeadline(t)
	if t.IsZero() {
		s.once.Do(func() { close(s.dialled) })
	}
	return err
}

func (o *fzExit) requests() ([]Request, []error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.reqs...), append([]error(nil), o.errs...)
}

// fzSocksClient reads what a SOCKS5 client sent (in) as go-socks5 and the
// listener should: the command and, for CONNECT, the target it asks the
// exit for, and where in the server's answer the request's reply starts.
// ok is false if the handshake does not get as far as a request (bad
// version, no acceptable method, failed authentication, cut short, an
// unknown address type).
func fzSocksClient(in []byte, user, pass string) (cmd byte, target string, replyAt int, ok bool) {
	take := func(n int) ([]byte, bool) {
		if n > len(in) {
			return nil, false
		}
		b := in[:n]
		in = in[n:]
		return b, true
	}
	b, ok := take(2)
	if !ok || b[0] != 5 {
		return 0, "", 0, false
	}
	methods, ok := take(int(b[1]))
	want := byte(0)
	if user != "" {
		want = 2
	}
	if !ok || bytes.IndexByte(methods, want) < 0 {
		return 0, "", 0, false
	}
	replyAt = 2
	if user != "" {
		replyAt += 2
		h, ok := take(2)
		if !ok || h[0] != 1 {
			return 0, "", 0, false
		}
		u, ok := take(int(h[1]))
		if !ok {
			return 0, "", 0, false
		}
		pl, ok := take(1)
		if !ok {
			return 0, "", 0, false
		}
		p, ok := take(int(pl[0]))
		if !ok || string(u) != user || string(p) != pass {
			return 0, "", 0, false
		}
	}
	h, ok := take(4)
	if !ok || h[0] != 5 {
		return 0, "", 0, false
	}
	var host string
	switch h[3] {
	case 1, 4:
		n := 4
		if h[3] == 4 {
			n = 16
		}
		ip, ok := take(n)
		if !ok {
			return 0, "", 0, false
		}
		host = net.IP(ip).String()
	case 3:
		l, ok := take(1)
		if !ok {
			return 0, "", 0, false
		}
		name, ok := take(int(l[0]))
		if !ok {
			return 0, "", 0, false
		}
		host = string(name)
	default:
		return 0, "", 0, false
	}
	port, ok := take(2)
	if !ok {
		return 0, "", 0, false
	}
	return h[1], net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port)))), replyAt, true
}

// FuzzSocksHandshake has a SOCKS5 listener's connection handler serve a
// client (over loopback TCP) that sends arbitrary bytes, and then either
// half-closes or (flags&0x0f == 0x0f) goes quiet, keeping the connection
// open, against a 50ms handshake timeout. Bit 0x10 of flags configures a
// username and password ("u", "p"); flags>>5 picks the exit's answer (see
// fzExit).
//
// The handler must always end, a quiet client's by the handshake timeout;
// it must send nothing to a client that does not speak SOCKS5; only a
// complete, authenticated CONNECT or ASSOCIATE may reach the exit, with
// the target the client named. With a client that half-closed (so that
// the timeout plays no part), exactly those reach the exit, and the client
// sees the exit's verdict as its reply code.
func FuzzSocksHandshake(f *testing.F) {
	req := func(cmd, atyp byte, addr string, port uint16) []byte {
		b := []byte{5, cmd, 0, atyp}
		if atyp == 3 {
			b = append(b, byte(len(addr)))
		}
		return binary.BigEndian.AppendUint16(append(b, addr...), port)
	}
	noAuth := []byte{5, 1, 0}
	userPass := []byte{5, 2, 0, 2, 1, 1, 'u', 1, 'p'}
	f.Add(append(bytes.Clone(noAuth), req(1, 1, "\x0a\x00\x00\x01", 80)...), byte(1<<5))
	f.Add(append(bytes.Clone(noAuth), req(1, 3, "example.com", 443)...), byte(3<<5))
	f.Add(append(bytes.Clone(noAuth), req(1, 4, string(net.ParseIP("2001:db8::1")), 22)...), byte(0))
	f.Add(append(bytes.Clone(userPass), req(1, 3, "a.lan", 8080)...), byte(0x10|1<<5))
	f.Add(append([]byte{5, 2, 0, 2, 1, 1, 'u', 1, 'x'}, req(1, 3, "a.lan", 8080)...), byte(0x10|1<<5))
	f.Add(append(bytes.Clone(noAuth), req(3, 1, "\x00\x00\x00\x00", 0)...), byte(1<<5))
	f.Add(append(bytes.Clone(noAuth), req(3, 1, "\x00\x00\x00\x00", 0)...), byte(7<<5))
	f.Add(append(bytes.Clone(noAuth), req(2, 1, "\x01\x02\x03\x04", 5)...), byte(1<<5))
	f.Add(append(bytes.Clone(noAuth), req(1, 3, "", 0)...), byte(2<<5))
	f.Add(append(bytes.Clone(noAuth), 5, 1, 0), byte(0x0f))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), byte(0))
	f.Add([]byte{4, 1, 0, 80, 10, 0, 0, 1, 0}, byte(0x0f))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.PanicLevel)
	f.Fuzz(func(t *testing.T, in []byte, flags byte) {
		hold := flags&0x0f == 0x0f
		handshake := 10 * time.Second // a client that half-closes ends the handshake itself
		if hold {
			handshake = 50 * time.Millisecond
		}
		sc := config.Socks{Peer: "exit"}
		if flags&0x10 != 0 {
			sc.Username, sc.Password = "u", "p"
		}
		exit := &fzExit{mode: (flags >> 5) % 10}
		l := NewListeners(nil, nil, exit, Config{HandshakeTimeout: handshake, ConnectTimeout: 10 * time.Second}, log)

		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		served := make(chan struct{})
		go func() {
			defer close(served)
			l.handleSocks(ctx, sc, server, log, func() {})
		}()
		go func() {
			client.Write(in)
			if !hold {
				client.(*net.TCPConn).CloseWrite()
			}
		}()
		// The client reads until the server is done with it, and then
		// hangs up, as clients do.
		got := make(chan []byte, 1)
		go func() {
			client.SetReadDeadline(time.Now().Add(20 * time.Second))
			b, _ := io.ReadAll(client)
			client.Close()
			got <- b
		}()
		select {
		case <-served:
		case <-time.After(handshake + 10*time.Second):
			t.Fatalf("the handler did not end (hold %v) for %q", hold, in)
		}
		answer := <-got

		cmd, target, replyAt, complete := fzSocksClient(in, sc.Username, sc.Password)
		if len(in) > 0 && in[0] != 5 && len(answer) > 0 {
			t.Fatalf("answered %x to a client that does not speak SOCKS5 (%x)", answer, in)
		}
		reqs, errs := exit.requests()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("the exit got a malformed request: %v", err)
			}
			if err := reqs[i].Validate(); err != nil {
				t.Fatalf("the exit got an invalid request %+v: %v", reqs[i], err)
			}
		}
		dials := complete && (cmd == 1 || cmd == 3)
		switch {
		case exit.mode == 0 && len(reqs) > 0:
			t.Fatalf("requests %v with no link", reqs)
		case len(reqs) > 1 || len(reqs) == 1 && !dials:
			t.Fatalf("%q (command %d, complete %v) made the exit requests %+v", in, cmd, complete, reqs)
		case len(reqs) == 1:
			want := TargetRequest(target)
			if cmd == 3 {
				want = AssociateRequest()
			}
			if reqs[0] != want {
				t.Fatalf("%q asked the exit for %+v, want %+v", in, reqs[0], want)
			}
		}
		if !dials || hold {
			// A quiet client's request may meet the timeout first, however
			// complete: under load, 50ms is soon.
			return
		}
		if exit.mode != 0 && len(reqs) != 1 {
			t.Fatalf("%q (command %d) reached no exit", in, cmd)
		}
		code := CodeGeneralFailure // no link
		if exit.mode > 0 {
			code = exit.mode - 1
		}
		if len(answer) < replyAt+2 || answer[replyAt] != 5 || answer[replyAt+1] != code {
			t.Fatalf("exit answered code %d; the client got %x (reply at %d)", code, answer, replyAt)
		}
	})
}

// fzStream is a stream whose peer sent in and nothing more; writes are
// kept, deadlines ignored.
type fzStream struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (s *fzStream) Read(b []byte) (int, error)         { return s.r.Read(b) }
func (s *fzStream) Write(b []byte) (int, error)        { return s.out.Write(b) }
func (s *fzStream) Close() error                       { return nil }
func (s *fzStream) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (s *fzStream) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (s *fzStream) SetDeadline(t time.Time) error      { return nil }
func (s *fzStream) SetReadDeadline(t time.Time) error  { return nil }
func (s *fzStream) SetWriteDeadline(t time.Time) error { return nil }

type fzStreamOpener struct{ s *fzStream }

func (o fzStreamOpener) OpenStream(context.Context, string) (net.Conn, error) { return o.s, nil }

// FuzzDialReply gives Dial arbitrary bytes as the exit's answer on the
// stream. It must send the request, succeed exactly on a well-formed
// success reply, refuse with the reply's code and (valid UTF-8) message,
// and read not a byte past the reply: what follows is the stream's data.
func FuzzDialReply(f *testing.F) {
	for _, r := range []Reply{{Code: CodeSucceeded}, {Code: CodeNotAllowed, Msg: "no"}, {Code: 200, Msg: "ünïcode"}} {
		var b bytes.Buffer
		WriteReply(&b, r)
		f.Add(append(b.Bytes(), "data after it"...))
	}
	f.Add([]byte{0, 0, 2, 0xff, 0xfe})
	f.Add([]byte{1, 0xff, 0xff})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &fzStream{r: bytes.NewReader(in)}
		req := TargetRequest("example.com:443")
		conn, err := Dial(context.Background(), fzStreamOpener{s}, "exit", req)
		var sent bytes.Buffer
		WriteRequest(&sent, req)
		if !bytes.Equal(s.out.Bytes(), sent.Bytes()) {
			t.Fatalf("sent %x, want the request %x", s.out.Bytes(), sent.Bytes())
		}
		wellFormed := len(in) >= replyHeaderLen
		n := 0
		if wellFormed {
			n = int(binary.BigEndian.Uint16(in[1:3]))
			wellFormed = n <= MaxMessage && len(in) >= replyHeaderLen+n
		}
		switch {
		case !wellFormed:
			if err == nil {
				t.Fatalf("Dial took the malformed reply %x", in)
			}
			return
		case in[0] == CodeSucceeded:
			if err != nil || conn != net.Conn(s) {
				t.Fatalf("Dial refused success reply %x: %v", in, err)
			}
		default:
			var re *RefusedError
			if !errors.As(err, &re) || re.Code != in[0] || !utf8.ValidString(re.Msg) {
				t.Fatalf("refusal %x returned %v", in, err)
			}
			if msg := in[replyHeaderLen : replyHeaderLen+n]; utf8.Valid(msg) && re.Msg != string(msg) {
				t.Fatalf("message %q came out as %q", msg, re.Msg)
			}
		}
		if left := s.r.Len(); left != len(in)-replyHeaderLen-n {
			t.Fatalf("Dial read %d bytes of a %d-byte reply", len(in)-left, replyHeaderLen+n)
		}
	})
}

// FuzzDatagramStream reads a datagram stream (as either end of a UDP
// forward or association does) made of arbitrary bytes: every frame read
// must encode back to exactly the bytes it was read from, a stream may
// end cleanly only at a frame boundary, and a cut frame is an error.
func FuzzDatagramStream(f *testing.F) {
	var two bytes.Buffer
	w := datagramWriter{w: &two}
	w.write([]byte("first"))
	w.write(nil)
	w.write(appendUDPAddr(nil, netip.MustParseAddrPort("10.0.0.53:53")))
	f.Add(two.Bytes())
	f.Add(two.Bytes()[:two.Len()-1])
	f.Add([]byte{0xff, 0xff, 1})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		buf := datagramBuf()
		var enc bytes.Buffer
		out := datagramWriter{w: &enc}
		pos := 0
		for {
			b, err := readDatagram(r, buf)
			consumed := len(stream) - r.Len()
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
					if pos != len(stream) {
						t.Fatalf("clean end at %d of %d bytes", pos, len(stream))
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if pos == len(stream) || consumed != len(stream) {
						t.Fatalf("cut frame at %d, having read %d of %d bytes", pos, consumed, len(stream))
					}
				default:
					t.Fatalf("frame at %d: %v", pos, err)
				}
				return
			}
			enc.Reset()
			if err := out.write(b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc.Bytes(), stream[pos:consumed]) {
				t.Fatalf("frame %x at %d encodes back as %x", stream[pos:consumed], pos, enc.Bytes())
			}
			pos = consumed
		}
	})
}

// fzResolver resolves a few names; the rest do not exist.
type fzResolver struct{}

func (fzResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	switch host {
	case "dns.lan":
		return []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("192.168.1.1")}, nil
	case "evil.lan":
		return []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("::ffff:10.1.1.1")}, nil
	case "v6.lan":
		return []netip.Addr{netip.MustParseAddr("fd00::53"), netip.MustParseAddr("2001:db8::1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// FuzzAssociateFrame has the exit authorize the destination of an
// arbitrary association frame from a peer whose targets are
// 10.0.0.0/8:53 and [fd00::/8]:*, as Server.associate does for each new
// destination. Whatever the frame says (names that look like addresses,
// mapped addresses, odd bytes), a grant may only name addresses and ports
// those patterns allow, and for an address the frame itself named, only
// that one.
func FuzzAssociateFrame(f *testing.F) {
	for _, ap := range []string{"10.0.0.53:53", "10.0.0.53:54", "[::ffff:10.0.0.1]:53", "[fd00::1]:9", "8.8.8.8:53"} {
		f.Add(append(appendUDPAddr(nil, netip.MustParseAddrPort(ap)), "payload"...))
	}
	for _, name := range []string{"dns.lan", "evil.lan", "v6.lan", "10.0.0.1", "fd00::1", "8.8.8.8", "DNS.LAN.", "fd00::1%eth0"} {
		f.Add(append(append([]byte{atypName, byte(len(name))}, name...), 0, 53, 'q'))
	}
	pol, err := NewPolicy([]config.Peer{{Name: "alice", Targets: []string{"10.0.0.0/8:53", "[fd00::/8]:*"}}}, nil, fzResolver{})
	if err != nil {
		f.Fatal(err)
	}
	ten, fd := netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")
	f.Fuzz(func(t *testing.T, frame []byte) {
		dst, _, err := parseUDPAddr(frame)
		if err != nil {
			return
		}
		g, err := pol.Authorize(context.Background(), "alice", Request{Kind: KindUDPTarget, Payload: dst.String()})
		if err != nil {
			return
		}
		if len(g.Addrs) == 0 {
			t.Fatalf("%v granted with nothing to send to", dst)
		}
		for _, a := range g.Addrs {
			if a.Port() != dst.port {
				t.Fatalf("%v granted at %v", dst, a)
			}
			if !(ten.Contains(a.Addr()) && a.Port() == 53 || fd.Contains(a.Addr())) {
				t.Fatalf("%v granted %v, outside the peer's targets", dst, a)
			}
			if dst.ip.IsValid() && a.Addr() != dst.ip {
				t.Fatalf("address %v granted as %v", dst.ip, a)
			}
		}
	})
}
