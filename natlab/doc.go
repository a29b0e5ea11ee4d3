// Package natlab builds and tears down a lab of real Linux NATs made of
// network namespaces, veth pairs, bridges and nftables rules, so that real
// warren binaries (or in-process sockets, see Host.Do) can be tested behind
// the kinds of NAT peers meet on the internet.
//
// A Lab has an "internet" segment (a bridge inside its own namespace, using
// the documentation prefix 203.0.113.0/24) on which the rendezvous server
// host sits with two addresses, and any number of sites. A site is a router
// namespace running a NAT of a chosen Kind with one or more host namespaces
// behind it, or, for Kind Open, a host directly on the internet. AddDoubleNAT
// puts a carrier NAT in front of a home NAT. Knobs: random packet loss on
// the internet segment, short UDP conntrack timeouts in the routers, and
// Site.Forget, which flushes a router's conntrack table as a NAT that
// forgets its mappings would.
//
// Addressing plan (fixed, so that tests and people can reason about it):
//
//	internet        203.0.113.0/24, bridge hub0 in PREFIX-inet
//	  203.0.113.1   the segment's gateway and sink (drops what it receives)
//	  203.0.113.2   server (PREFIX-srv), first address
//	  203.0.113.3   server, second address (for mapping-behaviour tests)
//	  203.0.113.10+ router WAN addresses and Open hosts, in order of creation
//	site number i (1, 2, ... in order of creation):
//	  10.i.0.0/24   the site's LAN: router .1, hosts .2, .3, ..., busy host .200
//	  100.64.i.0/24 a double NAT's carrier segment: carrier router .1,
//	                home router's WAN .2, carrier busy host .200
//
// Namespaces are named PREFIX-inet (the internet bridge), PREFIX-srv (the
// server), PREFIX-NAME (hosts), PREFIX-NAME-r (a site's router, the home
// router of a double NAT), PREFIX-NAME-cgn (a double NAT's carrier router)
// and ROUTER-busy (the background host behind a symseq-busy router). Device names
// are fixed and short (hub0, wan0, lan0, eth0, pN): every device lives only
// in the lab's own namespaces, so labs cannot collide on device names, and
// nothing is ever created in, or routed to, the root namespace. The default
// prefix is "wl" plus four random hex digits; Cleanup("wl") removes every
// lab made with a default prefix.
//
// Programs run on a lab host with Host.Command (`ip netns exec`), and test
// code can open sockets on it in-process with Host.Do, Host.ListenPacket,
// Host.Listen and Host.DialContext.
//
// Every lab's namespaces go when it is closed, when building it fails or is
// cancelled, and (through package labtest) when a test is interrupted or
// reaches its deadline. A process killed outright cannot clean up: Labs
// lists the labs on the machine with their owner process, Reap removes
// those whose owner is gone, and Cleanup removes namespaces by prefix.
//
// natlab owns building and tearing down lab topologies and the background
// processes it starts for them. It must not contain warren logic: it knows
// nothing of rendezvous, punching or links, and tests of those live in their
// own packages, using this one (see package labtest).
//
// Site.StartPortMapper makes a site's router also grant port mappings to
// its LAN (UPnP IGD, NAT-PMP, PCP, or one alone) with a real miniupnpd,
// which the lab owns like its other helpers; the lab's server answers
// miniupnpd's STUN test (see stun.go for why it needs one).
//
// Everything here needs root, iproute2, nftables and conntrack; Available
// says what is missing. StartPortMapper also needs miniupnpd
// (miniupnpd-nftables).
package natlab
