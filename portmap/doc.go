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
//
// The paths a mapping opens (daemon/portmap.go, punch.Choose): with
// [link] port_mapping on (the default), the daemon maps its shared punch
// port, TCP and UDP (the same port number), and sends both external
// endpoints in its NAT report (mapped_tcp, mapped_udp: rendezvous/spec.md).
// Where the two NATs leave TCP nothing to do (symrand against any
// symmetric NAT, cone against symrand), the peer connects from its shared
// port to the TCP mapping (punch.TCPConnectMapped) and the router forwards
// the connection to the punch port, where it is taken like any punched
// connection (punch.TCPAcceptMapped). Where they leave UDP nothing to do,
// both sides ping (punch.RoleDirect): the peer pings the UDP mapping,
// which the router forwards to this side's session socket, bound to the
// mapped port while no other session holds it (session.UDP.Port); this
// side answers, and if it controls, pings the source of the peer's ping
// back (a triggered check), since its own pings towards a symmetric NAT
// are dropped. A direct link where the pair would relay, over either
// transport. A peer uses a mapping only at the address the rendezvous
// server observed.
package portmap
