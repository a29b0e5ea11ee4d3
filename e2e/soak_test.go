package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// The soak test runs three daemons in the lab for a while under every
// kind of churn at once, and then asks whether anything is left over.
//
//	laptop (cone) ──┐
//	                ├── home (cone): an echo service, exposed to both
//	friend (symrand)┘
//
// Transfers of random sizes run through laptop's and friend's forwards all
// the time, and long-lived streams echo through laptop's. Each cycle
// (soakCycle) the NATs forget their mappings; every other cycle the
// direct path between laptop and home is cut, so that their link dies
// with transfers on it and moves to the relay, and mended, so that it
// moves back; in the others the rendezvous server restarts; and friend
// leaves and joins again. At the
// end of each cycle the traffic pauses and the test checks that every
// link is up and the status API says what is true; laptop and home, which
// live through it all, are sampled then (goroutines, live heap, RSS, open
// files), and at the end their samples must not have grown (report). A transfer may
// fail while the network changes under it, but never return other bytes
// than were sent, nor end early with a clean EOF.

// soakCycle is one round of churn; the soak runs max(3, duration/cycle)
// of them.
const soakCycle = time.Minute

// soakDuration is WARREN_SOAK (a Go duration), 10 minutes by default.
func soakDuration(t *testing.T) time.Duration {
	s := os.Getenv("WARREN_SOAK")
	if s == "" {
		return 10 * time.Minute
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("WARREN_SOAK=%q: want a positive duration such as 10m", s)
	}
	return d
}

// Growth allowed from the early settled samples to the last (report).
// Over the default ten cycles (some 90,000 transfers), a leak of a
// goroutine or a file per cycle, or of a hundred bytes per transfer,
// exceeds them; the Go runtime's own noise does not: a settled live heap
// was seen anywhere from 1.6 to 8.6 MiB, as GC and pooled 256 KiB copy
// buffers fell.
const (
	soakGoroutineSlack = 5
	soakFileSlack      = 3
	soakHeapSlack      = 8 << 20
	soakRSSSlack       = 16 << 20
)

func TestSoak(t *testing.T) {
	cycles := max(3, int(soakDuration(t)/soakCycle))
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sites := map[string]*natlab.Site{}
	for _, s := range []struct {
		name string
		kind natlab.Kind
	}{{"a", natlab.Cone}, {"b", natlab.Cone}, {"c", natlab.SymRand}} {
		site, err := lab.AddSite(ctx, s.name, s.kind)
		if err != nil {
			t.Fatal(err)
		}
		sites[s.name] = site
	}
	w := labWorld(t, lab)
	w.logLevel = "info" // ten minutes of debug lines would swamp the output kept for failures
	s := newSoak(t, w, sites["a"].Host(), sites["b"].Host(), sites["c"].Host())

	s.run(ctx)
	for i := range cycles {
		cycleStart := time.Now()
		at := func(d time.Duration) { time.Sleep(time.Until(cycleStart.Add(d))) }

		at(10 * time.Second)
		for _, site := range sites {
			if err := site.Forget(ctx); err != nil {
				t.Fatal(err)
			}
		}
		cut := i%2 == 0
		if cut {
			at(15 * time.Second)
			if err := lab.Cut(ctx, sites["a"].PublicAddr(), sites["b"].PublicAddr()); err != nil {
				t.Fatal(err)
			}
		} else {
			at(20 * time.Second)
			s.restartRendezvous()
		}
		at(30 * time.Second)
		s.friendLeaves()
		at(38 * time.Second)
		s.friendJoins()
		if cut {
			at(45 * time.Second)
			s.noDirectPath()
			if err := lab.Mend(ctx); err != nil {
				t.Fatal(err)
			}
		}
		at(50 * time.Second)
		s.settle(fmt.Sprintf("cycle %d", i+1))
		at(soakCycle)
	}
	s.stop()
	s.settle("the end")
	s.report()
}

// soak is the soak test's daemons, traffic and tallies.
type soak struct {
	t                    *testing.T
	w                    *world
	laptop, home, friend machine
	admin                map[string]string // daemon name → admin address
	procs                map[string]*process
	friendCfg            string
	laptopFwd, friendFwd string

	// gate pauses the traffic: each transfer, and the opening of each
	// long stream, holds it shared; settle takes it alone.
	gate     sync.RWMutex
	stopping chan struct{}
	stopOnce sync.Once
	workers  sync.WaitGroup

	transfers, broken, refused, bytes atomic.Int64
	longOpen, longRounds, longBroken  atomic.Int64
	failures                          chan string // corruption: the test fails

	samples map[string][]soakSample // laptop and home, one per settle
	last    map[string]daemon.PeerStatus
}

// soakSample is a settled daemon's footprint.
type soakSample struct {
	goroutines, heap, rss, files int64
}

func newSoak(t *testing.T, w *world, laptop, home, friend machine) *soak {
	s := &soak{t: t, w: w, laptop: laptop, home: home, friend: friend,
		admin: map[string]string{}, procs: map[string]*process{},
		stopping: make(chan struct{}), failures: make(chan string, 100),
		samples: map[string][]soakSample{}, last: map[string]daemon.PeerStatus{}}
	keys := map[string]string{}
	for _, n := range []string{"laptop", "home", "friend"} {
		keys[n] = w.keygen(n)
	}
	echo := serveEcho(t, home)
	s.laptopFwd = hostPort("127.0.0.1", freePort(t, laptop))
	s.friendFwd = hostPort("127.0.0.1", freePort(t, friend))
	// A 5s keepalive: a cut path is found dead within the cycle.
	common := fmt.Sprintf("log_level = %q\n[rendezvous]\naddress = %q\npublic_key = %q\n[link]\nkeepalive = \"5s\"\n",
		w.logLevel, w.rvAddr, w.rvKey)
	peer := func(name string) string {
		return fmt.Sprintf("[[peers]]\nname = %q\npublic_key = %q\n", name, keys[name])
	}
	forward := func(listen string) string {
		return fmt.Sprintf("[[forward]]\nlisten = %q\npeer = \"home\"\nservice = \"echo\"\n", listen)
	}
	cfg := func(name string, m machine, rest ...string) string {
		s.admin[name] = hostPort("127.0.0.1", freePort(t, m))
		body := fmt.Sprintf("key_file = %q\nadmin_listen = %q\n%s", name+".key", s.admin[name], common) + strings.Join(rest, "")
		return writeFile(t, w.dir, name+".toml", body)
	}
	homeCfg := cfg("home", home, peer("laptop"), peer("friend"),
		fmt.Sprintf("[[expose]]\nname = \"echo\"\ntarget = \"127.0.0.1:%s\"\npeers = [\"laptop\", \"friend\"]\n", echo))
	laptopCfg := cfg("laptop", laptop, peer("home"), forward(s.laptopFwd))
	s.friendCfg = cfg("friend", friend, peer("home"), forward(s.friendFwd))

	s.procs["home"] = start(t, home, "home", "up", "-c", homeCfg)
	s.procs["laptop"] = start(t, laptop, "laptop", "up", "-c", laptopCfg)
	s.friendJoins()
	waitPeer(t, laptop, s.admin["laptop"], "home", daemon.StateConnected, linkWait)
	return s
}

// run starts the traffic: three transfer loops through laptop's forward,
// two through friend's, and two long-lived streams through laptop's. It
// stops when stop is called, or when the test ends (a failure included).
func (s *soak) run(ctx context.Context) {
	s.t.Cleanup(s.stop)
	for i := range 3 {
		s.workers.Go(func() { s.transferLoop(ctx, s.laptop, s.laptopFwd, uint64(i)) })
	}
	for i := range 2 {
		s.workers.Go(func() { s.transferLoop(ctx, s.friend, s.friendFwd, uint64(10+i)) })
	}
	for range 2 {
		s.workers.Go(func() { s.longStream(ctx) })
	}
}

// stop ends the traffic and waits for it.
func (s *soak) stop() {
	s.stopOnce.Do(func() { close(s.stopping) })
	s.workers.Wait()
}

func (s *soak) stopped() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// fail records a corruption; the test fails at the next settle.
func (s *soak) fail(format string, args ...any) {
	select {
	case s.failures <- fmt.Sprintf(format, args...):
	default:
	}
}

// transferLoop sends random payloads through fwd on m and checks every
// echo, until stop. Sizes are mostly small, sometimes up to 1 MiB, so
// that streams open and close many times a second and some transfers are
// in flight whenever the network changes.
func (s *soak) transferLoop(ctx context.Context, m machine, fwd string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	for !s.stopped() {
		size := 1 + rng.IntN(16<<10)
		if rng.IntN(8) == 0 {
			size = 1 + rng.IntN(1<<20)
		}
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		s.gate.RLock()
		err := s.transfer(ctx, m, fwd, payload)
		s.gate.RUnlock()
		s.transfers.Add(1)
		switch {
		case err == nil:
			s.bytes.Add(int64(size))
		case errors.Is(err, syscall.ECONNREFUSED):
			s.refused.Add(1) // friend's daemon is away, and its forward with it
			time.Sleep(100 * time.Millisecond)
		default:
			s.broken.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errCorrupt marks a transfer that returned other bytes than were sent, or
// ended early with a clean EOF.
var errCorrupt = errors.New("corrupt")

// transfer sends payload through fwd, half-closes, and checks that exactly
// payload comes back before EOF. A failure that shows as a failure (a
// reset, a timeout) is the network's; wrong bytes, or a short echo that
// ends in a clean EOF, are the daemons' and fail the test.
func (s *soak) transfer(ctx context.Context, m machine, fwd string, payload []byte) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := m.DialContext(dctx, &net.Dialer{}, "tcp", fwd)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		wrote <- err
	}()
	got := make([]byte, 0, len(payload))
	buf := make([]byte, 64<<10)
	var rerr error
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if len(got)+n > len(payload) || !bytes.Equal(buf[:n], payload[len(got):len(got)+n]) {
				c.Close()
				<-wrote
				s.fail("%s: %d-byte transfer: bytes %d..%d differ from what was sent", fwd, len(payload), len(got), len(got)+n)
				return errCorrupt
			}
			got = append(got, buf[:n]...)
		}
		if err != nil {
			rerr = err
			break
		}
	}
	c.Close()
	werr := <-wrote
	switch {
	case rerr == io.EOF && len(got) == len(payload):
		return nil
	case rerr == io.EOF && werr == nil:
		s.fail("%s: %d-byte transfer: clean EOF after %d bytes", fwd, len(payload), len(got))
		return errCorrupt
	case rerr == io.EOF:
		return werr // the upload failed; the forward ended the echo
	}
	return rerr
}

// longStream keeps a stream open through laptop's forward, echoing a
// random KiB every 100ms; when the network breaks it, it opens another.
func (s *soak) longStream(ctx context.Context) {
	for !s.stopped() {
		s.gate.RLock()
		c, err := s.laptop.DialContext(ctx, &net.Dialer{Timeout: 5 * time.Second}, "tcp", s.laptopFwd)
		if err == nil {
			err = echoOnce(c)
		}
		if err != nil {
			s.gate.RUnlock()
			if c != nil {
				c.Close()
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		s.longOpen.Add(1)
		s.gate.RUnlock()
		// The rounds go on while settle holds the gate, so that a stream
		// the network broke is found broken, and counted out, there too.
		err = echoLoop(c, 100*time.Millisecond, 20*time.Second, s.stopping, &s.longRounds)
		if errors.Is(err, errCorrupt) {
			s.fail("long stream: %v", err)
		}
		c.Close()
		s.longOpen.Add(-1)
		if err != nil {
			s.longBroken.Add(1)
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// restartRendezvous stops the server, checks that laptop and home say so,
// and starts it again; the daemons must register again on their own.
func (s *soak) restartRendezvous() {
	s.t.Helper()
	s.w.stopRendezvous()
	for _, n := range []string{"laptop", "home"} {
		waitStatus(s.t, s.machine(n), s.admin[n], 10*time.Second, "rendezvous connection lost", func(st daemon.Status) bool {
			return st.Rendezvous != "registered"
		})
	}
	s.w.startRendezvous()
}

// noDirectPath checks, 30s after the direct path between laptop and home
// was cut, that neither claims a direct link to the other: the link they
// had must have been found dead, and any link now goes through the relay.
func (s *soak) noDirectPath() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range []struct{ self, peer string }{{"laptop", "home"}, {"home", "laptop"}} {
		st, err := status(ctx, s.machine(l.self), s.admin[l.self])
		if err != nil {
			s.t.Fatal(err)
		}
		if row := statusRow(st, l.peer); row.State == daemon.StateConnected && row.Path != "relay" {
			s.t.Fatalf("%s still reports a %s link to %s 30s after the path was cut: %+v", l.self, row.Path, l.peer, row)
		}
	}
}

// friendLeaves stops friend's daemon; home must show its link down.
func (s *soak) friendLeaves() {
	s.t.Helper()
	p := s.procs["friend"]
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			s.t.Fatalf("friend exited with %v on SIGTERM:\n%s", p.err, tail(p.output(), 40))
		}
	case <-time.After(10 * time.Second):
		s.t.Fatal("friend did not stop within 10s of SIGTERM")
	}
	waitStatus(s.t, s.home, s.admin["home"], 10*time.Second, "friend's link down", func(st daemon.Status) bool {
		return statusRow(st, "friend").State != daemon.StateConnected
	})
}

// friendJoins starts friend's daemon (again).
func (s *soak) friendJoins() {
	s.procs["friend"] = start(s.t, s.friend, "friend", "up", "-c", s.friendCfg)
}

func (s *soak) machine(name string) machine {
	return map[string]machine{"laptop": s.laptop, "home": s.home, "friend": s.friend}[name]
}

// settle pauses the traffic and checks that every link is up again, that
// the status API tells the truth about it, and that a request works over
// each; then it samples laptop and home.
func (s *soak) settle(when string) {
	t := s.t
	t.Helper()
	s.gate.Lock()
	defer s.gate.Unlock()
	select {
	case f := <-s.failures:
		t.Fatalf("%s: %s", when, f)
	default:
	}
	links := []struct{ self, peer string }{
		{"laptop", "home"}, {"home", "laptop"}, {"friend", "home"}, {"home", "friend"},
	}
	for _, l := range links {
		waitPeer(t, s.machine(l.self), s.admin[l.self], l.peer, daemon.StateConnected, 30*time.Second)
	}
	for _, n := range []string{"laptop", "home", "friend"} {
		waitStatus(t, s.machine(n), s.admin[n], 30*time.Second, "registration", func(st daemon.Status) bool {
			return st.Rendezvous == "registered"
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, f := range []struct {
		m   machine
		fwd string
	}{{s.laptop, s.laptopFwd}, {s.friend, s.friendFwd}} {
		if err := oneEcho(ctx, f.m, f.fwd); err != nil {
			t.Fatalf("%s: status says connected, but a request through %s failed: %v", when, f.fwd, err)
		}
	}
	// The long streams are open and idle, and nothing else is: the
	// status's stream counts must come to exactly that (a stream just
	// closed may take a moment to be forgotten), and the bytes of a link
	// that stayed up never go back.
	for _, l := range links {
		want := func() int64 {
			if l.peer == "home" && l.self == "laptop" || l.peer == "laptop" {
				return s.longOpen.Load()
			}
			return 0
		}
		row := statusRow(waitStatus(t, s.machine(l.self), s.admin[l.self], 15*time.Second,
			fmt.Sprintf("as many streams to %s as the test has open", l.peer), func(st daemon.Status) bool {
				return statusRow(st, l.peer).Streams == want()
			}), l.peer)
		key := l.self + "→" + l.peer
		if prev, ok := s.last[key]; ok && prev.Since.Equal(*row.Since) && (row.BytesIn < prev.BytesIn || row.BytesOut < prev.BytesOut) {
			t.Fatalf("%s: %s's bytes went back on one link: %d/%d after %d/%d", when, key, row.BytesIn, row.BytesOut, prev.BytesIn, prev.BytesOut)
		}
		s.last[key] = row
	}
	// Let the daemons finish with what just closed before counting.
	time.Sleep(2 * time.Second)
	for _, n := range []string{"laptop", "home"} {
		s.samples[n] = append(s.samples[n], s.sample(n))
	}
	t.Logf("%s: %d transfers (%d broken by the churn, %d refused while friend was away, %.0f MiB checked); "+
		"long streams %d open, %d rounds, %d broken; laptop %+v, home %+v",
		when, s.transfers.Load(), s.broken.Load(), s.refused.Load(), float64(s.bytes.Load())/(1<<20),
		s.longOpen.Load(), s.longRounds.Load(), s.longBroken.Load(), s.samples["laptop"][len(s.samples["laptop"])-1],
		s.samples["home"][len(s.samples["home"])-1])
}

// sample reads daemon n's goroutines and live heap from its metrics, and
// its RSS and open files from /proc.
func (s *soak) sample(n string) soakSample {
	s.t.Helper()
	m := s.machine(n)
	met := scrapeMetrics(s.t, m, s.admin[n])
	pid := s.procs[n].cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		s.t.Fatal(err)
	}
	return soakSample{
		goroutines: int64(met["go_goroutines"]),
		heap:       int64(met["go_gc_heap_live_bytes"]),
		rss:        readUsage(s.t, pid).RSS,
		files:      int64(len(fds)),
	}
}

// report fails the test if laptop's or home's footprint grew: the last
// settled sample must not exceed the largest of the first third by more
// than the slack. The baseline is the first third's largest, not the
// first sample, because a live heap sampled at whatever GC came last
// swings by a few MiB (pooled copy buffers among it) from one settle to
// the next; a leak grows with every cycle, past any of them.
func (s *soak) report() {
	t := s.t
	if s.transfers.Load()-s.broken.Load()-s.refused.Load() < 1000 {
		t.Errorf("only %d transfers got through", s.transfers.Load()-s.broken.Load()-s.refused.Load())
	}
	for _, n := range []string{"laptop", "home"} {
		all := s.samples[n]
		var base soakSample
		for _, x := range all[:(len(all)+2)/3] {
			base = soakSample{max(base.goroutines, x.goroutines), max(base.heap, x.heap), max(base.rss, x.rss), max(base.files, x.files)}
		}
		last := all[len(all)-1]
		for _, c := range []struct {
			what       string
			base, last int64
			slack      int64
		}{
			{"goroutines", base.goroutines, last.goroutines, soakGoroutineSlack},
			{"open files", base.files, last.files, soakFileSlack},
			{"live heap", base.heap, last.heap, soakHeapSlack},
			{"RSS", base.rss, last.rss, soakRSSSlack},
		} {
			if c.last > c.base+c.slack {
				t.Errorf("%s: %s grew from %d to %d (allowed %d more); every sample: %+v", n, c.what, c.base, c.last, c.slack, all)
			}
		}
		t.Logf("%s settled, early (largest) → last: goroutines %d → %d, open files %d → %d, live heap %s → %s, RSS %s → %s", n,
			base.goroutines, last.goroutines, base.files, last.files, mib(base.heap), mib(last.heap), mib(base.rss), mib(last.rss))
	}
}

// statusRow is the status's row for peer, or an empty row.
func statusRow(st daemon.Status, peer string) daemon.PeerStatus {
	for _, p := range st.Peers {
		if p.Name == peer {
			return p
		}
	}
	return daemon.PeerStatus{}
}

// scrapeMetrics reads the unlabelled samples of a daemon's /metrics.
func scrapeMetrics(t testing.TB, m machine, admin string) map[string]float64 {
	t.Helper()
	c := adminClient(m)
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
