package rendezvous

import (
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// TestStrangerGetsNothing performs issue 15's finding 4: a fresh key asks
// ten times for a registered peer that does not list it, and also tries
// to consent on the peer's behalf. It must learn nothing (no punch, so no
// address, NAT type or LAN candidate), its answers must be the very answer
// an unregistered key gets, no sooner than it, and the peer must log
// nothing at info. The peer's friend still gets its session.
func TestStrangerGetsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const wait = 400 * time.Millisecond
	ts := startServer(t, ctx, ServerConfig{ConsentWait: wait})

	friendKey, _ := identity.Generate()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	victimPunches := make(chan Punch, 16)
	victim := startClient(t, ctx, ts, ClientConfig{Log: log, LAN: func() []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:4000")} },
		Consent: func(k identity.PublicKey) bool { return k == friendKey.Public() },
		OnPunch: func(p Punch) { victimPunches <- p }})
	waitRegistered(t, victim)
	victim.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent})
	victimKey := victim.cfg.Key.Public()
	// The client logs its registration just after it says it is
	// registered: count only what comes after that line.
	for end := time.Now().Add(5 * time.Second); hook.LastEntry() == nil && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	hook.Reset()

	stranger := newRawPeer(t, ts, "127.0.0.2")
	stranger.refuse.Store(true)
	offline, _ := identity.Generate()
	asked := time.Now()
	for range 10 {
		stranger.send(&Message{Type: TypeConnect, Peer: victimKey.String()})
	}
	stranger.send(&Message{Type: TypeConnect, Peer: offline.Public().String()})
	// Asks are numbered in sequence: consenting to all of them, as the
	// stranger, must not count as the victim's consent.
	for seq := range uint64(64) {
		stranger.send(&Message{Type: TypeConsent, Seq: seq})
	}
	answers := stranger.answers(t, 11, 5*time.Second)
	for _, m := range answers {
		if m.Type != TypeError || m.Code != CodePeerOffline {
			t.Fatalf("the stranger got %+v", *m.Message)
		}
		want := Message{Type: TypeError, Code: CodePeerOffline, Peer: m.Peer, Text: "peer is not registered"}
		if !reflect.DeepEqual(*m.Message, want) {
			t.Errorf("answer %+v differs from the offline answer %+v", *m.Message, want)
		}
		if m.at.Sub(asked) < wait {
			t.Errorf("answered %v after the ask, before ConsentWait (%v): a refusal would be told from offline", m.at.Sub(asked), wait)
		}
	}
	select {
	case p := <-victimPunches:
		t.Fatalf("the victim was told to punch to %v", p.Peer)
	default:
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.InfoLevel {
			t.Errorf("the victim logged at %v: %q %v", e.Level, e.Message, e.Data)
		}
	}
	if n := len(hook.AllEntries()); n > 1 {
		t.Errorf("the victim logged %d debug lines for the stranger's asks, want at most 1", n)
	}

	// The friend it lists still gets its session, both ways.
	friendPunches := make(chan Punch, 4)
	friend := startClient(t, ctx, ts, ClientConfig{Key: friendKey, OnPunch: func(p Punch) { friendPunches <- p }})
	waitRegistered(t, friend)
	friend.SetNAT(punch.NAT{Behind: true})
	if err := friend.Connect(victimKey); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan Punch{friendPunches, victimPunches} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("the listed friend got no session")
		}
	}
}

// timedMessage is a message and when it arrived.
type timedMessage struct {
	*Message
	at time.Time
}

// answers returns the next n messages p got, other than punch
// instructions and pongs, within d.
func (p *rawPeer) answers(t *testing.T, n int, d time.Duration) []timedMessage {
	t.Helper()
	var got []timedMessage
	timeout := time.After(d)
	for len(got) < n {
		select {
		case m := <-p.others:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("%d answers in %v, want %d: %+v", len(got), d, n, got)
		}
	}
	return got
}
