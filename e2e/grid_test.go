package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// The grid runs one cell per ordered pair of NAT kinds, plus the same-NAT
// and double-NAT topologies: real binaries, rendezvous on the lab's
// internet, a forward from the client peer to a service on the server
// peer. Set WARREN_GRID_REPORT=path to write the Markdown report:
//
//	WARREN_GRID_REPORT=$PWD/docs/natlab-grid.md go test ./e2e -run TestNATGrid -count=1
//
// WARREN_GRID_PROFILE names the natlab profile of every site's uplink
// (default: none, the lab's wire with no delay or loss), so the grid on a
// WAN profile is one command:
//
//	WARREN_GRID_PROFILE=mobile go test ./e2e -run TestNATGrid -count=1 -timeout 60m
const (
	// cellLinkWait bounds how long a cell waits for its link; a cell
	// that is not up by then is "fail".
	cellLinkWait = 8 * time.Second
	// cellWANLinkWait is cellLinkWait on an emulated WAN profile.
	cellWANLinkWait = 30 * time.Second
	// gridParallel is how many cells run at once on 2 cores.
	gridParallel = 4
	// throughputBytes is the checked transfer through a cell's forward:
	// the grid's short throughput figure, and the check each throughput
	// path must pass before iperf3 measures it.
	throughputBytes = 16 << 20
)

// cell is one grid cell: a client site and a server site.
type cell struct {
	name           string // "cone/symseq", "same-nat", ...
	client, server string // row and column labels
	build          func(ctx context.Context, lab *natlab.Lab) (client, server machine, err error)
	// clientFirst, if set, is cellOptions.clientFirst for every run of
	// the cell that sets none: the cell is about a client that is ready
	// (its port mapped) before its peer asks for it.
	clientFirst func(t testing.TB, client machine, clientAdmin string)
	// ipv6 makes the cell's lab dual-stack (natlab.Config.IPv6), and
	// clientV6Only has the client dial the server's IPv6 address, for a
	// client at a natlab.IPv6Only site.
	ipv6, clientV6Only bool
}

// cellResult is what a cell measured over one transport.
type cellResult struct {
	cell
	transport string        // the only transport the daemons may use
	outcome   string        // direct-tcp, direct-udp, relay, fail
	firstByte time.Duration // daemon start to first byte through the forward
	// firstByteAt is when the first byte came back through the forward.
	firstByteAt time.Time
	setup       time.Duration // connect request to link up (status setup_ms)
	mbps        float64
	nats        string // each daemon's own NAT verdict, client/server
	note        string
	// stream and choice are the client's status: the UDP link's stream,
	// and what the punch measured and chose.
	stream, choice string
	remote         string // the client's link's remote endpoint
}

// gridProfile is the profile WARREN_GRID_PROFILE names, or the zero
// Profile (no emulator) if it is unset.
func gridProfile(t testing.TB) natlab.Profile {
	name := os.Getenv("WARREN_GRID_PROFILE")
	if name == "" {
		return natlab.Profile{}
	}
	p, err := natlab.LookupProfile(name)
	if err != nil {
		t.Fatalf("WARREN_GRID_PROFILE: %v", err)
	}
	return p
}

func gridCells() []cell {
	var cells []cell
	for _, a := range natlab.Kinds() {
		for _, b := range natlab.Kinds() {
			cells = append(cells, cell{
				name: string(a) + "/" + string(b), client: string(a), server: string(b),
				build: func(ctx context.Context, lab *natlab.Lab) (machine, machine, error) {
					sa, err := lab.AddSite(ctx, "a", a)
					if err != nil {
						return nil, nil, err
					}
					sb, err := lab.AddSite(ctx, "b", b)
					if err != nil {
						return nil, nil, err
					}
					return sa.Host(), sb.Host(), nil
				},
			})
		}
	}
	cells = append(cells,
		cell{name: "same-nat (cone)", client: "same-nat", server: "cone",
			build: func(ctx context.Context, lab *natlab.Lab) (machine, machine, error) {
				s, err := lab.AddSite(ctx, "a", natlab.Cone)
				if err != nil {
					return nil, nil, err
				}
				h2, err := s.AddHost(ctx, "a2")
				if err != nil {
					return nil, nil, err
				}
				return s.Host(), h2, nil
			}},
		doubleNATCell(natlab.Cone, natlab.Cone, natlab.Cone),
		doubleNATCell(natlab.SymSeq, natlab.Cone, natlab.Open),
		restrictedCell(natlab.HTTPSOnly),
		restrictedCell(natlab.ProxyOnly),
		ipv6Cell(false), ipv6Cell(true),
	)
	for _, pm := range portMappedKinds {
		cells = append(cells, portMappedCell(pm, nil))
	}
	return cells
}

// portMappedKinds are the port mapping rows: a symrand site whose router
// also grants mappings with one protocol alone (miniupnpd), each against a
// plain symrand site, the pair that relays without a mapping.
var portMappedKinds = []natlab.PortMapper{natlab.PortMapUPnP, natlab.PortMapNATPMP, natlab.PortMapPCP}

// portMappedCell is a client at a symrand site whose router runs a port
// mapper offering pm, and a server at a plain symrand site. The client
// daemon starts first and the server's once the client's status shows its
// TCP mapping, as with a daemon that runs before its peer asks for it
// (both at once, see TestPortMappingLate). If router is not nil, it is set
// to the client's site, whose router holds the mappings.
func portMappedCell(pm natlab.PortMapper, router **natlab.Site) cell {
	client := "symrand+" + string(pm)
	return cell{name: client + "/symrand", client: client, server: string(natlab.SymRand),
		build: func(ctx context.Context, lab *natlab.Lab) (machine, machine, error) {
			sa, err := lab.AddSite(ctx, "a", natlab.SymRand)
			if err != nil {
				return nil, nil, err
			}
			if err := sa.StartPortMapper(ctx, pm); err != nil {
				return nil, nil, err
			}
			sb, err := lab.AddSite(ctx, "b", natlab.SymRand)
			if err != nil {
				return nil, nil, err
			}
			if router != nil {
				*router = sa
			}
			return sa.Host(), sb.Host(), nil
		},
		clientFirst: func(t testing.TB, client machine, admin string) {
			awaitPortMapping(t, client, admin, 5*time.Second)
		}}
}

// doubleNATCell is a client behind a double NAT (carrier NAT outer, home
// NAT inner) and a server at a site of kind server.
func doubleNATCell(outer, inner, server natlab.Kind) cell {
	client := fmt.Sprintf("double(%s+%s)", outer, inner)
	return cell{name: fmt.Sprintf("double-nat (%s+%s)/%s", outer, inner, server), client: client, server: string(server),
		build: func(ctx context.Context, lab *natlab.Lab) (machine, machine, error) {
			sa, err := lab.AddDoubleNAT(ctx, "a", outer, inner)
			if err != nil {
				return nil, nil, err
			}
			sb, err := lab.AddSite(ctx, "b", server)
			if err != nil {
				return nil, nil, err
			}
			return sa.Host(), sb.Host(), nil
		}}
}

// cellsByName returns gridCells keyed by name.
func cellsByName() map[string]cell {
	cells := map[string]cell{}
	for _, c := range gridCells() {
		cells[c.name] = c
	}
	return cells
}

func TestNATGrid(t *testing.T) {
	var (
		mu      sync.Mutex
		results []cellResult
	)
	sem := make(chan struct{}, gridParallel)
	// WARREN_GRID_ONLY (a regexp on "transport cell", e.g. "udp cone/",
	// or on "hard cell" for the repeated hard pairs) runs part of the grid
	// while developing; the report then covers only those cells.
	only := regexp.MustCompile(os.Getenv("WARREN_GRID_ONLY"))
	t.Run("cells", func(t *testing.T) {
		for _, transport := range gridTransports {
			for _, c := range gridCells() {
				if !only.MatchString(transport + " " + c.name) {
					continue
				}
				t.Run(transport+"/"+c.name, func(t *testing.T) {
					t.Parallel()
					sem <- struct{}{}
					defer func() { <-sem }()
					r := runCell(t, c, transport)
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
					want := expectation(c.name, transport)
					if want == "" {
						t.Fatalf("cell %s over %s has no expectation in gridExpect", c.name, transport)
					}
					if rank(r.outcome) < rank(want) {
						t.Errorf("outcome %s is worse than expected %s (%s)", r.outcome, want, r.note)
					}
					t.Logf("%s over %s: %s first byte %v setup %v %.0f Mbit/s %s %s", c.name, transport, r.outcome,
						r.firstByte.Round(time.Millisecond), r.setup.Round(time.Millisecond), r.mbps, r.note, r.choice)
				})
			}
		}
	})
	var hard, speed string
	t.Run("hard-pairs", func(t *testing.T) { hard = runHardPairs(t, only) })
	if only.MatchString("throughput") {
		t.Run("throughput", func(t *testing.T) { speed = runThroughput(t) })
	}
	if path := os.Getenv("WARREN_GRID_REPORT"); path != "" {
		if err := writeGridReport(path, results, hard+speed); err != nil {
			t.Fatal(err)
		}
		t.Logf("grid report written to %s", path)
	}
}

// rank orders outcomes: better is higher.
func rank(outcome string) int {
	switch outcome {
	case "direct-tcp", "direct-udp", "direct":
		return 2
	case "relay":
		return 1
	}
	return 0
}

// runCell builds the cell's lab, runs both daemons and measures.
func runCell(t testing.TB, c cell, transport string) cellResult {
	return runCellWith(t, c, cellOptions{transports: transport, size: throughputBytes, profile: gridProfile(t)})
}

// cellOptions are the knobs of runCellWith.
type cellOptions struct {
	transports string // the [link] transports, comma-separated
	linkExtra  string // more [link] settings, TOML lines
	size       int    // bytes of the checked transfer through the forward
	// iperf3, if set, also measures the link with iperf3 through a second
	// forward, for the given seconds, and reports that as the result's
	// throughput instead of the checked transfer's.
	iperf3 int
	// measure, if set, is called once the link is up and the checked
	// transfer went through, with an iperf3 forward and an echo forward
	// ready: the benchmarks' own measurements.
	measure func(cellRun)
	// clientFirst, if set, starts the client daemon alone and is called
	// with it running; the server daemon starts when it returns, and the
	// first byte is timed from then.
	clientFirst func(t testing.TB, client machine, clientAdmin string)
	// profile is what every site's uplink does (natlab.Config.Profile).
	// Default: the zero Profile, the lab with no emulator.
	profile natlab.Profile
	// echoFirst times the first byte through an echo forward instead of
	// the hashing service's, which answers only at the end of its input:
	// the echo answers the byte itself, a round trip sooner.
	echoFirst bool
}

// cellRun is a cell with both daemons up and linked, for measure.
type cellRun struct {
	client, server         machine
	clientProc, serverProc *process
	iperfFwd, echoFwd      string // forwards on the client to the server's iperf3 and echo services
	clientAdmin            string // the daemons' admin_listen
	serverAdmin            string
}

// runCellWith is runCell with options.
func runCellWith(t testing.TB, c cell, o cellOptions) cellResult {
	transport := o.transports
	r := cellResult{cell: c, transport: transport, outcome: "fail"}
	lab := labtest.New(t, natlab.Config{Profile: o.profile, IPv6: c.ipv6})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, server, err := c.build(ctx, lab)
	if err != nil {
		t.Fatal(err)
	}
	w := labWorld(t, lab)
	ck, sk := newKey(t, w.dir, "client"), newKey(t, w.dir, "server")
	svc := serveHasher(t, server)
	fwd := hostPort("127.0.0.1", freePort(t, client))
	var iperfFwd, iperfSvc, echoFwd, echoSvc string
	if o.iperf3 > 0 || o.measure != nil {
		iperfSvc = serveIperf3(t, server)
		iperfFwd = hostPort("127.0.0.1", freePort(t, client))
	}
	if o.measure != nil || o.echoFirst {
		echoSvc = serveEcho(t, server)
		echoFwd = hostPort("127.0.0.1", freePort(t, client))
	}
	clientAdmin := hostPort("127.0.0.1", freePort(t, client))
	serverAdmin := hostPort("127.0.0.1", freePort(t, server))
	// A punch timeout below cellLinkWait lets a failing cell report why.
	common := func(rvAddr string) string {
		return fmt.Sprintf("log_level = \"debug\"\n[rendezvous]\naddress = %q\npublic_key = %q\n"+
			"[link]\npunch_timeout = \"4s\"\ntransports = [%s]\n%s\n", rvAddr, w.rvKey, quoteList(transport), o.linkExtra)
	}
	clientRV := w.rvAddr
	if c.clientV6Only {
		clientRV = w.rvAddr6
	}
	serverCfg := fmt.Sprintf("key_file = \"server.key\"\nadmin_listen = %q\n%s\n[[peers]]\nname = \"client\"\npublic_key = %q\n"+
		"[[expose]]\nname = \"svc\"\ntarget = \"127.0.0.1:%s\"\npeers = [\"client\"]\n", serverAdmin, common(w.rvAddr), ck, svc)
	clientCfg := fmt.Sprintf("key_file = \"client.key\"\nadmin_listen = %q\n%s\n[[peers]]\nname = \"server\"\npublic_key = %q\n"+
		"[[forward]]\nlisten = %q\npeer = \"server\"\nservice = \"svc\"\n", clientAdmin, common(clientRV), sk, fwd)
	for _, f := range []struct{ name, svc, fwd string }{{"iperf3", iperfSvc, iperfFwd}, {"echo", echoSvc, echoFwd}} {
		if f.svc == "" {
			continue
		}
		serverCfg += fmt.Sprintf("[[expose]]\nname = %q\ntarget = \"127.0.0.1:%s\"\npeers = [\"client\"]\n", f.name, f.svc)
		clientCfg += fmt.Sprintf("[[forward]]\nlisten = %q\npeer = \"server\"\nservice = %q\n", f.fwd, f.name)
	}

	t0 := time.Now()
	var serverProc, clientProc *process
	if o.clientFirst == nil {
		o.clientFirst = c.clientFirst
	}
	if o.clientFirst != nil {
		clientProc = start(t, client, "client", "up", "-c", writeFile(t, w.dir, "client.toml", clientCfg))
		o.clientFirst(t, client, clientAdmin)
		t0 = time.Now()
		serverProc = start(t, server, "server", "up", "-c", writeFile(t, w.dir, "server.toml", serverCfg))
	} else {
		serverProc = start(t, server, "server", "up", "-c", writeFile(t, w.dir, "server.toml", serverCfg))
		clientProc = start(t, client, "client", "up", "-c", writeFile(t, w.dir, "client.toml", clientCfg))
	}

	// First byte: one byte through the forward, answered by the service.
	// On an emulated WAN path registering alone can take seconds (a lost
	// SYN is resent after 1 s, then 3), which is a slow first byte to
	// report, not a failed cell.
	wait := cellLinkWait
	if o.profile.Name != "" && o.profile.Name != "lan" {
		wait = cellWANLinkWait
	}
	fctx, fcancel := context.WithTimeout(ctx, wait)
	defer fcancel()
	first := func(ctx context.Context) error { return oneByte(ctx, client, fwd) }
	if o.echoFirst {
		first = func(ctx context.Context) error { return oneEcho(ctx, client, echoFwd) }
	}
	for fctx.Err() == nil {
		if err := first(fctx); err == nil {
			r.firstByteAt = time.Now()
			r.firstByte = r.firstByteAt.Sub(t0)
			break
		} else {
			r.note = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := status(ctx, client, clientAdmin)
	if err != nil {
		r.note = "status: " + err.Error()
		return r
	}
	// What each side classified itself as: a wrong verdict explains a
	// wrong strategy.
	r.nats = st.NAT + "/?"
	setupFrom := st // the client asks for the link as it starts
	if sst, err := status(ctx, server, serverAdmin); err == nil {
		r.nats = st.NAT + "/" + sst.NAT
		if o.clientFirst != nil {
			// The client asked before the server was there: the link's
			// setup starts with the server's request.
			setupFrom = sst
		}
	}
	p := st.Peers[0]
	if p.State != daemon.StateConnected || r.firstByte == 0 {
		r.note = p.State
		if p.Error != "" {
			r.note += ": " + p.Error
		}
		return r
	}
	r.outcome, r.note, r.remote = p.Path, "", p.Remote
	r.stream, r.choice = p.UDPStream, p.Choice
	if os.Getenv("WARREN_GRID_DEBUG") != "" && (r.firstByte > 2*time.Second || r.outcome == "relay") {
		t.Errorf("slow first byte %v or relayed (%s); logs follow", r.firstByte, r.outcome)
	}
	r.setup = time.Duration(setupFrom.Peers[0].SetupMs * float64(time.Millisecond))
	r.mbps = sendAndHash(t, client, fwd, o.size)
	if o.iperf3 > 0 {
		r.mbps = iperf3(t, client, iperfFwd, o.iperf3)
	}
	if o.measure != nil {
		o.measure(cellRun{client: client, server: server, clientProc: clientProc, serverProc: serverProc,
			iperfFwd: iperfFwd, echoFwd: echoFwd, clientAdmin: clientAdmin, serverAdmin: serverAdmin})
	}
	return r
}

func newKey(t testing.TB, dir, name string) string {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Save(filepath.Join(dir, name+".key")); err != nil {
		t.Fatal(err)
	}
	return k.Public().String()
}

func writeFile(t testing.TB, dir, name, body string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// oneByte sends one byte through the forward and checks the answer.
func oneByte(ctx context.Context, m machine, addr string) error {
	c, err := m.DialContext(ctx, &net.Dialer{}, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte("x"))
	if string(got) != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("no answer through the forward")
	}
	return nil
}

func writeGridReport(path string, results []cellResult, hard string) error {
	sort.Slice(results, func(i, j int) bool {
		if results[i].transport != results[j].transport {
			return results[i].transport > results[j].transport
		}
		return results[i].name < results[j].name
	})
	byName := map[string]cellResult{}
	for _, r := range results {
		byName[r.transport+" "+r.name] = r
	}
	var b strings.Builder
	profile, regen := "no emulated WAN (the lab's wire)", "WARREN_GRID_REPORT=$PWD/docs/natlab-grid.md"
	if name := os.Getenv("WARREN_GRID_PROFILE"); name != "" {
		profile = "natlab profile " + name + " on every uplink"
		regen = "WARREN_GRID_PROFILE=" + name + " WARREN_GRID_REPORT=$PWD/docs/natlab-grid-" + name + ".md"
	}
	fmt.Fprintf(&b, "# NAT lab grid\n\nMeasured %s at commit %s on %s (%d cores), %s.\n",
		time.Now().UTC().Format("2006-01-02"), gitCommit(), hostDesc(), runtime.NumCPU(), profile)
	b.WriteString("Regenerate: `" + regen + " go test ./e2e -run TestNATGrid -count=1 -timeout 60m` (as root).\n\n")
	b.WriteString("Rows: the client peer's NAT; columns: the server peer's NAT. Each cell: outcome, link setup time " +
		"(connect request to link up). Kinds are described in natlab/doc.go.\n\n")
	for _, transport := range gridTransports {
		writeMatrix(&b, transport, byName)
	}
	b.WriteString("\n## Every cell\n\n| transport | cell | outcome | expected at least | first byte | link setup | throughput | NATs as classified | note |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		tp := "-"
		if r.mbps > 0 {
			tp = fmt.Sprintf("%.0f Mbit/s", r.mbps)
		}
		fb, su := "-", "-"
		if r.outcome != "fail" {
			fb, su = ms(r.firstByte), ms(r.setup)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.transport, r.name, r.outcome, expectation(r.name, r.transport), fb, su, tp, r.nats,
			strings.ReplaceAll(shorten(r.note, 90), "|", "/"))
	}
	b.WriteString("\nFirst byte: from starting both daemons to the first byte answered through the forward " +
		"(includes process start and registration). Throughput: one " + strconv.Itoa(throughputBytes>>20) +
		" MiB transfer through the forward, a short figure, not a benchmark.\n")
	b.WriteString(hard)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// writeMatrix writes the kind-by-kind table for one transport.
func writeMatrix(b *strings.Builder, transport string, byName map[string]cellResult) {
	kinds := natlab.Kinds()
	fmt.Fprintf(b, "\n### %s\n\n| client \\ server |", strings.ToUpper(transport))
	for _, k := range kinds {
		fmt.Fprintf(b, " %s |", k)
	}
	b.WriteString("\n|---|")
	for range kinds {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, a := range kinds {
		fmt.Fprintf(b, "| **%s** |", a)
		for _, k := range kinds {
			r, ok := byName[transport+" "+string(a)+"/"+string(k)]
			switch {
			case !ok:
				b.WriteString(" - |")
			case r.outcome == "fail":
				b.WriteString(" fail |")
			default:
				fmt.Fprintf(b, " %s %s |", r.outcome, ms(r.setup))
			}
		}
		b.WriteString("\n")
	}
}

// quoteList turns "tcp,udp" into `"tcp", "udp"` for a TOML array.
func quoteList(csv string) string {
	parts := strings.Split(csv, ",")
	for i, p := range parts {
		parts[i] = fmt.Sprintf("%q", p)
	}
	return strings.Join(parts, ", ")
}
