package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// The lab benchmarks (Benchmark* in this package) measure warren against
// a baseline taken in the same run and add their part of
// docs/benchmarks.md to benchDoc. When WARREN_BENCH_REPORT names a file,
// TestMain writes the report there after the run:
//
//	WARREN_BENCH_REPORT=$PWD/docs/benchmarks.md go test ./e2e -run '^$' -bench . -benchtime 1x -timeout 60m
//
// (as root, for the lab). Each benchmark runs its measurement once,
// whatever b.N, and reports its figures with b.ReportMetric too. A run of
// some benchmarks (-bench naming them) refreshes their sections in the
// report the file holds and leaves the rest of it alone.

// Section places in the report, in reading order.
const (
	benchThroughput = 10
	benchLossy      = 15 // on emulated WAN paths, after the loss-free table
	benchFirstByte  = 17 // on the mobile profile
	benchLatency    = 20
	benchPunch      = 30
	benchOpening    = 40
	benchStreams    = 50
	benchIdle       = 60
	benchRendezvous = 70
	benchCluster    = 75
	benchCPU        = 80
	benchMicro      = 90
)

// benchSections are every section a whole run writes. A run that
// measured fewer (one benchmark named with -bench, or some skipped)
// refreshes those in the existing report and keeps the others.
var benchSections = []int{benchThroughput, benchLossy, benchFirstByte, benchLatency, benchPunch, benchOpening, benchStreams, benchIdle,
	benchRendezvous, benchCluster, benchCPU, benchMicro}

// missNotes explains the targets the tables above miss, with the profiles
// behind the explanations, and what .ci/run checks. It is prose, measured
// once (2026-12-07) rather than on every run: the commands in it
// reproduce each figure.
const missNotes = `## Where a target is missed, and why

Profiles and experiments of 2026-12-07 at 3b57071 (issue 16's targets),
on the shared 2-core machine; each names the command that reproduces it.
Issue 7's notes of 2026-11-22 that still hold are kept, marked so.

- **UDP link throughput (target: at least 0.7 of the direct TCP link's)
  and CPU per GiB (target: at most 1.3×).** In process, the two links
  alternating 16 MiB rounds (` + "`go test ./link -run '^$' -bench '^BenchmarkUDPLinkVsTCP$' -benchtime 4096x`" + `):
  0.33–0.58 of the TCP link's throughput and 1.9–3.0× its CPU per GiB
  over 28 runs (the whole-run ratio falls to 0.23 when the machine is
  loaded, see "Checked in CI"); in the lab 0.38–0.53. The QUIC inside TLS
  of issue 7 is gone: no crypto/tls in the UDP link's profile. CPU profile
  of the UDP link's stack, both ends (` + "`go test ./link -run '^$' -bench '^BenchmarkQUICStream$' -benchtime 4096x -cpuprofile /tmp/quic.cpu`" + `,
  then ` + "`go tool pprof -top /tmp/quic.cpu`" + `; 180 MB/s against 577 for
  ` + "`BenchmarkStream`" + `, the TCP link, and 123 allocations per 64 KiB against
  4): sendmsg 22%, recvmmsg 5%, AES-GCM 23%, quic-go's per-packet work
  about 40% (packing and sealing each packet, parsing stream frames,
  sent-packet history and ACKs, 9% in mutexes), allocation and clearing
  7%. GSO is in use (quic-go's ` + "`sendPacketsWithGSO`" + ` → one sendmsg per
  batch, through transport's ` + "`quicPacketConn`" + `), receives are batched with
  recvmmsg and GRO is asked for (transport/quic_gro_linux.go). In the lab
  (` + "`natlab up cone cone`" + `, then ` + "`ethtool -k`" + ` on each veth) every veth has
  tx-udp-segmentation on and GRO off (natlab turns offloads off only on
  emulated uplinks): a GSO batch crosses both NATs as one packet and
  reaches the receiving socket whole, so the lab takes the same path;
  what the veths do not do is coalesce packets that were sent one by one. The gap is
  per packet: 64 KiB is about 50 QUIC packets of at most 1,452 bytes
  (the path MTU), each sealed, framed, tracked and acknowledged in user
  space, where the TCP link seals 4 TLS records and the kernel segments
  with TSO and GRO. AES-GCM costs the same bytes on both links; the extra
  is quic-go's packet handling and the syscalls, which do not shrink
  without larger packets (impossible above the path MTU) or a QUIC stack
  with less per-packet work. Not cheap; not closed.
- **Added latency (target: +100 µs at p50, +300 µs at p99).**
  ` + "`go test ./e2e -run '^$' -bench '^BenchmarkAddedLatency$' -benchtime 1x`" + `,
  6–9 runs at load average 6–10: TCP link +232–436 µs p50 and
  +0.57–1.48 ms p99, UDP link +313–579 µs / +1.0–2.9 ms, relay
  +389–488 µs / +0.84–1.62 ms. Where it goes (2026-11-22, still so): the
  link itself adds about 6 µs over loopback TCP
  (` + "`go test ./link -run '^$' -bench RoundTrip`" + `), a forward two more loopback
  TCP connections and two copies per direction
  (` + "`go test ./forward -run '^$' -bench ForwardMessages/100B`" + `), and the rest
  is scheduling: a request crosses four processes on two shared cores,
  and in each daemon each direction wakes goroutines on other threads
  (yamux's send loop, its receive loop, the copy that reads the stream);
  futex is the largest item after the socket system calls in the
  daemons' CPU profiles. With GOMAXPROCS=1 everywhere the TCP link's p50
  went up (255 µs). The fix is fewer hand-offs per frame: yamux
  v0.1.2 queues every write to its send goroutine, which only a change of
  multiplexer removes. The UDP link adds quic-go's own send loop, which is
  why it is the slowest at p99.
- **1,000 connections one after another (target: at most 3.5× the
  direct baseline; issue 7's 0.7 s).** ` + "`WARREN_BENCH_PPROF=DIR go test ./e2e -run '^$' -bench '^BenchmarkOpening$' -benchtime 1x`" + `,
  then ` + "`go tool pprof -top DIR/opening-office.cpu.pb.gz`" + `: 1.12 s against
  0.165 s direct (6.8×, the profiled build), 0.99 ms per connection at
  p50 against 0.14 ms. The daemons are not busy: over the profile's
  second the laptop used 25% of a core and the office 28% (840 µs of CPU
  per connection for both). A connection is latency-bound: it crosses the
  link three times one after another (the stream's opening with the dial
  request, the exit's dial reply, the echo), and each crossing costs the
  link round trip above. On the office 54% of its CPU is system calls and
  14% growing goroutine stacks (` + "`runtime.adjustframe`" + `, ` + "`copystack`" + `: each
  connection's goroutines start at 2 KiB and grow). Closing it is the
  latency fix above, and then one crossing less (sending the first bytes
  with the dial request instead of after its reply), a protocol change.
- **Idle forwarded connections (target: at most 10 KiB a side).**
  ` + "`WARREN_BENCH_PPROF=DIR go test ./e2e -run '^$' -bench 'BenchmarkIdleStreams$/^streams=1000$' -benchtime 1x`" + `:
  14.5–16.1 KiB RSS a stream on the entry side (laptop) and 11.0–12.5 KiB
  on the exit side (office), 6 runs. Each idle stream keeps one goroutine
  a side (DIR/streams-1000-laptop.goroutines.txt: parked in the copy's
  read, ` + "`forward.join`" + ` under ` + "`handleForward`" + ` on the entry side, under
  ` + "`Server.carry`" + ` on the exit side). Its stack is 8.4 KiB on the entry
  side and 4.4 KiB on the exit side: on the entry side the goroutine that
  opened the stream and waited for the dial reply runs the copy
  afterwards, and keeps the stack that the opening grew; the exit side
  moved its dial to a goroutine of its own on 2026-11-22 and halved it.
  Heap per stream (` + "`go tool pprof -sample_index inuse_space -top DIR/streams-1000-laptop.heap.pb.gz`" + `):
  4.1 KB on the entry side, 3.3 KB on the exit side, of it yamux's stream
  0.8 KB, the copier 0.3 KB, the socket 0.3 KB (fd, addresses), the
  context's AfterFunc 0.13 KB, forward.join's state 0.14 KB. Tried, not
  committed (forward/ is another area of this round): running
  ` + "`handleForward`" + `'s ` + "`l.dial`" + ` on a goroutine of its own that ends, as the
  exit side does, took the entry side to 11.0–11.6 KiB a stream (2 runs)
  and its idle goroutine's stack to 4.4 KiB. Below 10 KiB needs no
  goroutine per idle stream (the netpoller waking a pooled reader), which
  the copy's structure does not allow today.
- **10,000 connections opened at once in under 2 s (issue 16).**
  ` + "`go test ./e2e -run '^$' -bench 'BenchmarkIdleStreams$/^streams=10000$' -benchtime 1x`" + `:
  3.19 s on a quiet machine (7130eeb), 12.4 s at load average 10
  (2fa9408). It is CPU: the two daemons, the 64 dialers and the echo
  service share the 2 cores, and opening costs both daemons together about
  1.07 ms of CPU a connection one at a time ("Opening connections") and at
  most 0.64 ms in parallel (3.19 s of two cores for 10,000), so 2 s would
  take under 0.4 ms. Where it goes is the 1,000-connection profile above:
  system calls (an accept, a dial, the stream's opening, request, reply,
  the echo each way, closes), wake-ups and stack growth.
- **First byte on a mobile path, cone ↔ symseq (issue 14's target: 5
  round trips + 200 ms = 650 ms; 727 ms, 1.12×).** The daemons' debug logs
  of single runs (` + "`natlab`" + ` mobile on both uplinks, 90 ms between the
  peers) show where a run's time goes, from the connect request: the
  consent, about half a round trip (46 ms); the TCP session probe of the
  symseq side's connect-fixed role and then both UDP session probes, which
  must reach the server one after the other because the server's second
  step carries the TCP probe's mapping as the base of the cone side's SYN
  spray (141 ms, ` + "`session.TCPProbed`" + `); the UDP punch and its probe train,
  which ends at its first sure loss or after 48 pings (200–250 ms); the
  link's handshake over KCP, two round trips when nothing is lost but three
  or more when a packet of the first flight is (KCP retransmits it after
  its initial 200 ms timeout, as it has no round-trip sample yet); and the
  echo through the forward, one round trip. Two changes would close it,
  neither small: a server that holds the second step until the TCP probe
  has come (so the UDP probes need not wait for it; a capability the
  daemon must learn from the server, as an older server would send the
  step without the spray's base), about 45 ms; and a first flight that
  survives a loss without a 200 ms timeout (kcp-go does not let the
  initial RTO be set; sending the first flight twice would).
- **Rendezvous server memory per peer (target: 8 KiB).**
  ` + "`go test ./rendezvous -run '^$' -bench ServerPeerMemory -benchtime 2000x -peerheap /tmp/peers.heap`" + `,
  then ` + "`go tool pprof -sample_index inuse_space -focus 'rendezvous.\\(\\*Server\\)' -top /tmp/peers.heap`" + `:
  11.4 KB of heap and 8.2 KB of goroutine stack per registered peer.
  Heap: Go's TLS connection about 7.7 KB of it (3.4 KB of read buffers it
  grew for the handshake and keeps: ` + "`rawInput`" + ` and ` + "`hand`" + ` in
  ` + "`readHandshake`" + `; 1.7 KB of AES-GCM state for the two directions; 1.7 KB
  the peer's parsed certificate; 0.9 KB the ` + "`tls.Conn`" + `), the connection's
  log fields 0.9 KB (logrus entries and their cloned maps), the socket and
  context 0.7 KB. The stack is the read loop's goroutine, parked in
  ` + "`tls.Conn.Read`" + `. With Go's default GC headroom (the heap may grow to
  twice the live heap before a collection) that is about 31 KB a peer,
  the 34.0 KiB that BenchmarkRendezvousScale measured at 10,000 peers.
  Nothing cheap reaches 8 KiB: the TLS connection alone is over it, and
  the goroutine another 8. A lower GOGC trades CPU for at most the
  headroom (about 11 KB a peer), dropping the per-connection log entry
  0.9 KB. Reaching 8 KiB needs a server with no Go TLS connection and no
  goroutine per idle peer (an event loop over the netpoller with a TLS
  state machine that releases its buffers).
- **Coordinations per second (target: above 10,000).**
  BenchmarkRendezvousScale measured 9,154–9,645/s with the server at
  111–113% of one core, 117–122 µs of server CPU a coordination, and the
  load generator on the same two cores. Server profile while
  coordinating, in process (` + "`go test ./rendezvous -run '^$' -bench '^BenchmarkServerCoordinate$' -benchtime 3s -cpuprofile /tmp/coord.cpu`" + `,
  then ` + "`go tool pprof -focus 'rendezvous.\\(\\*Server\\)' -top /tmp/coord.cpu`" + `):
  of the server's share, 37% system calls (a coordination is about six
  frames: the connect, the ask to the other peer and its consent, a punch
  and a udp frame to each peer, each its own TLS record and system call), 25% ` + "`json.Marshal`" + ` of those
  frames (reflection over Message's 26 fields every time), 11%
  allocation; AES-GCM is 3%. With the generator taking the other core, a
  cut of about 10% of the server's 120 µs is what is missing. Tried: an
  encoder for Message without reflection, byte for byte json.Marshal's
  output, wrote a punch frame in 1.3–1.4 µs against json.Marshal's
  1.7–2.2 µs (a throwaway benchmark on the loaded machine): about 2 µs
  a coordination, under 2%, not kept. The larger part is the system
  calls: one write for a peer's punch and udp frames together (a protocol
  change, the udp frame waits for the peers' UDP steps) or fewer frames
  per coordination would be the lift. BenchmarkRendezvousScale is
  ` + "`go test ./e2e -run '^$' -bench '^BenchmarkRendezvousScale$' -benchtime 1x`" + `.
- **The daemon's RSS (target: 17 MiB with one connected peer; 18.1
  measured).** An idle daemon (` + "`warren up`" + `, registered, one peer
  configured), /proc/PID/status and /proc/PID/smaps: VmRSS 17.4 MiB, of it
  RssFile 14.8 MiB, the binary's own pages (6.2 MiB of its 10.7 MiB of
  code, 7.0 MiB of read-only data and pclntab), and RssAnon 2.5 MiB (heap,
  stacks, runtime). The file pages are all Shared_Clean: with three warren
  processes on the host (server and two daemons) the daemon's PSS was
  7.6 MiB. The binary is 32 MB; ` + "`go version -m`" + ` and ` + "`go tool nm -size`" + `
  show the embedded NATS server (nats-server v2.15.3 with nats.go, jwt,
  nkeys, highwayhash and klauspost/compress) taking 4.1 MiB of its
  11.9 MiB of code and data symbols, KCP with its FEC and gmsm 0.85 MiB,
  quic-go 0.5 MiB, warren itself 0.8 MiB. What would close it: a daemon
  binary without the cluster's NATS server (a build tag or a separate
  command for cluster nodes), which cuts the pages the daemon can touch;
  a build change outside this round.
- **Throughput of the TCP link (issue 7, 2026-11-22, still so).** Both
  daemons are CPU-bound: about 3 s of CPU per GiB carried between them,
  AES-GCM and socket system calls first.

## Checked in CI

` + "`.ci/run`" + ` runs five benchmarks, each against its baseline (or, for the
first byte, against a target counted in the path's round trips) in the
same run; a figure past its bound fails the run (issue 16's three: 25–37
s in all, measured with the test binaries built, at load average 6–9;
issue 14's two: about 80 s). The targets are missed, so every bound is a regression guard,
set beyond the spread of runs on this machine while it was busy (other
engineers' builds and tests, load average 4–12):

| check | command | measured | bound | kind |
|---|---|---|---|---|
| UDP link throughput, median of its rounds over the TCP link's beside them | ` + "`go test ./link -run '^$' -bench '^BenchmarkUDPLinkVsTCP$' -benchtime 4096x`" + ` | 0.34–0.45 (5 runs, load 5); best rounds' ratio 0.25–0.40 (14 runs), the whole run's 0.23–0.58 (28 runs) | ≥ 0.25 | guard (target 0.7) |
| UDP link CPU per GiB, of the TCP link's | same | 1.9–3.0× (28 runs) | ≤ 3.5× | guard (target 1.3×) |
| RSS per idle forwarded connection, each side, 1,000 connections | ` + "`go test ./e2e -run '^$' -bench 'BenchmarkIdleStreams$/^streams=1000$' -benchtime 1x`" + ` | entry 14.5–16.1 KiB, exit 11.0–12.5 KiB (6 runs) | ≤ 20 KiB | guard (target 10 KiB) |
| added latency p50 / p99 over the raw path, TCP link | ` + "`go test ./e2e -run '^$' -bench '^BenchmarkAddedLatency$' -benchtime 1x`" + ` | +232–436 µs / +0.57–1.48 ms (9 runs) | 800 µs / 3 ms | guard (target 100 / 300 µs) |
| the same, UDP link | same | +313–579 µs / +1.0–2.9 ms (8 runs) | 1.2 / 5 ms | guard |
| the same, relay | same | +389–488 µs / +0.84–1.62 ms (6 runs) | 1 / 4 ms | guard |
| first byte on a mobile path, median of 5 over issue 14's target, four pairs | ` + "`go test ./e2e -run '^$' -bench '^BenchmarkMobileFirstByte$' -benchtime 1x`" + ` (about 55 s) | cone/cone 0.99–1.05, cone/symseq 1.01–1.15, symseq/symseq 0.83–0.96, cone/symrand 0.60–0.74 (4 runs, load 1–8, one of them a whole ` + "`.ci/run`" + `) | ≤ 1.35, and no more than one relayed run a pair | guard (target 1.0) |
| one stream on a mobile path, default link, of plain TCP over the same path | ` + "`go test ./e2e -run '^$' -bench '^BenchmarkMobileDefault$' -benchtime 1x`" + ` | 1.7× (docs above) | ≥ 0.4 | guard (issue 14's targets: 0.6 of capacity, 4× plain TCP) |

Throughput is compared round by round because the UDP link,
with more goroutines per byte, loses more of its share than the TCP link
when other processes compete for the two cores: the whole run's ratio
measures the machine's load as much as the link. Latency's p99 moves most
with the load, hence its wide bounds. Without ` + "`WARREN_BENCH_CHECK`" + ` the
benchmarks only measure.
`

// benchReport collects report sections from the benchmarks of one run.
type benchReport struct {
	mu       sync.Mutex
	sections map[int]string
	files    map[string][]byte // written beside the report: plots
}

// addFile records a file (a plot the report links to) to write beside the
// report.
func (r *benchReport) addFile(name string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.files == nil {
		r.files = make(map[string][]byte)
	}
	r.files[name] = data
}

// benchDoc is the report of this test binary's run.
var benchDoc benchReport

// add records md, a markdown section starting with "## ", at place order.
// A benchmark run again (b.N > 1, or -count) replaces its section.
func (r *benchReport) add(order int, md string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sections == nil {
		r.sections = make(map[int]string)
	}
	r.sections[order] = strings.TrimSpace(md) + "\n"
}

// benchRegenerate is the report's paragraph on measuring it again.
const benchRegenerate = "Regenerate (as root): `WARREN_BENCH_REPORT=$PWD/docs/benchmarks.md go test ./e2e -run '^$' " +
	"-bench . -benchtime 1x -timeout 60m`. One section alone: the same with `-bench` naming its benchmark (such as " +
	"`-bench '^BenchmarkClusterScale$'`); the report's other sections stay as they are, and the refreshed one says " +
	"when and at which commit it was measured. Every figure is set against a baseline measured in the same run; " +
	"targets are issue 7's unless a section names another issue."

// write writes the report to path, if any section was added: after a
// whole run (every one of benchSections) the whole report, else the
// report at path with the sections this run measured refreshed.
func (r *benchReport) write(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sections) == 0 {
		return nil
	}
	whole := true
	for _, order := range benchSections {
		_, ok := r.sections[order]
		whole = whole && ok
	}
	var measured []string
	for _, order := range slices.Sorted(maps.Keys(r.sections)) {
		measured = append(measured, r.sections[order])
	}
	date, commit := time.Now().UTC().Format("2006-01-02"), gitCommit()
	doc := wholeReport(measured, date, commit)
	if old, err := os.ReadFile(path); err == nil && !whole {
		doc = mergeReport(string(old), measured, fmt.Sprintf("Measured %s at commit %s.", date, commit))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bench report: %w", err)
	}
	for name, data := range r.files {
		if err := os.WriteFile(filepath.Join(filepath.Dir(path), name), data, 0o644); err != nil {
			return fmt.Errorf("bench report: %w", err)
		}
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// wholeReport is the report of a whole run: a header saying when, where
// and how, the sections, and missNotes.
func wholeReport(sections []string, date, commit string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured %s at commit %s on %s (%d cores, shared), in the NAT lab "+
		"(real kernel NATs in network namespaces, no added delay).\n\n%s\n", date, commit, hostDesc(), runtime.NumCPU(),
		benchRegenerate)
	for _, s := range sections {
		b.WriteString("\n" + s)
	}
	b.WriteString("\n" + missNotes)
	return b.String()
}

// mergeReport returns the report old with each of measured (sections,
// each starting with its "## " heading) in place of old's section of the
// same heading, with stamp (when it was measured) under its heading. A
// measured section old does not have goes before missNotes, which closes
// the report, or last. Old's Regenerate paragraph becomes today's;
// everything else stays as it is.
func mergeReport(old string, measured []string, stamp string) string {
	preamble, sections := splitSections(old)
	at := make(map[string]int, len(sections))
	closing := len(sections)
	for i, s := range sections {
		at[heading(s)] = i
		if heading(s) == heading(missNotes) {
			closing = i
		}
	}
	var fresh []string
	for _, m := range measured {
		head, body, _ := strings.Cut(strings.TrimSpace(m), "\n")
		m = strings.TrimSpace(head+"\n\n"+stamp+"\n\n"+strings.TrimSpace(body)) + "\n"
		if i, ok := at[heading(m)]; ok {
			sections[i] = m
		} else {
			fresh = append(fresh, m)
		}
	}
	sections = slices.Insert(sections, closing, fresh...)

	paras := strings.Split(strings.TrimSpace(preamble), "\n\n")
	for i, p := range paras {
		if strings.HasPrefix(p, "Regenerate") {
			paras[i] = benchRegenerate
		}
	}
	var b strings.Builder
	b.WriteString(strings.Join(paras, "\n\n") + "\n")
	for _, s := range sections {
		b.WriteString("\n" + s)
	}
	return b.String()
}

// splitSections splits a markdown report into what precedes its first
// "## " heading and its sections, each from its heading to the next,
// trimmed and ending in one newline. A "## " line inside a fenced code
// block is no heading.
func splitSections(doc string) (preamble string, sections []string) {
	var cur strings.Builder
	var fenced, inSection bool
	flush := func() {
		if inSection {
			sections = append(sections, strings.TrimSpace(cur.String())+"\n")
		} else {
			preamble = strings.TrimSpace(cur.String()) + "\n"
		}
		cur.Reset()
	}
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "## ") {
			flush()
			inSection = true
		}
		cur.WriteString(line)
	}
	flush()
	return preamble, sections
}

// heading is a section's first line.
func heading(section string) string {
	head, _, _ := strings.Cut(strings.TrimSpace(section), "\n")
	return strings.TrimSpace(head)
}
