package natlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// PortMapper is what a site's router offers to hosts that ask it for a
// port mapping: a real miniupnpd (Debian's miniupnpd-nftables) on the
// router, serving the LAN.
type PortMapper string

const (
	// PortMapAll offers UPnP IGD (v2, with v1 clients served too), NAT-PMP
	// and PCP.
	PortMapAll PortMapper = "all"
	// PortMapUPnP offers UPnP IGD only (v2: WANIPConnection:2, with
	// AddAnyPortMapping).
	PortMapUPnP PortMapper = "upnp"
	// PortMapUPnPv1 offers UPnP IGD only, describing itself as an IGD v1
	// (WANIPConnection:1, AddPortMapping only), as older routers do.
	PortMapUPnPv1 PortMapper = "upnp1"
	// PortMapNATPMP offers NAT-PMP only. miniupnpd 2.3 serves NAT-PMP and
	// PCP on one socket with one switch (enable_natpmp), so the router
	// drops PCP requests (version 2) before they reach it.
	PortMapNATPMP PortMapper = "natpmp"
	// PortMapPCP offers PCP only: the router drops NAT-PMP requests
	// (version 0).
	PortMapPCP PortMapper = "pcp"
)

// PortMappers returns every PortMapper, in a fixed order.
func PortMappers() []PortMapper {
	return []PortMapper{PortMapAll, PortMapUPnP, PortMapUPnPv1, PortMapNATPMP, PortMapPCP}
}

// upnp and pmp report whether pm serves UPnP IGD, and NAT-PMP or PCP.
func (pm PortMapper) upnp() bool { return pm == PortMapAll || pm == PortMapUPnP || pm == PortMapUPnPv1 }
func (pm PortMapper) pmp() bool  { return pm == PortMapAll || pm == PortMapNATPMP || pm == PortMapPCP }

// Fixed places of the router's miniupnpd.
const (
	upnpHTTPPort = 5000
	pmpPort      = 5351
	stunBasePort = 3478 // site i's STUN responder: 3478+2(i-1) and the next port
	mapperReady  = 15 * time.Second
)

// StartPortMapper starts a miniupnpd on the site's router offering pm to
// the site's LAN. It maps only for the asking host's own address (secure
// mode) and only ports 1024-65535. The process belongs to the lab: Close
// kills it, and its rules go with the router's namespace. The site must
// have one router (not Open, not a double NAT), and the lab must not be a
// Detach one (`natlab up`): miniupnpd needs this process to own it.
func (s *Site) StartPortMapper(ctx context.Context, pm PortMapper) error {
	l := s.lab
	ctx, stop := l.op(ctx)
	defer stop()
	if _, err := exec.LookPath("miniupnpd"); err != nil {
		return fmt.Errorf("natlab: site %s: port mapper: miniupnpd missing (apt-get install -y miniupnpd-nftables)", s.name)
	}
	if l.cfg.Detach {
		// A detached lab outlives this process, and miniupnpd's log and
		// pid file would have no owner left.
		return fmt.Errorf("natlab: site %s: port mapper: not in a detached lab", s.name)
	}
	if len(s.routers) != 1 {
		return fmt.Errorf("natlab: site %s: port mapper: wants a site with one router", s.name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("natlab: site %s: port mapper: lab is closed", s.name)
	}
	if err := l.startPortMapperLocked(ctx, s, pm); err != nil {
		return fmt.Errorf("natlab: site %s: port mapper %s: %w", s.name, pm, err)
	}
	return nil
}

// PortMapperRules returns the rules the site's port mapper holds now (its
// nft table on the router): each mapping it granted is a rule naming the
// mapped port ("dport PORT"), and one it deleted is gone.
func (s *Site) PortMapperRules(ctx context.Context) (string, error) {
	out, err := s.Exec(ctx, "nft", "list", "table", "inet", "miniupnpd")
	if err != nil {
		return "", fmt.Errorf("natlab: site %s: port mapper rules: %w", s.name, err)
	}
	return string(out), nil
}

func (l *Lab) startPortMapperLocked(ctx context.Context, s *Site, pm PortMapper) error {
	conf, rules, err := portMapperSetup(s, pm)
	if err != nil {
		return err
	}
	r := s.routers[0]
	if _, err := r.Run(ctx, "nft", "list", "table", "inet", "miniupnpd"); err == nil {
		return errors.New("the router has one already")
	}
	port := uint16(stunBasePort + 2*(s.index-1))
	if _, err := startSTUN(l.done, l.server, port); err != nil {
		return err
	}
	if err := nft(ctx, r.name, rules); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	dir, err := os.MkdirTemp("", "natlab-"+r.name+"-")
	if err != nil {
		return err
	}
	// miniupnpd refuses to start while another's pid file names a live
	// process, so each has its own; it reads it only at start, so the
	// directory goes once it has started.
	defer os.RemoveAll(dir)
	cmd := exec.Command("ip", "netns", "exec", r.name, "miniupnpd", "-d", "-f", "/dev/stdin",
		"-P", filepath.Join(dir, "miniupnpd.pid"))
	cmd.Stdin = strings.NewReader(conf)
	cmd.SysProcAttr = ownSession()
	// A pipe of our own, not StderrPipe: the log is read until miniupnpd
	// exits, independently of the Wait that ownLocked does.
	logs, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		logs.Close()
		return fmt.Errorf("start miniupnpd: %w", err)
	}
	mark := l.markLocked()
	l.ownLocked(cmd)
	ready := make(chan error, 1)
	go func() { // ends when miniupnpd exits, which closes the pipe
		defer logs.Close()
		watchMiniupnpd(logs, pm, ready)
	}()
	t := time.NewTimer(mapperReady)
	defer t.Stop()
	select {
	case err = <-ready:
	case <-t.C:
		err = fmt.Errorf("miniupnpd not ready within %v", mapperReady)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil { // no half-started mapper left behind
		return errors.Join(err, l.undoLocked(mark))
	}
	return nil
}

// watchMiniupnpd reads miniupnpd's log until it ends, and reports on
// ready once the STUN test enabled port forwarding and the services pm
// needs listen, or the reason it will not be.
func watchMiniupnpd(logs io.Reader, pm PortMapper, ready chan<- error) {
	need := map[string]bool{"unrestricted": true}
	if pm.pmp() {
		need["Listening for NAT-PMP/PCP"] = true
	}
	if pm.upnp() {
		need["HTTP listening on port"] = true
	}
	var tail []string
	sc := bufio.NewScanner(logs)
	for sc.Scan() {
		line := sc.Text()
		if need == nil {
			continue // drained so that miniupnpd never blocks on its log
		}
		tail = append(tail[max(0, len(tail)-9):], line)
		for k := range need {
			if strings.Contains(line, k) {
				delete(need, k)
			}
		}
		if strings.Contains(line, "restrictive or symmetric") || strings.Contains(line, "EXITING") {
			ready <- fmt.Errorf("miniupnpd will not map: %s", strings.Join(tail, " | "))
			need = nil
		} else if len(need) == 0 {
			ready <- nil
			need = nil
		}
	}
	if need != nil {
		ready <- fmt.Errorf("miniupnpd exited: %s", strings.Join(tail, " | "))
	}
}

// portMapperSetup returns miniupnpd's config and the router's nft rules
// for site s offering pm.
func portMapperSetup(s *Site, pm PortMapper) (conf, rules string, err error) {
	var drop string
	switch pm {
	case PortMapAll, PortMapUPnP, PortMapUPnPv1:
	case PortMapNATPMP:
		drop = "2" // PCP's version byte
	case PortMapPCP:
		drop = "0" // NAT-PMP's
	default:
		return "", "", fmt.Errorf("unknown port mapper %q", pm)
	}
	srv := s.lab.server.Addrs()
	stun := stunBasePort + 2*(s.index-1)
	conf = miniupnpdConfig(pm, s.lanPrefix().Masked(), netip.AddrPortFrom(srv[0], uint16(stun)))
	rules = portMapperRules(srv[0].String(), srv[1].String(), stun, drop)
	return conf, rules, nil
}

// miniupnpdConfig returns the config of a miniupnpd offering pm to LAN
// lan, whose STUN test asks stun. Its tables and chains are those
// portMapperRules makes.
func miniupnpdConfig(pm PortMapper, lan netip.Prefix, stun netip.AddrPort) string {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var uuid [16]byte
	_, _ = rand.Read(uuid[:]) // crypto/rand.Read never fails
	return fmt.Sprintf(`ext_ifname=%s
listening_ip=%s
http_port=%d
enable_upnp=%s
enable_natpmp=%s
force_igd_desc_v1=%s
ext_perform_stun=yes
ext_stun_host=%s
ext_stun_port=%d
secure_mode=yes
system_uptime=yes
min_lifetime=1
uuid=%x-%x-%x-%x-%x
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 %s 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, wanDev, lanDev, upnpHTTPPort, yes(pm.upnp()), yes(pm.pmp()), yes(pm == PortMapUPnPv1),
		stun.Addr(), stun.Port(), uuid[:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:], lan)
}

// portMapperRules returns the nft script for a router with miniupnpd: the
// chains miniupnpd fills (its own table, as its nft_init.sh makes them,
// with its source NAT ahead of the router's so that a mapped port keeps
// its external port outbound), the router's forward chain letting
// mapped (DNATed) flows in, its input chain letting the STUN answers in,
// and for a single-protocol router a drop of the other protocol's
// requests (by version byte: the first payload byte).
func portMapperRules(srv1, srv2 string, stun int, dropVersion string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `table inet miniupnpd {
	chain forward {
		type filter hook forward priority filter; policy accept;
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority srcnat - 1; policy accept;
		jump postrouting_miniupnpd
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
insert rule ip natlab forward ct status dnat accept
insert rule ip natlab input iifname %q ip saddr { %s, %s } udp sport { %d, %d } accept
`, wanDev, srv1, srv2, stun, stun+1)
	if dropVersion != "" {
		fmt.Fprintf(&b, "insert rule ip natlab input iifname %q udp dport %d @th,64,8 %s drop\n", lanDev, pmpPort, dropVersion)
	}
	return b.String()
}
