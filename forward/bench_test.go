package forward

import (
	"bytes"
	"strconv"
	"testing"
)

// The stream request is read once per stream; datagram frames once per
// datagram, so their cost bounds a UDP forward's packet rate.

func BenchmarkRequestRoundTrip(b *testing.B) {
	req := TargetRequest("www.example.com:443")
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := WriteRequest(&buf, req); err != nil {
			b.Fatal(err)
		}
		if _, err := ReadRequest(&buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDatagramFrame(b *testing.B) {
	for _, size := range []int{64, 1200} {
		b.Run(byteSize(size), func(b *testing.B) {
			payload := make([]byte, size)
			rbuf := datagramBuf()
			var buf bytes.Buffer
			out := datagramWriter{w: &buf}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := out.write(payload); err != nil {
					b.Fatal(err)
				}
				if _, err := readDatagram(&buf, rbuf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAssociationAddress(b *testing.B) {
	frame := append([]byte{atypName, 11}, "example.com\x00\x35payload"...)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseUDPAddr(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func byteSize(n int) string { return strconv.Itoa(n) + "B" }
