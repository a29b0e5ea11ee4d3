package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/rendezvous"
)

// A daemon whose UDP probes get no answer, though its control connection
// went the direct way, says in status that no UDP gets out here (and
// sends links to the relay at once, as for the routes e2e tests).
func TestUnansweredProbesRestrict(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := warnLog(t)
	// The server advertises a UDP endpoint that swallows every probe.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	rvKey, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rendezvous.NewServer(rendezvous.ServerConfig{Key: rvKey, Log: log, UDPEndpoints: []string{silent.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { srv.Serve(ctx, ln) })

	d := startLone(t, ctx, log, fmt.Sprintf("address = %q\npublic_key = %q\n", ln.Addr(), rvKey.Public()))
	want := rendezvous.RestrictionText(rendezvous.RestrictedNoUDP)
	waitUntil(t, ctx, "status to say no UDP", func() bool { return d.Status().Network == want })
	if st := d.Status(); !strings.HasPrefix(st.RendezvousRoute, "direct "+ln.Addr().String()) {
		t.Errorf("route %q, want direct to %s", st.RendezvousRoute, ln.Addr())
	}
}

// startLone starts a daemon with no peers whose [rendezvous] section is
// rv, closed when the test ends.
func startLone(t *testing.T, ctx context.Context, log logrus.FieldLogger, rv string) *Daemon {
	t.Helper()
	dir := t.TempDir()
	conf := "key_file = \"d.key\"\ncreate_key = true\nadmin_listen = \"off\"\n[rendezvous]\n" + rv
	path := filepath.Join(dir, "d.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// A daemon that reached the server only on its fallback port, but whose
// UDP probes are answered, is not restricted once it knows: UDP gets out,
// so direct paths are worth trying.
func TestAnsweredProbesLiftTheFallbacksRestriction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := warnLog(t)
	rvKey, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rendezvous.NewServer(rendezvous.ServerConfig{Key: rvKey, Log: log, FallbackListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	bound := make(chan []net.Addr, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { srv.ListenAndServe(ctx, "127.0.0.1:0", "", func(a []net.Addr) { bound <- a }) })
	var fallback string
	select {
	case addrs := <-bound:
		fallback = addrs[1].String() // listen's TCP, then the fallback's
	case <-ctx.Done():
		t.Fatal("server did not bind")
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	d := startLone(t, ctx, log, fmt.Sprintf("address = %q\nfallback_address = %q\npublic_key = %q\n", closed.Addr(), fallback, rvKey.Public()))
	waitUntil(t, ctx, "NAT classified", func() bool { _, ok := d.nat.get(); return ok })
	st := d.Status()
	if !strings.HasPrefix(st.RendezvousRoute, "fallback "+fallback) {
		t.Errorf("route %q, want the fallback %s", st.RendezvousRoute, fallback)
	}
	if st.Network != "" {
		t.Errorf("network %q once UDP probes were answered, want none", st.Network)
	}
}
