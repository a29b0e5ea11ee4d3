package natlab_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// serveTCP answers every connection to addr on the server with "hi".
func serveTCP(t *testing.T, lab *natlab.Lab, addr string) {
	t.Helper()
	ln, err := lab.Server().Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// dialFrom dials addr from h, giving up after wait.
func dialFrom(h *natlab.Host, addr string, wait time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return h.DialContext(ctx, &net.Dialer{}, "tcp", addr)
}

// udpAnswered reports whether a UDP echo on the server answers h.
func udpAnswered(t *testing.T, lab *natlab.Lab, h *natlab.Host, port int) bool {
	t.Helper()
	srv := lab.Server().Addrs()[0]
	pc, err := lab.Server().ListenPacket("udp", netip.AddrPortFrom(srv, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	c, err := h.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(srv, uint16(port)))
	for range 3 {
		c.WriteTo([]byte("ping"), to)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := c.ReadFrom(make([]byte, 64)); err == nil {
			return true
		}
	}
	return false
}

// restrictedSite builds a lab whose server answers TCP on 443 and 7777,
// with a site of kind, and returns the server's address.
func restrictedSite(t *testing.T, kind natlab.Kind) (*natlab.Lab, string, *natlab.Site) {
	t.Helper()
	lab := labtest.New(t, natlab.Config{})
	srv := lab.Server().Addrs()[0].String()
	serveTCP(t, lab, srv+":443")
	serveTCP(t, lab, srv+":7777")
	site, err := lab.AddSite(context.Background(), "a", kind)
	if err != nil {
		t.Fatal(err)
	}
	return lab, srv, site
}

func TestHTTPSOnlySite(t *testing.T) {
	t.Parallel()
	lab, srv, site := restrictedSite(t, natlab.HTTPSOnly)
	h := site.Host()
	c, err := dialFrom(h, srv+":443", 3*time.Second)
	if err != nil {
		t.Fatalf("TCP 443 from an https-only site: %v", err)
	}
	c.Close()
	// Other ports are dropped silently: the dial runs into its timeout.
	if c, err := dialFrom(h, srv+":7777", 500*time.Millisecond); err == nil {
		c.Close()
		t.Error("TCP 7777 got through an https-only site")
	} else if !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("TCP 7777: %v, want a timeout (dropped, not refused)", err)
	}
	if udpAnswered(t, lab, h, 7777) {
		t.Error("UDP got through an https-only site")
	}
	if udpAnswered(t, lab, h, 443) {
		t.Error("UDP 443 got through an https-only site")
	}
	if site.Proxy() != "" {
		t.Errorf("https-only site has a proxy %q", site.Proxy())
	}
	// The control: a cone site lets UDP out, so the probe above can
	// tell.
	cone, err := lab.AddSite(context.Background(), "b", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	if !udpAnswered(t, lab, cone.Host(), 7777) {
		t.Error("UDP from a cone site unanswered: the probe proves nothing")
	}
}

// connectVia asks the proxy at proxy (http://host:port) from h for a
// tunnel to target and returns the status line and, on 200, the first
// bytes through it.
func connectVia(t *testing.T, h *natlab.Host, proxy, target string) (status, got string) {
	t.Helper()
	c, err := dialFrom(h, strings.TrimPrefix(proxy, "http://"), 3*time.Second)
	if err != nil {
		t.Fatalf("dial proxy %s: %v", proxy, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	status, err = br.ReadString('\n')
	if err != nil {
		t.Fatalf("proxy answer: %v", err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	if strings.Contains(status, " 200 ") {
		b := make([]byte, 2)
		n, _ := br.Read(b)
		got = string(b[:n])
	}
	return strings.TrimSpace(status), got
}

func TestProxyOnlySite(t *testing.T) {
	t.Parallel()
	lab, srv, site := restrictedSite(t, natlab.ProxyOnly)
	h := site.Host()
	if want := "http://10.1.0.1:8888"; site.Proxy() != want {
		t.Fatalf("Proxy() = %q, want %q", site.Proxy(), want)
	}
	// Nothing goes out directly, not even to 443.
	if c, err := dialFrom(h, srv+":443", 500*time.Millisecond); err == nil {
		c.Close()
		t.Error("TCP 443 got out of a proxy-only site without the proxy")
	}
	if udpAnswered(t, lab, h, 7777) {
		t.Error("UDP got out of a proxy-only site")
	}
	// Through the proxy: 443 only.
	if status, got := connectVia(t, h, site.Proxy(), srv+":443"); got != "hi" {
		t.Errorf("CONNECT %s:443: %q, read %q; want the server's answer", srv, status, got)
	}
	if status, got := connectVia(t, h, site.Proxy(), srv+":7777"); strings.Contains(status, " 200 ") || got != "" {
		t.Errorf("CONNECT %s:7777: %q, want a refusal", srv, status)
	}

	// The proxy belongs to the lab: gone with it.
	out, err := site.Routers()[0].Run(context.Background(), "sh", "-c", "ip netns identify $$ >/dev/null; for p in /proc/[0-9]*; do [ \"$(readlink $p/exe)\" = /usr/bin/tinyproxy ] && [ \"$(readlink $p/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ] && echo ${p#/proc/}; done; true")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no tinyproxy in the router's namespace (%q)", out)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == "/usr/bin/tinyproxy" {
				t.Errorf("tinyproxy %d outlived the lab", pid)
			}
		}
	}
}
