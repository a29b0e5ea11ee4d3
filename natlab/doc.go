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
// the internet segment, short UDP conntrack timeouts in the routers,
// Site.Forget, which flushes a router's conntrack table as a NAT that
// forgets its mappings would, and each site's uplink profile (below).
//
// # Uplinks: the WAN between the NATs
//
// A site built with a Profile (Config.Profile for every site, WithProfile
// for one) has an emulator on its uplink: between its edge (the router's
// WAN device, a double NAT's carrier router, an Open site's first host) and
// the internet bridge sits a namespace, PREFIX-SITE-wan, holding two veth
// ends (in0 towards the site, out0 towards the bridge) and a helper
// process, the lab's own binary run again (see wire_linux.go), that moves
// Ethernet frames between them over AF_PACKET sockets, in batches. Per
// direction (Profile.Up from the site, Profile.Down towards it) it applies,
// in order: a rate limit with a bounded tail-drop queue (bufferbloat),
// random loss, Gilbert–Elliott bursty loss, delay and jitter (order kept
// unless Path.Reorder); and the uplink's MTU, beyond which IPv4 packets
// with DF are dropped and answered with ICMP "fragmentation needed" from
// 203.0.113.1, or dropped silently with Profile.DropICMP (a PMTU black
// hole); packets without DF are fragmented. ARP passes at once and is
// never lost, since on a real uplink it never crosses the WAN (and a lost
// ARP request would stall a flow for a second). Site.SetProfile changes
// a site's profile while traffic flows. The kernel has no netem; this
// emulator is what the lab has instead. It carries a few hundred Mbit/s
// unimpaired (offloads are off on every device it touches, so its frames
// are at most 1514 bytes) and adds the machine's scheduling latency to
// every delay (well under a millisecond on an idle machine, a few on a
// loaded one). A lab from `natlab up` keeps its emulators until
// `natlab down`; otherwise they stop with Close or with the process that
// built the lab.
//
// The named profiles (LookupProfile, `natlab profiles`) describe the path
// between two peers whose sites both have the profile: a packet crosses
// the sender's uplink up and the receiver's down, so a round trip crosses
// four uplink directions and each gets a quarter of the round trip's
// delay and of its jitter, and each uplink direction loses p' such that
// two crossings lose the profile's one-way p (1-(1-p')² = p). A site with
// a profile talking to the server or to a site without one sees half the
// round trip. The rate and MTU apply to each uplink whole, so the path has
// the profile's capacity. Profile.RoundTrip and Profile.Capacity give the
// nominal figures of a path between any two profiles.
//
//	profile           RTT            one-way loss          rate        MTU
//	lan               (no emulator)
//	clean             0              0                     unlimited   1500
//	broadband         30 ms          0.1% random           100 Mbit/s  1500
//	intercontinental  200 ms         0.5% random           unlimited   1500
//	mobile            90 ms ±20 ms   2% in runs of 3       20 Mbit/s   1400
//	bad-wifi          20 ms          5% in runs of 4       unlimited   1500
//	blackhole-mtu     0              0                     unlimited   1280, ICMP dropped
//
// Where the numbers come from: broadband from the FCC's Measuring
// Broadband America reports (cable and fibre round trips of 15-35 ms to
// nearby servers, loss well under 1%) and a common 100 Mbit/s tier;
// intercontinental from published inter-region ping tables (WonderNetwork:
// Europe-US West and US-Asia 150-250 ms) with the loss transoceanic paths
// show at busy hours; mobile from Opensignal's and Ookla's LTE reports
// (latency 50-120 ms, jitter in the tens of ms, 1-3% loss in bursts as the
// radio retransmits and hands over, 10-30 Mbit/s) and the 1400-byte MTU of
// carriers that tunnel (GTP, 464XLAT); bad-wifi from measurements of
// crowded 2.4 GHz Wi-Fi (short round trips, loss of a few percent in runs
// of several frames during interference); blackhole-mtu from RFC 2923 and
// RFC 4821 (tunnels and PPPoE lower the MTU, and filtering ICMP hides it).
// The issue that asked for them (14) gives the same ranges.
//
// Addressing plan (fixed, so that tests and people can reason about it):
//
//	internet        203.0.113.0/24, bridge hub0 in PREFIX-inet
//	  203.0.113.1   the segment's gateway and sink (drops what it receives)
//	  203.0.113.2   server (PREFIX-srv), first address
//	  203.0.113.3   server, second address (for mapping-behaviour tests)
//	                UDP 3478+2(i-1) and the next port on both: site i's port
//	                mapper's STUN test (StartPortMapper)
//	  203.0.113.10+ router WAN addresses and Open hosts, in order of creation
//	site number i (1, 2, ... in order of creation):
//	  10.i.0.0/24   the site's LAN: router .1, hosts .2, .3, ..., busy host .200
//	  100.64.i.0/24 a double NAT's carrier segment: carrier router .1,
//	                home router's WAN .2, carrier busy host .200
//	with Config.IPv6 (`natlab up -ipv6`), beside the above:
//	  2001:db8::/64     the internet segment: hub ::1 (routes between the
//	                    sites' prefixes), server ::2 and ::3, router WANs
//	                    and Open hosts 2001:db8::1:N for 203.0.113.N
//	  2001:db8:i::/64   site i's LAN, routed, not translated: router ::1,
//	                    hosts 2001:db8:i::N for 10.i.0.N; the router is a
//	                    stateful firewall (what the LAN opens may answer,
//	                    nothing from outside may open; RFC 6092), as home
//	                    routers ship. Double NATs stay IPv4-only. A site
//	                    made with IPv6Only keeps its IPv4 LAN but has
//	                    no IPv4 route beyond it (an IPv6-only network).
//
// Namespaces are named PREFIX-inet (the internet bridge), PREFIX-srv (the
// server), PREFIX-NAME (hosts), PREFIX-NAME-r (a site's router, the home
// router of a double NAT), PREFIX-NAME-cgn (a double NAT's carrier router),
// PREFIX-NAME-wan (a site's uplink emulator) and ROUTER-busy (the
// background host behind a symseq-busy router). Device names
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
// Two site kinds model networks that let little out (RestrictedKinds,
// egress.go): HTTPSOnly, whose router forwards only TCP to port 443 and
// DNS out of its LAN and drops the rest silently, and ProxyOnly, whose
// router forwards nothing out of its LAN and runs a real tinyproxy on
// its LAN address (ProxyPort, Site.Proxy) that lets CONNECT through to
// port 443 only. Both NAT like Cone. The proxy is the lab's, like its
// other helpers: Close kills it.
//
// Everything here needs root, iproute2, nftables, conntrack and ethtool;
// Available says what is missing. StartPortMapper also needs miniupnpd
// (miniupnpd-nftables), and ProxyOnly sites tinyproxy.
package natlab
