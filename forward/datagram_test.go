package forward

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

func TestDatagramFrames(t *testing.T) {
	var buf bytes.Buffer
	sizes := []int{0, 1, 1400, maxDatagram}
	out := datagramWriter{w: &buf}
	for _, n := range sizes {
		if err := out.write(bytes.Repeat([]byte{byte(n)}, n)); err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
	}
	if err := out.write(make([]byte, maxDatagram+1)); err == nil {
		t.Error("a datagram over 64 KiB was framed")
	}
	rb := datagramBuf()
	for _, n := range sizes {
		b, err := readDatagram(&buf, rb)
		if err != nil || len(b) != n || (n > 0 && b[n-1] != byte(n)) {
			t.Fatalf("read back %d bytes: got %d, %v", n, len(b), err)
		}
	}
	if _, err := readDatagram(&buf, rb); err != io.EOF {
		t.Errorf("read at the end: %v, want io.EOF", err)
	}
	if _, err := readDatagram(bytes.NewReader([]byte{0, 5, 'a'}), rb); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read of a cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := readDatagram(bytes.NewReader([]byte{0, 9, 'a'}), rb[:4]); !errors.Is(err, ErrProtocol) {
		t.Errorf("read of a frame over the buffer: %v, want ErrProtocol", err)
	}
}

func TestParseUDPAddr(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string // host:port, or "" for an error
		rest string
	}{
		{"ipv4", []byte{1, 10, 0, 0, 53, 0, 53, 'q'}, "10.0.0.53:53", "q"},
		{"ipv6", append(append([]byte{4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187), "[2001:db8::1]:443", ""},
		{"mapped ipv6", append(append([]byte{4}, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice()...), 0, 53), "10.0.0.1:53", ""},
		{"name", append([]byte{3, 8}, "dns.home\x00\x35data"...), "dns.home:53", "data"},
		{"empty", nil, "", ""},
		{"unknown type", []byte{2, 1, 2, 3, 4, 0, 53}, "", ""},
		{"ipv4 cut short", []byte{1, 10, 0, 0}, "", ""},
		{"empty name", []byte{3, 0, 0, 53}, "", ""},
		{"name cut short", []byte{3, 9, 'a', 'b'}, "", ""},
		{"port 0", []byte{1, 10, 0, 0, 1, 0, 0}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rest, err := parseUDPAddr(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("parse = %v, %v; want ErrProtocol", a, err)
				}
				return
			}
			if err != nil || a.String() != tt.want || string(rest) != tt.rest {
				t.Fatalf("parse = %v, %q, %v; want %s, %q", a, rest, err, tt.want, tt.rest)
			}
		})
	}
}

func TestAppendUDPAddrRoundTrip(t *testing.T) {
	for _, s := range []string{"192.0.2.1:5353", "[2001:db8::53]:53", "[::ffff:192.0.2.7]:9"} {
		ap := netip.MustParseAddrPort(s)
		a, rest, err := parseUDPAddr(appendUDPAddr(nil, ap))
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if err != nil || len(rest) != 0 || a.ip != want.Addr() || a.port != want.Port() {
			t.Errorf("%s: parsed back %v, %q, %v", s, a, rest, err)
		}
	}
}

// FuzzParseUDPAddr feeds the association frame decoder (peer input at the
// exit, client input at a SOCKS5 listener) garbage: it must never panic,
// and what it accepts must encode back to the same bytes.
func FuzzParseUDPAddr(f *testing.F) {
	f.Add([]byte{1, 10, 0, 0, 53, 0, 53, 'q'})
	f.Add([]byte{3, 8, 'd', 'n', 's', '.', 'h', 'o', 'm', 'e', 0, 53})
	f.Add(append([]byte{4}, make([]byte, 18)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, rest, err := parseUDPAddr(b)
		if err != nil {
			return
		}
		if len(rest) > len(b) || a.port == 0 || (a.ip.IsValid() == (a.name != "")) {
			t.Fatalf("parse(%x) = %+v, %d bytes left", b, a, len(rest))
		}
		if enc := appendUDPAddr(nil, netip.AddrPortFrom(a.ip, a.port)); b[0] == atypIPv4 && !bytes.HasPrefix(b, enc) {
			t.Fatalf("parse(%x) = %v, which encodes as %x", b, a, enc)
		}
	})
}
