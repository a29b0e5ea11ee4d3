package forward_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/internal/benchtest"
)

// TestRefusalsByReason checks that each refusal is counted once, under
// its reason, on both sides, and that the reasons add up to Refused.
func TestRefusalsByReason(t *testing.T) {
	closed := benchtest.ClosedAddr(t)
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{"127.0.0.1:*"}}}, nil, nil, forward.Config{})
	l := startListeners(t, e, nil, []config.Forward{
		{Listen: "127.0.0.1:0", Peer: "exit", Target: "10.0.0.1:22"},   // not allowed
		{Listen: "127.0.0.1:0", Peer: "exit", Target: closed},          // connection refused
		{Listen: "127.0.0.1:0", Peer: "exit", Target: "no port"},       // address not supported
		{Listen: "127.0.0.1:0", Peer: "nolink", Target: "10.0.0.1:22"}, // no link
	}, forward.Config{ConnectTimeout: 5 * time.Second})
	for _, addr := range l.ForwardAddrs() {
		dialRefused(t, addr)
	}
	// A malformed request at the exit: a protocol error, with no reply.
	s, err := e.Opener.OpenStream(context.Background(), "exit")
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte{99, 1, 0, 1, 'x'})
	s.SetDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(s)
	s.Close()

	waitFor(t, "every connection counted", func() bool {
		return l.Stats().Active == 0 && l.Stats().Refused == 4 && e.Server.Stats().Refused == 4
	})
	check := func(side string, st forward.Stats, want map[string]uint64) {
		t.Helper()
		var sum uint64
		for i, n := range st.Refusals {
			sum += n
			name := forward.RefusalName(i)
			if n != want[name] {
				t.Errorf("%s: %d refusals for %q (index %d), want %d", side, n, name, i, want[name])
			}
		}
		if sum != st.Refused {
			t.Errorf("%s: reasons add up to %d, Refused is %d", side, sum, st.Refused)
		}
	}
	check("local", l.Stats(), map[string]uint64{"not_allowed": 1, "connection_refused": 1, "address_not_supported": 1, "no_link": 1})
	check("exit", e.Server.Stats(), map[string]uint64{"not_allowed": 1, "connection_refused": 1, "address_not_supported": 1, "protocol_error": 1})
}

func TestRefusalNames(t *testing.T) {
	seen := map[string]bool{}
	for i := 1; i < forward.NumRefusals; i++ {
		name := forward.RefusalName(i)
		if name == "" || seen[name] {
			t.Errorf("RefusalName(%d) = %q: empty or repeated", i, name)
		}
		seen[name] = true
	}
	for _, i := range []int{0, -1, forward.NumRefusals} {
		if name := forward.RefusalName(i); name != "" {
			t.Errorf("RefusalName(%d) = %q, want empty", i, name)
		}
	}
	if forward.RefusalName(int(forward.CodeTTLExpired)) != "ttl_expired" || forward.RefusalName(forward.RefusalNoLink) != "no_link" {
		t.Error("RefusalName does not follow the reply codes")
	}
}
