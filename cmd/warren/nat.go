package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/portmap"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// cmdNat classifies the NAT in front of this machine once, against a
// rendezvous server's UDP probe endpoints, as NatTypeTester does against
// STUN servers: the same probes and verdict a daemon uses before it punches.
func cmdNat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("nat", stderr)
	path := fs.String("c", "", "take the server's address from this daemon config `FILE` ([rendezvous] address)")
	server := fs.String("rendezvous", "", "the server's `ADDR` (its -listen host:port; default: the config's)")
	alt := fs.String("alt", "", "the server's -alt-listen `ADDR`, if it has one: needed to tell mapping behaviours apart")
	asJSON := fs.Bool("json", false, "print the verdict and samples as JSON")
	pm := fs.Bool("portmap", true, "also ask the router which port mapping protocols (UPnP IGD, NAT-PMP, PCP) it offers; nothing is mapped")
	admin := fs.String("admin", "", "also show the port mapping a running daemon got, from its admin_listen `ADDR` (default with -c: the config's)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *server == "" && *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			return configErr(err)
		}
		*server = cfg.Rendezvous.Address
		if *admin == "" {
			*admin = cfg.AdminListen
		}
	}
	if *server == "" {
		return usagef("-rendezvous ADDR or -c FILE is required")
	}
	eps, err := rendezvous.ProbeEndpoints(*server, *alt)
	if err != nil {
		return usageError{err}
	}
	var servers []netip.AddrPort
	for _, ep := range eps {
		ua, err := net.ResolveUDPAddr("udp", ep)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", ep, err)
		}
		servers = append(servers, netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), ua.AddrPort().Port()))
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	offer := make(chan *portMapReport, 1)
	if *pm {
		go func() { offer <- probePortMapping(ctx) }() // in parallel with the NAT probes
	} else {
		offer <- nil
	}
	nat, samples, err := rendezvous.Discover(ctx, rendezvous.DiscoverConfig{Servers: servers})
	pmr := <-offer
	var got *daemonMapping
	if *admin != "" {
		got = daemonPortMapping(ctx, *admin)
	}
	if err != nil {
		return fmt.Errorf("no answer from %s over UDP (is it a warren rendezvous server, and is UDP open?): %w", *server, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		r := newNATReport(nat, samples)
		r.PortMapping, r.Daemon = pmr, got
		return enc.Encode(r)
	}
	printNAT(stdout, servers, nat, samples, pmr, got)
	return nil
}

// portMapReport is what the router offers for port mapping.
type portMapReport struct {
	Gateway     string   `json:"gateway,omitempty"`
	Protocols   []string `json:"protocols"`
	UPnPService string   `json:"upnp_service,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// probePortMapping asks the default gateway which port mapping protocols
// it answers, within portmap's short probe timeout.
func probePortMapping(ctx context.Context) *portMapReport {
	r := &portMapReport{Protocols: []string{}}
	c, err := portmap.New(portmap.Config{}, nil)
	if err == nil {
		var o portmap.Offer
		o, err = c.Probe(ctx)
		if o.Gateway.IsValid() {
			r.Gateway = o.Gateway.String()
		}
		for _, p := range o.Protocols {
			r.Protocols = append(r.Protocols, string(p))
		}
		r.UPnPService = o.UPnPService
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// daemonMapping is what a running daemon got from the router, as its
// status API says (with the API's error, if it did not answer).
type daemonMapping struct {
	Admin string `json:"admin"`
	*daemon.PortMappingStatus
	// Off is true when the daemon runs with port_mapping = false.
	Off        bool   `json:"off,omitempty"`
	AdminError string `json:"admin_error,omitempty"`
}

// daemonPortMapping asks the daemon at admin for its port mapping.
func daemonPortMapping(ctx context.Context, admin string) *daemonMapping {
	dm := &daemonMapping{Admin: admin}
	body, err := adminGet(ctx, admin, "/status")
	var st daemon.Status
	if err == nil {
		err = json.Unmarshal(body, &st)
	}
	switch {
	case err != nil:
		dm.AdminError = err.Error()
	case st.PortMapping == nil:
		dm.Off = true
	default:
		dm.PortMappingStatus = st.PortMapping
	}
	return dm
}

// String is the daemon's line in `warren nat`.
func (dm *daemonMapping) String() string {
	switch {
	case dm.AdminError != "":
		return "- (" + dm.AdminError + ")"
	case dm.Off:
		return "- (port_mapping = false)"
	}
	return portMappingText(dm.PortMappingStatus)
}

// String is the report's line in `warren nat`.
func (r *portMapReport) String() string {
	switch {
	case r.Error != "":
		return "- (" + r.Error + ")"
	case len(r.Protocols) == 0:
		return "none offered by " + r.Gateway
	}
	s := strings.Join(r.Protocols, ", ")
	if r.UPnPService != "" {
		s += " (UPnP " + r.UPnPService + ")"
	}
	return s + " by " + r.Gateway
}

// natReport is `warren nat -json`: snake_case names throughout, as in the
// status API.
type natReport struct {
	NAT        string      `json:"nat"`
	Mapping    string      `json:"mapping"`
	Allocation string      `json:"allocation"`
	Delta      int         `json:"delta,omitempty"`
	Public     string      `json:"public_ip"`
	Samples    []natSample `json:"samples"`
	// PortMapping is absent with -portmap=false.
	PortMapping *portMapReport `json:"port_mapping,omitempty"`
	// Daemon is the running daemon's own mapping, with -admin or -c.
	Daemon *daemonMapping `json:"daemon_port_mapping,omitempty"`
}

// natSample is one probe: from which local address, to which server
// endpoint, and the address the server saw.
type natSample struct {
	Local  string `json:"local"`
	Server string `json:"server"`
	Mapped string `json:"mapped"`
}

func newNATReport(nat punch.NAT, samples []punch.Sample) natReport {
	r := natReport{NAT: nat.String(), Mapping: string(nat.Mapping), Allocation: string(nat.Allocation),
		Delta: nat.Delta, Public: nat.PublicIP.String(), Samples: []natSample{}}
	for _, s := range samples {
		r.Samples = append(r.Samples, natSample{Local: s.Local.String(), Server: s.Server.String(), Mapped: s.Mapped.String()})
	}
	return r
}

func printNAT(w io.Writer, servers []netip.AddrPort, nat punch.NAT, samples []punch.Sample, pm *portMapReport, got *daemonMapping) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NAT\t%s\n", nat)
	fmt.Fprintf(tw, "public address\t%s\n", orDash(nat.PublicIP.String()))
	fmt.Fprintf(tw, "mapping\t%s\n", orDash(string(nat.Mapping)))
	alloc := orDash(string(nat.Allocation))
	if nat.Allocation == punch.AllocationSequential {
		alloc += fmt.Sprintf(" (step %+d)", nat.Delta)
	}
	fmt.Fprintf(tw, "port allocation\t%s\n", alloc)
	fmt.Fprintf(tw, "probed\t%v\n", servers)
	if len(servers) < 2 {
		fmt.Fprintf(tw, "\t(one endpoint: give -alt to tell mapping behaviours apart)\n")
	}
	if pm != nil {
		fmt.Fprintf(tw, "port mapping\t%s\n", pm)
	}
	if got != nil {
		fmt.Fprintf(tw, "daemon's mapping\t%s (%s)\n", got, got.Admin)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCAL\tSERVER\tSEEN AS")
	for _, s := range samples {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Local, s.Server, s.Mapped)
	}
	tw.Flush()
}
