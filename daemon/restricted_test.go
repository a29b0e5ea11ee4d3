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
	log := logrus.New()
	log.SetOutput(t.Output())
	log.SetLevel(logrus.WarnLevel)
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

	dir := t.TempDir()
	conf := fmt.Sprintf("key_file = \"d.key\"\ncreate_key = true\nadmin_listen = \"off\"\n[rendezvous]\naddress = %q\npublic_key = %q\n",
		ln.Addr(), rvKey.Public())
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
	defer d.Close()
	want := rendezvous.RestrictionText(rendezvous.RestrictedNoUDP)
	waitUntil(t, ctx, "status to say no UDP", func() bool { return d.Status().Network == want })
	if st := d.Status(); !strings.HasPrefix(st.RendezvousRoute, "direct "+ln.Addr().String()) {
		t.Errorf("route %q, want direct to %s", st.RendezvousRoute, ln.Addr())
	}
}
