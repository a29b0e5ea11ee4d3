package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestMetricsEndpoint runs a rendezvous server and two daemons on
// loopback (as warren demo does), makes one forwarded connection and one
// that home's ACL refuses, and checks what GET /metrics says on both
// sides: the punch result and its time, link_up, link and forward bytes,
// connections and refusals. Every scrape goes through the strict parser.
func TestMetricsEndpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// home's service: answers each connection with a fixed reply.
	const reply = "hello from home\n"
	web := serveReply(t, reply)
	laptop, home := loopbackPair(t, ctx, map[string]string{
		"home": fmt.Sprintf(`[[peers]]
name = "laptop"
public_key = "PEER_KEY"
targets = ["127.0.0.1:*"]

[[expose]]
name = "web"
target = %q
peers = ["laptop"]
`, web),
		"laptop": `[[peers]]
name = "home"
public_key = "PEER_KEY"

[[forward]]
listen = "127.0.0.1:0"
peer = "home"
service = "web"

[[forward]]
listen = "127.0.0.1:0"
peer = "home"
target = "192.0.2.1:80"   # not granted: home refuses it
`,
	})

	// Before any link: the families are there, the link is down.
	m := scrape(t, laptop)
	for _, path := range []string{"direct-tcp", "direct-udp", "relay"} {
		if v, ok := m.value("warren_link_up", "peer", "home", "path", path); !ok || v != 0 {
			t.Errorf("before the link: link_up{path=%s} = %v (present %v), want 0", path, v, ok)
		}
	}

	var path string
	waitUntil(t, ctx, "both links up", func() bool {
		lp, hp := peerState(laptop, "home"), peerState(home, "laptop")
		path = lp.Path
		return lp.State == StateConnected && hp.State == StateConnected
	})

	// One forwarded connection, one refused.
	fwds := laptop.Listeners().ForwardAddrs()
	request := "GET / HTTP/1.0\r\n\r\n"
	got := roundTrip(t, fwds[0].String(), request)
	if got != reply {
		t.Fatalf("through the forward: %q, want %q", got, reply)
	}
	if got := roundTrip(t, fwds[1].String(), "x"); got != "" {
		t.Fatalf("through the refused forward: %q, want the connection closed", got)
	}
	// Bytes are counted when a connection ends.
	waitUntil(t, ctx, "both connections counted on both sides", func() bool {
		l, h := laptop.Listeners().Stats(), home.exit.Stats()
		return l.Conns == 2 && l.Active == 0 && h.Conns == 2 && h.Active == 0 && l.BytesIn > 0 && h.BytesOut > 0
	})

	lm, hm := scrape(t, laptop), scrape(t, home)
	for name, m := range map[string]metricsScrape{"laptop": lm, "home": hm} {
		peer := map[string]string{"laptop": "home", "home": "laptop"}[name]
		// The punch: at least one session, and one ended with this path.
		attempts, results := m.sum("warren_punch_attempts_total"), m.sum("warren_punch_results_total")
		ok := m.sumWhere("warren_punch_results_total", "result", path)
		if attempts < 1 || results > attempts || ok < 1 {
			t.Errorf("%s: %v punch attempts, %v results, %v with result %s", name, attempts, results, ok, path)
		}
		if c, _ := m.value("warren_punch_setup_seconds_count", "result", path); c != ok {
			t.Errorf("%s: setup histogram counts %v sessions with result %s, results say %v", name, c, path, ok)
		}
		if s, _ := m.value("warren_punch_setup_seconds_sum", "result", path); s <= 0 || s > 30 {
			t.Errorf("%s: setup time sum %v s", name, s)
		}
		for _, p := range []string{"direct-tcp", "direct-udp", "relay"} {
			want := 0.0
			if p == path {
				want = 1
			}
			if v, _ := m.value("warren_link_up", "peer", peer, "path", p); v != want {
				t.Errorf("%s: link_up{path=%s} = %v, want %v", name, p, v, want)
			}
		}
		// The link carried the payload, in TLS records.
		sent, received := len(request), len(reply)
		if name == "home" {
			sent, received = received, sent
		}
		in, _ := m.value("warren_link_bytes_total", "peer", peer, "direction", "in")
		out, _ := m.value("warren_link_bytes_total", "peer", peer, "direction", "out")
		if in < float64(received) || out < float64(sent) {
			t.Errorf("%s: link bytes in %v, out %v; the payload alone is %d in, %d out", name, in, out, received, sent)
		}
		if v, _ := m.value("warren_rendezvous_registered"); v != 1 {
			t.Errorf("%s: rendezvous_registered %v", name, v)
		}
		if f := m["warren_nat_type"]; len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("%s: nat_type %v, want one series of 1", name, f)
		}
		// Both daemons run in this process, so the runtime's figures are
		// only checked for being there and plausible (the live heap is 0
		// until the first GC).
		if v, ok := m.value("go_goroutines"); !ok || v < 10 {
			t.Errorf("%s: go_goroutines %v (present %v)", name, v, ok)
		}
		if v, ok := m.value("go_gc_heap_live_bytes"); !ok || v < 0 {
			t.Errorf("%s: go_gc_heap_live_bytes %v (present %v)", name, v, ok)
		}
		if v, _ := m.value("warren_relay_links"); (v == 1) != (path == "relay") {
			t.Errorf("%s: %v relay links on a %s link", name, v, path)
		}
		if d := m.sum("warren_link_downs_total"); d != 0 {
			t.Errorf("%s: %v links down", name, d)
		}
	}

	// The forward: exact payload bytes, and the one refusal on each side.
	for _, c := range []struct {
		m                  metricsScrape
		side               string
		reqDir, replyDir   string
		refusal            string
		refusalsOnThisSide float64
	}{
		{lm, "local", "out", "in", "not_allowed", 1},
		{hm, "exit", "in", "out", "not_allowed", 1},
	} {
		if v, _ := c.m.value("warren_forward_connections_total", "side", c.side); v != 2 {
			t.Errorf("%s: %v connections, want 2", c.side, v)
		}
		if v, _ := c.m.value("warren_forward_active", "side", c.side); v != 0 {
			t.Errorf("%s: %v active, want 0", c.side, v)
		}
		if v, _ := c.m.value("warren_forward_bytes_total", "side", c.side, "direction", c.reqDir); v != float64(len(request)) {
			t.Errorf("%s: %v request bytes, want %d", c.side, v, len(request))
		}
		if v, _ := c.m.value("warren_forward_bytes_total", "side", c.side, "direction", c.replyDir); v != float64(len(reply)) {
			t.Errorf("%s: %v reply bytes, want %d", c.side, v, len(reply))
		}
		if v, _ := c.m.value("warren_forward_refusals_total", "side", c.side, "reason", c.refusal); v != 1 {
			t.Errorf("%s: %v refusals %s, want 1", c.side, v, c.refusal)
		}
		if v := c.m.sumWhere("warren_forward_refusals_total", "side", c.side); v != c.refusalsOnThisSide {
			t.Errorf("%s: %v refusals in all, want %v", c.side, v, c.refusalsOnThisSide)
		}
		if n := len(c.m["warren_forward_refusals_total"].GetMetric()); n != 20 {
			t.Errorf("%d refusal series, want every reason for both sides (20)", n)
		}
	}
	checkRelink(t, ctx, laptop, home, lm)
}

// TestMetricsEndpoint, continued: a link that goes down and is punched
// again. Counters carry on from the old link's totals.
func checkRelink(t *testing.T, ctx context.Context, laptop, home *Daemon, before metricsScrape) {
	t.Helper()
	p := laptop.peerByName("home")
	p.mu.Lock()
	old := p.link
	p.mu.Unlock()
	old.Close()
	waitUntil(t, ctx, "a new link", func() bool {
		p.mu.Lock()
		l := p.link
		p.mu.Unlock()
		return l != nil && l != old && peerState(home, "laptop").State == StateConnected
	})
	after := scrape(t, laptop)
	for _, dir := range []string{"in", "out"} {
		was, _ := before.value("warren_link_bytes_total", "peer", "home", "direction", dir)
		now, _ := after.value("warren_link_bytes_total", "peer", "home", "direction", dir)
		if now < was {
			t.Errorf("link bytes %s went back from %v to %v over a new link", dir, was, now)
		}
	}
	if v, _ := after.value("warren_link_downs_total", "peer", "home", "reason", "closed"); v != 1 {
		downs := map[string]float64{}
		for _, r := range []string{downClosed, downNewSession, downAddressGone, downShutdown} {
			downs[r], _ = after.value("warren_link_downs_total", "peer", "home", "reason", r)
		}
		t.Errorf("laptop: %v links down for reason closed, want 1 (all: %v)", v, downs)
	}
	if a, r := after.sum("warren_punch_attempts_total"), after.sum("warren_punch_results_total"); a < 2 || r < 2 {
		t.Errorf("laptop: %v punch attempts, %v results after a second link", a, r)
	}
	waitUntil(t, ctx, "home counting its link down", func() bool {
		return scrape(t, home).sum("warren_link_downs_total") == 1
	})
}

// metricsScrape is a parsed scrape.
type metricsScrape map[string]*dto.MetricFamily

// scrape GETs d's /metrics and parses it strictly.
func scrape(t *testing.T, d *Daemon) metricsScrape {
	t.Helper()
	resp, err := http.Get("http://" + d.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != metricsContentType {
		t.Fatalf("GET /metrics: %s, Content-Type %q\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	t.Logf("scrape:\n%s", body)
	return parseStrict(t, string(body))
}

// matches reports whether m has every label pair of kv (name, value, ...).
func matches(m *dto.Metric, kv ...string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == kv[i] && l.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// value returns the value of the one series of name with labels kv; a
// histogram's _sum and _count are read from its family.
func (s metricsScrape) value(name string, kv ...string) (float64, bool) {
	for _, suffix := range []string{"_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && s[base].GetType() == dto.MetricType_HISTOGRAM {
			for _, m := range s[base].GetMetric() {
				if matches(m, kv...) {
					if suffix == "_count" {
						return float64(m.GetHistogram().GetSampleCount()), true
					}
					return m.GetHistogram().GetSampleSum(), true
				}
			}
			return 0, false
		}
	}
	for _, m := range s[name].GetMetric() {
		if matches(m, kv...) && len(m.GetLabel()) == len(kv)/2 {
			return sampleValue(m), true
		}
	}
	return 0, false
}

// sumWhere adds up name's series that have the labels kv.
func (s metricsScrape) sumWhere(name string, kv ...string) float64 {
	var sum float64
	for _, m := range s[name].GetMetric() {
		if matches(m, kv...) {
			sum += sampleValue(m)
		}
	}
	return sum
}

func (s metricsScrape) sum(name string) float64 { return s.sumWhere(name) }

func peerState(d *Daemon, name string) PeerStatus {
	for _, p := range d.Status().Peers {
		if p.Name == name {
			return p
		}
	}
	return PeerStatus{}
}

// roundTrip connects to addr, sends msg, half-closes and returns all it
// reads back.
func roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	// A refused forward resets the connection, which on loopback can
	// beat the end of connect or the write.
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return ""
	} else if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c) // a refused forward may end with a reset
	return string(b)
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
