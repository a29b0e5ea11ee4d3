package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/rendezvous"
)

// loopbackPair runs a rendezvous server and two daemons on loopback, as
// warren demo does: "laptop" and "home", each config being the common
// part (key_file, admin_listen on a port of its own, [rendezvous])
// followed by extra[name], in which PEER_KEY stands for the other's
// public key. The daemons are closed at the end of the test.
func loopbackPair(t *testing.T, ctx context.Context, extra map[string]string) (laptop, home *Daemon) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(t.Output())
	log.SetLevel(logrus.WarnLevel)
	dir := t.TempDir()
	rvKey, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := rendezvous.NewServer(rendezvous.ServerConfig{Key: rvKey, Relay: true, Log: log.WithField("node", "rendezvous")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	bound := make(chan net.Addr, 1)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.ListenAndServe(ctx, "127.0.0.1:0", "", func(a []net.Addr) { bound <- a[0] }) }()
	t.Cleanup(func() { cancel(); <-srvDone })
	var rvAddr net.Addr
	select {
	case rvAddr = <-bound:
	case err := <-srvDone:
		t.Fatalf("rendezvous server: %v", err)
	}
	keys := map[string]identity.PublicKey{}
	for _, n := range []string{"laptop", "home"} {
		k, _, err := identity.LoadOrCreate(filepath.Join(dir, n+".key"))
		if err != nil {
			t.Fatal(err)
		}
		keys[n] = k.Public()
	}
	other := map[string]string{"laptop": "home", "home": "laptop"}
	daemons := map[string]*Daemon{}
	for _, n := range []string{"home", "laptop"} {
		conf := fmt.Sprintf("key_file = %q\nadmin_listen = \"127.0.0.1:0\"\n[rendezvous]\naddress = %q\npublic_key = %q\n",
			n+".key", rvAddr, rvKey.Public()) + strings.ReplaceAll(extra[n], "PEER_KEY", keys[other[n]].String())
		path := filepath.Join(dir, n+".toml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(path, []byte(conf))
		if err != nil {
			t.Fatalf("%s config: %v", n, err)
		}
		d, err := New(cfg, log.WithField("node", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		daemons[n] = d
	}
	return daemons["laptop"], daemons["home"]
}

// linked waits until laptop and home both report their link up.
func linked(t *testing.T, ctx context.Context, laptop, home *Daemon) {
	t.Helper()
	waitUntil(t, ctx, "both links up", func() bool {
		return peerState(laptop, "home").State == StateConnected && peerState(home, "laptop").State == StateConnected
	})
}

// serveReply runs a TCP service on loopback that answers each connection
// with reply after its first read, until the test ends.
func serveReply(t *testing.T, reply string) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Read(make([]byte, 64))
				io.WriteString(c, reply)
			}()
		}
	}()
	return ln.Addr()
}
