//go:build linux

package natlab_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestIPv6OnlySite: a site made IPv6Only reaches the server over IPv6 and
// not over IPv4; only single-NAT sites of a dual-stack lab can be one.
func TestIPv6OnlySite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{IPv6: true})
	v, err := lab.AddSite(ctx, "v", natlab.SymRand, natlab.IPv6Only())
	if err != nil {
		t.Fatal(err)
	}
	if !v.IPv6Only() {
		t.Error("site v does not say it is IPv6-only")
	}
	srv := lab.Server()
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := srv.Addr()
		if network == "tcp6" {
			addr = srv.Addr6()
		}
		ln, err := srv.Listen(network, net.JoinHostPort(addr.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := v.Host().DialContext(ctx, &net.Dialer{Timeout: 3 * time.Second}, network, ln.Addr().String())
		if network == "tcp6" && err != nil {
			t.Errorf("IPv6-only site to the server over IPv6: %v", err)
		}
		if network == "tcp4" && err == nil {
			t.Errorf("IPv6-only site reached the server over IPv4 from %v", c.LocalAddr())
		}
		if c != nil {
			c.Close()
		}
	}
	if _, err := lab.AddSite(ctx, "o", natlab.Open, natlab.IPv6Only()); err == nil {
		t.Error("an Open site was made IPv6-only")
	}
	if _, err := lab.AddDoubleNAT(ctx, "d", natlab.Cone, natlab.Cone, natlab.IPv6Only()); err == nil {
		t.Error("a double NAT was made IPv6-only")
	}
	plain := labtest.New(t, natlab.Config{})
	if _, err := plain.AddSite(ctx, "w", natlab.Cone, natlab.IPv6Only()); err == nil {
		t.Error("an IPv6-only site was made in a lab without IPv6")
	}
}
