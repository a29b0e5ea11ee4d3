package transport

import (
	"errors"
	"testing"
	"time"
)

// TestRebindMovesTheStream: after Rebind, the stream's packets go to the
// new remote, and the old remote's packets no longer reach it.
func TestRebindMovesTheStream(t *testing.T) {
	a, b, c := newDemux(t), newDemux(t), newDemux(t)
	const conv = 0x1234
	ca, cb := dialPair(t, a, b, conv, fastConfig())
	if _, err := ca.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cb.Read(buf); err != nil {
		t.Fatal(err)
	}

	if err := b.Rebind(conv, addrOf(a), addrOf(c)); err != nil {
		t.Fatal(err)
	}
	if got := cb.RemoteAddr().String(); got != addrOf(c).String() {
		t.Fatalf("RemoteAddr after Rebind = %s, want %s", got, addrOf(c))
	}
	beforeB, beforeC := b.Stats().NoSession, c.Stats().NoSession
	ca.Write([]byte("to the old binding"))
	cb.Write([]byte("to the new remote"))
	waitFor(t, "no-session drops at b (the old binding) and c (the new remote)", func() bool {
		return b.Stats().NoSession != beforeB && c.Stats().NoSession != beforeC
	})
}

func TestRebindErrors(t *testing.T) {
	a, b, c := newDemux(t), newDemux(t), newDemux(t)
	dialPair(t, a, b, 1, fastConfig())
	if _, err := b.Dial(addrOf(c), 1, fastConfig()); err != nil {
		t.Fatal(err)
	}
	if err := b.Rebind(9, addrOf(a), addrOf(c)); err == nil {
		t.Fatal("rebound a stream that does not exist")
	}
	if err := b.Rebind(1, addrOf(a), addrOf(c)); !errors.Is(err, ErrSessionExists) {
		t.Fatalf("rebind onto an existing stream = %v, want ErrSessionExists", err)
	}
}
