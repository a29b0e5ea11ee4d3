package punch

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"
)

// fakeExporter stands in for a TLS session's exporter: both ends of one
// link derive the same material from it, another link's differs.
func fakeExporter(secret []byte) Exporter {
	return func(label string, context []byte, length int) ([]byte, error) {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(label))
		m.Write(context)
		return m.Sum(nil)[:length], nil
	}
}

func TestRoam(t *testing.T) {
	link := fakeExporter([]byte("one link"))
	a, err := NewRoam(link, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRoam(link, false)
	if err != nil {
		t.Fatal(err)
	}
	first, second := a.Announce(), a.Announce()
	if !b.Accept(first) || !b.Accept(second) {
		t.Fatal("the peer's fresh announcements were refused")
	}
	if b.Accept(first) || b.Accept(second) {
		t.Fatal("a replayed announcement was accepted")
	}
	if a.Accept(a.Announce()) {
		t.Fatal("an end accepted its own announcement")
	}
	// The other direction counts on its own.
	if !a.Accept(b.Announce()) {
		t.Fatal("the other direction's first announcement was refused")
	}
	other, err := NewRoam(fakeExporter([]byte("another link")), true)
	if err != nil {
		t.Fatal(err)
	}
	if b.Accept(other.Announce()) {
		t.Fatal("another link's announcement was accepted")
	}
	tampered := a.Announce()
	tampered[len(udpMagic)+1] ^= 0x80 // the counter
	if b.Accept(tampered) {
		t.Fatal("a tampered counter was accepted")
	}
	// A punch packet of the session is not an announcement, whatever its
	// type byte says.
	id := NewSessionID()
	if b.Accept(sealPacket(id.udpKey(true), udpRoam, make([]byte, udpNonceLen))) {
		t.Fatal("a packet keyed with the punch session moved the path")
	}
}

func TestNewRoamExporterFails(t *testing.T) {
	boom := errors.New("no exporter")
	_, err := NewRoam(func(string, []byte, int) ([]byte, error) { return nil, boom }, true)
	if !errors.Is(err, ErrRoamKeys) || !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

// TestRoamCountsNotClocks: announcements are numbered by a counter of
// their own, so whatever the wall clock does (it may step back by hours),
// each next announcement is fresh to the peer and the path keeps
// following it. (The counters started at the wall clock's nanoseconds
// once, and a clock stepped back stalled roaming until it caught up.)
func TestRoamCountsNotClocks(t *testing.T) {
	link := fakeExporter([]byte("one link"))
	a, _ := NewRoam(link, true)
	b, _ := NewRoam(link, false)
	for i := range 1000 {
		if !b.Accept(a.Announce()) {
			t.Fatalf("announcement %d was refused", i+1)
		}
	}
	if a.sent != 1000 || b.seen != 1000 {
		t.Fatalf("counters at %d and %d, want 1000: they count announcements", a.sent, b.seen)
	}
}
