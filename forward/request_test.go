package forward

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, req := range []Request{
		ServiceRequest("rdp"),
		ServiceRequest(strings.Repeat("s", MaxPayload)),
		TargetRequest("example.com:443"),
		TargetRequest("10.0.0.1:22"),
		TargetRequest("[2001:db8::1]:8080"),
		{Kind: KindUDPService, Payload: "dns"},
		{Kind: KindUDPTarget, Payload: "10.0.0.53:53"},
		AssociateRequest(),
	} {
		var buf bytes.Buffer
		if err := WriteRequest(&buf, req); err != nil {
			t.Fatalf("WriteRequest(%v): %v", req, err)
		}
		buf.WriteString("trailing raw bytes")
		got, err := ReadRequest(&buf)
		if err != nil {
			t.Fatalf("ReadRequest(%v): %v", req, err)
		}
		if got != req {
			t.Errorf("round trip: got %+v, want %+v", got, req)
		}
		if rest := buf.String(); rest != "trailing raw bytes" {
			t.Errorf("ReadRequest consumed raw bytes: left %q", rest)
		}
	}
}

func TestWriteRequestRejects(t *testing.T) {
	for _, req := range []Request{
		{Kind: 0, Payload: "x"},
		{Kind: 6, Payload: "x"},
		ServiceRequest(""),
		TargetRequest(strings.Repeat("a", MaxPayload+1)),
	} {
		var buf bytes.Buffer
		if err := WriteRequest(&buf, req); !errors.Is(err, ErrProtocol) {
			t.Errorf("WriteRequest(%+v) = %v, want ErrProtocol", req, err)
		}
		if buf.Len() != 0 {
			t.Errorf("WriteRequest(%+v) wrote %d bytes", req, buf.Len())
		}
	}
}

func TestReadRequestGarbage(t *testing.T) {
	long := append([]byte{1, 2, 0x04, 0x01}, bytes.Repeat([]byte{'a'}, 1025)...)
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty", nil, io.EOF},
		{"short header", []byte{1, 2, 0}, io.ErrUnexpectedEOF},
		{"version 0", []byte{0, 2, 0, 1, 'a'}, ErrProtocol},
		{"version 2", []byte{2, 2, 0, 1, 'a'}, ErrProtocol},
		{"socks5 greeting", []byte{5, 1, 0}, io.ErrUnexpectedEOF},
		{"socks5 greeting+", []byte{5, 1, 0, 0}, ErrProtocol},
		{"http", []byte("GET / HTTP/1.1\r\n"), ErrProtocol},
		{"kind 0", []byte{1, 0, 0, 1, 'a'}, ErrProtocol},
		{"kind 6", []byte{1, 6, 0, 1, 'a'}, ErrProtocol},
		{"kind 255", []byte{1, 255, 0, 1, 'a'}, ErrProtocol},
		{"zero length", []byte{1, 1, 0, 0}, ErrProtocol},
		{"length 1025", long, ErrProtocol},
		{"length 65535", []byte{1, 2, 0xff, 0xff}, ErrProtocol},
		{"truncated payload", []byte{1, 2, 0, 10, 'a', 'b'}, io.ErrUnexpectedEOF},
		{"missing payload", []byte{1, 2, 0, 10}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadRequest(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadRequest = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestReplyRoundTrip(t *testing.T) {
	long := strings.Repeat("é", MaxMessage) // 2 bytes per rune
	tests := []struct {
		in, want Reply
	}{
		{Reply{Code: CodeSucceeded}, Reply{Code: CodeSucceeded}},
		{Reply{Code: CodeNotAllowed, Msg: "target not allowed"}, Reply{Code: CodeNotAllowed, Msg: "target not allowed"}},
		{Reply{Code: CodeHostUnreachable, Msg: "bad \xff utf8"}, Reply{Code: CodeHostUnreachable, Msg: "bad \uFFFD utf8"}},
		{Reply{Code: CodeGeneralFailure, Msg: long}, Reply{Code: CodeGeneralFailure, Msg: long[:MaxMessage]}},
		{Reply{Code: CodeGeneralFailure, Msg: "x" + long}, Reply{Code: CodeGeneralFailure, Msg: "x" + long[:MaxMessage-2]}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := WriteReply(&buf, tt.in); err != nil {
			t.Fatal(err)
		}
		got, err := ReadReply(&buf)
		if err != nil {
			t.Fatalf("ReadReply: %v", err)
		}
		if got != tt.want {
			t.Errorf("reply round trip of %q...: got code %d msg len %d, want code %d len %d",
				truncateUTF8(tt.in.Msg, 20), got.Code, len(got.Msg), tt.want.Code, len(tt.want.Msg))
		}
		if !utf8.ValidString(got.Msg) {
			t.Errorf("message not UTF-8")
		}
	}
}

func TestReadReplyGarbage(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty", nil, io.EOF},
		{"short", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"too long", []byte{1, 0x04, 0x01}, ErrProtocol},
		{"truncated", []byte{1, 0, 5, 'a'}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		if _, err := ReadReply(bytes.NewReader(tt.in)); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: ReadReply = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	tests := []struct {
		in   string
		host string
		addr string // "" if a name
		port uint16
		ok   bool
	}{
		{"example.com:443", "example.com", "", 443, true},
		{"Example.COM.:80", "Example.COM.", "", 80, true},
		{"under_score.test:1", "under_score.test", "", 1, true},
		{"10.0.0.1:22", "10.0.0.1", "10.0.0.1", 22, true},
		{"[2001:db8::1]:65535", "2001:db8::1", "2001:db8::1", 65535, true},
		{"[::ffff:10.0.0.1]:22", "::ffff:10.0.0.1", "10.0.0.1", 22, true},
		{"example.com", "", "", 0, false},
		{"example.com:0", "", "", 0, false},
		{"example.com:65536", "", "", 0, false},
		{"example.com:http", "", "", 0, false},
		{":80", "", "", 0, false},
		{"2001:db8::1:80", "", "", 0, false},
		{"[fe80::1%eth0]:22", "", "", 0, false},
		{"a b:80", "", "", 0, false},
		{"a..b:80", "", "", 0, false},
		{"a/b:80", "", "", 0, false},
		{".:80", "", "", 0, false},
	}
	for _, tt := range tests {
		host, addr, port, err := splitTarget(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("splitTarget(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if !tt.ok {
			continue
		}
		var want netip.Addr
		if tt.addr != "" {
			want = netip.MustParseAddr(tt.addr)
		}
		if host != tt.host || addr != want || port != tt.port {
			t.Errorf("splitTarget(%q) = %q, %v, %d; want %q, %v, %d", tt.in, host, addr, port, tt.host, want, tt.port)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte{1, 1, 0, 3, 'r', 'd', 'p'})
	f.Add([]byte("\x01\x02\x00\x0fexample.com:443"))
	f.Add([]byte("\x01\x02\x00\x12[2001:db8::1]:8080"))
	f.Add([]byte{1, 2, 0xff, 0xff})
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		req, err := ReadRequest(r)
		if err != nil {
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("ReadRequest returned an invalid request %+v: %v", req, err)
		}
		consumed := len(in) - r.Len()
		if consumed != requestHeaderLen+len(req.Payload) {
			t.Fatalf("consumed %d bytes for a %d-byte payload", consumed, len(req.Payload))
		}
		var buf bytes.Buffer
		if err := WriteRequest(&buf, req); err != nil {
			t.Fatalf("WriteRequest: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), in[:consumed]) {
			t.Fatalf("re-encoding differs: %x vs %x", buf.Bytes(), in[:consumed])
		}
		if req.Kind == KindTarget {
			splitTarget(req.Payload) // must not panic
		}
	})
}
