package rendezvous

import (
	"context"
	"net"
	"testing"
	"time"
)

// answerProbes answers plain UDP probes on a loopback socket, the first
// after delay and the others at once, until the test ends; it returns the
// socket's address.
func answerProbes(t *testing.T, delay time.Duration) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for first := true; ; {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			reply, _, ok := parseProbe(buf[:n], unmap(from.(*net.UDPAddr).AddrPort()))
			if !ok || reply == nil {
				continue
			}
			if first {
				time.Sleep(delay)
				first = false
			}
			pc.WriteTo(reply, from)
		}
	}()
	return pc.LocalAddr().String()
}

// TestRankSurvivesOneStall: a node whose first probe answer comes late
// (a stall of the daemon's machine or of the path, 150 ms here) keeps its
// place among nodes about as near when its later answers are prompt: the
// lab's three-node test saw a daemon on a loaded machine measure two of
// three equally near nodes at 129 ms and move to the third.
func TestRankSurvivesOneStall(t *testing.T) {
	stalled, prompt := answerProbes(t, 150*time.Millisecond), answerProbes(t, 0)
	c, err := NewClient(ClientConfig{Addresses: []string{stalled, prompt}, ServerKey: mustKey(t).Public(), Key: mustKey(t), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	order := c.rank(context.Background())
	if order[0] != stalled {
		t.Fatalf("ranked %q: the node listed first moved behind one about as near after one late answer", order)
	}
	if rtt := c.rtts[stalled]; rtt <= 0 || rtt >= 100*time.Millisecond {
		t.Fatalf("round trip to the stalled node %v, want a prompt later answer's", rtt)
	}
}
