package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// warnLog returns a logger that writes warnings and worse to the test's
// output.
func warnLog(t *testing.T) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(t.Output())
	log.SetLevel(logrus.WarnLevel)
	return log
}

// startRendezvous runs a rendezvous server on loopback until the test ends
// and returns its address and key.
func startRendezvous(t *testing.T, log logrus.FieldLogger) (net.Addr, identity.PublicKey) {
	t.Helper()
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rendezvous.NewServer(rendezvous.ServerConfig{Key: key, Relay: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx, "127.0.0.1:0", "", func(a []net.Addr) { bound <- a[0] }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-bound:
		return a, key.Public()
	case err := <-done:
		t.Fatalf("rendezvous server: %v", err)
	}
	return nil, identity.PublicKey{}
}

// TestHostilePeerCannotAimPunches performs the steering attack of a lying
// peer against a real daemon: it reports LAN candidates at this host's
// loopback (127.0.0.2, where it keeps a TCP and a UDP trap) and probes its
// punch session from the UDP trap, so that the server passes the trap on
// as its session socket. The daemon sends the trap nothing: no TCP
// connection, no datagram.
func TestHostilePeerCannotAimPunches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := warnLog(t)
	rvAddr, rvKey := startRendezvous(t, log.WithField("node", "rendezvous"))

	trapTCP, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this host: %v", err)
	}
	defer trapTCP.Close()
	trapUDP, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer trapUDP.Close()
	var conns, datagrams atomic.Int64
	go func() {
		for {
			c, err := trapTCP.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()

	mallory, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`key_file = "victim.key"
create_key = true
[rendezvous]
address = %q
public_key = %q
[[peers]]
name = "mallory"
public_key = %q
`, rvAddr, rvKey, mallory.Public())
	path := filepath.Join(dir, "victim.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	victim, err := New(cfg, log.WithField("node", "victim"))
	if err != nil {
		t.Fatal(err)
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer victim.Close()

	punched := runMallory(t, ctx, mallory, rvAddr.String(), rvKey, victim.PublicKey(), trapTCP.Addr(), trapUDP, log)
	select {
	case <-punched:
	case <-ctx.Done():
		t.Fatal("no punch session with the victim")
	}
	// The victim punches for a few seconds; whatever reaches the trap in
	// that time is what it was steered into.
	trapUDP.SetReadDeadline(time.Now().Add(4 * time.Second))
	buf := make([]byte, 1500)
	for {
		if _, _, err := trapUDP.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		datagrams.Add(1)
	}
	if conns.Load() != 0 || datagrams.Load() != 0 {
		t.Fatalf("the victim sent the loopback trap %d TCP connections and %d datagrams", conns.Load(), datagrams.Load())
	}
}

// runMallory registers the lying peer, reports a NAT that invites a
// prediction spray, asks for a session with victim and probes it from
// trapUDP. The returned channel closes once the session probe is done.
func runMallory(t *testing.T, ctx context.Context, key identity.PrivateKey, addr string, rvKey, victim identity.PublicKey,
	trapTCP net.Addr, trapUDP *net.UDPConn, log logrus.FieldLogger) <-chan struct{} {
	t.Helper()
	punches := make(chan rendezvous.Punch, 1)
	servers := make(chan []netip.AddrPort, 1)
	c, err := rendezvous.NewClient(rendezvous.ClientConfig{
		Address: addr, ServerKey: rvKey, Key: key,
		LAN:          func() []netip.AddrPort { return []netip.AddrPort{trapTCP.(*net.TCPAddr).AddrPort()} },
		OnPunch:      func(p rendezvous.Punch) { putNewest(punches, p) },
		OnUDP:        func(rendezvous.UDPInfo) {},
		OnRegistered: func(udp []netip.AddrPort) { putNewest(servers, udp) },
		Log:          log.WithField("node", "mallory"),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	runDone := make(chan struct{})
	go func() { defer close(runDone); c.Run(ctx) }()
	t.Cleanup(func() { <-runDone })
	go func() {
		var udp []netip.AddrPort
		select {
		case udp = <-servers:
		case <-ctx.Done():
			return
		}
		c.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent, Allocation: punch.AllocationPreserved,
			PublicIP: netip.MustParseAddr("127.0.0.2")})
		for ctx.Err() == nil {
			c.Connect(victim)
			select {
			case pu := <-punches:
				id, err := punch.ParseSessionID(pu.Session)
				if err != nil {
					return
				}
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				rendezvous.ProbeSession(pctx, trapUDP, net.UDPAddrFromAddrPort(udp[0]), id, pu.Side)
				cancel()
				close(done)
				return
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
		}
	}()
	return done
}
