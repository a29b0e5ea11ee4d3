package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/warren-p2p/warren/config"
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *server == "" && *path != "" {
		cfg, err := config.Load(*path)
		if err != nil {
			return configErr(err)
		}
		*server = cfg.Rendezvous.Address
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
	nat, samples, err := rendezvous.Discover(ctx, rendezvous.DiscoverConfig{Servers: servers})
	if err != nil {
		return fmt.Errorf("no answer from %s over UDP (is it a warren rendezvous server, and is UDP open?): %w", *server, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(newNATReport(nat, samples))
	}
	printNAT(stdout, servers, nat, samples)
	return nil
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

func printNAT(w io.Writer, servers []netip.AddrPort, nat punch.NAT, samples []punch.Sample) {
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
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCAL\tSERVER\tSEEN AS")
	for _, s := range samples {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Local, s.Server, s.Mapped)
	}
	tw.Flush()
}
