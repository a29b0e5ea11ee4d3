package session

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// TestRelayOpensAsThePunchSays: a session whose punch carried a relay
// authorisation (a cluster's relay at a node that did not issue it) opens
// its relay with the authorisation's header, `WRR\x03` and the bytes as
// the server sent them; one without, with its token (`WRR\x02`).
func TestRelayOpensAsThePunchSays(t *testing.T) {
	auth := bytes.Repeat([]byte{7}, 136)
	for _, tc := range []struct {
		name string
		auth []byte
		want string
		rest int
	}{
		{"authorisation", auth, "WRR\x03", 136},
		{"token", nil, "WRR\x02", 16},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan []byte, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			hdr := make([]byte, 21+tc.rest)
			if _, err := io.ReadFull(c, hdr); err != nil {
				return
			}
			got <- hdr
			c.Write([]byte{1})
			io.Copy(io.Discard, c)
		}()
		s := &Session{ID: punch.NewSessionID(), Side: 1, RelayAuth: tc.auth, Relay: ln.Addr().String()}
		out := &Out{passive: true, sink: make(chan net.Conn, 1)}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := (&Relay{}).Run(ctx, s, out); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		(<-out.sink).Close()
		hdr := <-got
		if string(hdr[:4]) != tc.want || !bytes.Equal(hdr[4:20], s.ID[:]) || hdr[20] != 1 ||
			(tc.auth != nil && !bytes.Equal(hdr[21:], tc.auth)) {
			t.Errorf("%s: relay header %q, want %q, the session, side 1 and what the server sent", tc.name, hdr, tc.want)
		}
	}
}
