// Package portmap asks the local router for a port mapping of one local
// port, so that peers on the internet can reach it unsolicited: with UPnP
// IGD (v1 and v2: WANIPConnection:1/2, WANPPPConnection:1), NAT-PMP
// (RFC 6886) and PCP (RFC 6887, MAP opcode, IPv4). Map probes all three at
// once and maps with whichever answers first, as Tailscale's portmapper
// does; a Mapping renews its lease at half its lifetime and reports a
// changed external endpoint; Close deletes what was made, within a bounded
// time.
//
//	c, err := portmap.New(portmap.Config{}, log)
//	m, err := c.Map(ctx, portmap.UDP, 41641)
//	fmt.Println(m.Protocol(), m.External())
//	defer c.Close(ctx)
//
// portmap owns the wire formats of NAT-PMP and PCP (hand-written, fuzzed),
// SSDP discovery of an IGD (the SOAP calls are github.com/huin/goupnp's),
// finding the default gateway, and the lifetime of the mappings it made. It
// maps only the port it is asked for, never a range, never another host,
// and never touches anything else on the router. It must not know about
// peers, punching or links: the daemon decides what to map and offers the
// result as a candidate.
package portmap
