// Package rendezvous owns the rendezvous server and the client protocol
// peers use to reach it: registration over a TLS 1.3 control connection on
// which both ends prove their keys, observing each peer's public endpoint,
// and coordinating punch sessions between two registered peers. It also
// answers UDP probes with the address they came from.
//
// # Networks that only let HTTPS out
//
// The server may also listen on a fallback TCP address
// (ServerConfig.FallbackListen, typically port 443), served exactly like
// its others. Dialer opens every connection a daemon makes to the
// server, control and relay alike, so that both go the same way: the
// configured address first, the fallback (the same host on 443 unless
// configured) once that failed or after a 250 ms head start, and through
// an HTTP proxy with CONNECT when one is set. A control connection that
// needed the fallback or a proxy marks the network restricted
// (NATReport.Restricted) until UDP probes are answered, and peers then
// open the relay at once.
//
// A control connection stays a plain TLS 1.3 handshake from its first
// byte, with no HTTP in front (no CONNECT to the server itself, no
// WebSocket upgrade): the server tells control connections from probes
// and relays by that first byte, and a middlebox that lets port 443
// through sees what it expects there, a ClientHello. What it can read of
// a TLS 1.3 handshake is the ClientHello alone (the server's answer past
// ServerHello is encrypted), so that is what is made to look like HTTPS:
// the client offers the ALPN protocols a browser offers, "h2" and
// "http/1.1", and names the server in SNI when its address is a name.
// The server selects "http/1.1", which is true to what the protocol is
// (one ordered byte stream) and which a client offering both accepts;
// its choice travels encrypted. It does not select "h2": a client that
// gets "h2" must speak HTTP/2 framing, and a TLS-terminating middlebox
// that believed it would break the connection. Clients that offer no
// ALPN (older daemons) are served as before. Relay connections and TCP
// probes keep their own headers: a middlebox that inspects beyond the
// handshake would stop them (and such networks are out of reach of any
// protocol that is not HTTP itself).
//
// # IPv6
//
// Listening on "[::]:port" serves both families. A dual-stack peer
// registers over IPv4, where its NAT is, and has the server observe its
// IPv6 address too (observe6.go: a TCP connection from its shared port
// with a token its registration got); a punch passes it on when both peers
// have one. Behind routers that do no NAT66, that is a direct path
// whatever the IPv4 NATs are; their stateful firewalls let it through
// because both sides send.
//
// The server is trusted for addresses only. It never sees what peers carry
// and cannot impersonate a peer: peers authenticate each other with pinned
// keys in the link layer. This package must not dial peers, punch, or carry
// peer traffic. The wire format is in spec.md.
//
// # Clustering
//
// A server alone (ServerConfig.Cluster nil, `warren rendezvous` without
// clustering flags) is the whole service and touches no NATS. With a
// ClusterConfig it is one node of a cluster whose nodes talk over NATS,
// either a server embedded in each node (internal/natsnode; routes
// between the nodes, a password from cluster_secret_file) or an existing
// deployment. The design, and why:
//
//   - Presence is a subscription. The node a peer registers with
//     subscribes to warren.peer.<key> for as long as the peer's control
//     connection lasts; nothing else records where a peer is. NATS
//     already knows which server holds which subscription and forgets a
//     dead node's with its routes, so there is no directory to keep
//     consistent or to clean after a crash: a node that dies loses only
//     its connections, and its peers re-register elsewhere.
//   - A connect for a key registered on another node is a NATS request
//     to that subject ("ask"). The key's node asks the peer exactly as
//     on one node (consent.go) and answers only on consent, with the
//     peer's observed endpoint, LAN candidates, NAT report and RTT. Every
//     "no" stays silent, so the asker's node sees a refusal, a timeout
//     and "no responders" (the key registered nowhere: NATS says so at
//     once) alike, and answers its peer "offline" when ConsentWait has
//     passed, as on one node: an asker still learns nothing of a peer
//     that does not list it, not even which node has it.
//   - A key registering on a node publishes "evict" on its subject before
//     subscribing. A node holding an older registration of the key tells
//     it `replaced` and closes it, as a re-registration on one node does;
//     a node holding a newer one (by its clock, ties to the higher node
//     name) answers with its own evict, so the newer wins everywhere.
//   - The asker's node coordinates a cross-node session: it issues the
//     session ID and both relay tokens, sends its own peer the punch
//     instruction, and publishes the other's to the other node's subject
//     warren.node.<name> ("start"), which sends it on. Each peer sends its
//     session probes (UDP and TCP) to the node it registered with; a node
//     that receives one for a session another node coordinates passes it
//     there ("probe"), and the coordinating node sends each side its
//     second step (the other's node gets it as "udp"). NAT
//     classification needs nothing shared: each node answers its own
//     peers' probes, and NAT reports travel with the ask's answer and the
//     punch instruction. When both peers of a cross-node pair ask at once,
//     the ask of the key that sorts lower makes the session and the other
//     is dropped, as PairWindow does on one node.
//   - Relays: every node relays, and for each pair the node that
//     coordinates its session (the asker's) chooses where: the node
//     that minimises the larger of the two peers' round trips to it,
//     among nodes under 80% of their relay load, compared in 10 ms
//     steps (nodes about as near are as good, and the coordinator, then
//     the nodes by name, keeps the relay rather than noise moving it);
//     if no such node was measured by both peers, the coordinator itself
//     while it is under 80%, else the least loaded node. A node with
//     relaying off publishes no load and is chosen by no other. The larger round trip, not the
//     sum (the relayed link's round trip): for nodes that lie between
//     the two peers the sum is about the same, and the larger picks the
//     one neither peer is far from, whose legs each lose less to loss
//     and queueing; a node far from both loses on both counts.
//   - Load: each node publishes on warren.load, every LoadInterval (2
//     s), its relays under way against MaxRelays and the bytes per
//     second it relayed against RelayCapacity (relay_capacity, 100
//     MiB/s); its load is the larger share. Every node keeps the others'
//     latest and forgets a node not heard from for three of its
//     intervals, or at once when it says it leaves (a node stopping
//     does): a dead node is out of the choice within 6 s even if it
//     crashed. A load is a few seconds old at worst, so a burst of
//     sessions can take a node past 80% before the others know; the cap
//     is a preference, and MaxRelays still refuses past 100%.
//   - Round trips: daemons already probe every node they list, over UDP,
//     to rank them (below); they report what they measured, by address
//     as configured, in `register` (`rtts`), and a node adds its own
//     ping's round trip for itself. The node matches the addresses to
//     the nodes' Public (so Public must be spelled as daemons list the
//     node), and passes its peer's with the ask's answer. Daemons measure
//     when they rank (at start, and once every node was tried), not
//     continuously: round trips to fixed servers change little, and more
//     probes would cost every daemon for every node. A peer could lie
//     about its round trips; that moves only its own pairs' relays,
//     which it could as well make slow itself. A peer that reports none
//     (one `address`, or a daemon of before the choice, which could not
//     open a relay elsewhere) is relayed by the coordinating node.
//   - Authorisation: at the coordinating node, a relay opens with tokens
//     as on a single server (from its own memory, `WRR\x02`). At another
//     node, each side gets an authorisation instead: an Ed25519 signature
//     with the server key over the session ID, the side, both keys, the
//     chosen node's name and an expiry (RelayWindow, 1 min), carried in
//     a longer relay header (`WRR\x03`). The chosen node verifies it with
//     its own public key and name, asking no one: no relay state crosses
//     NATS, and a node that did not issue the session needs nothing in
//     memory but the sessions already relayed on authorisations (until
//     they expire), so that each serves one pair, once. Like a token,
//     the authorisation crosses only its key's TLS control connection,
//     so it binds the relay to that key and bills that key; it names
//     its side, so a peer holding the other side's cannot open a side
//     not its own. Signed with the shared server key rather than keys
//     of each node's own: every node holds that key already, so there
//     are no node keys to distribute, announce over NATS (where a forged
//     announcement would be a forged key) or revoke, and per-node keys
//     would add no safety, since a node that leaked its key has leaked
//     the server key with it. The signed bytes begin with a context of
//     their own ("warren relay authorisation v1"), which no TLS 1.3
//     signature begins with, so neither can stand for the other. Nodes'
//     clocks must agree to well within RelayWindow (NTP).
//   - Keys: every node holds the same server key (copy one key file to
//     each), so a daemon pins one public_key whichever node it reaches.
//     Pinning a list per node was the other choice; one key keeps
//     daemons' configs unchanged when nodes are added, and a node is as
//     trusted as the server it replaces anyway.
//   - Daemons list the nodes (`[rendezvous] addresses`). The client
//     ranks them by the round trip of UDP probes (the smallest of three
//     rounds, so that a stall does not reorder them; 500 ms at most;
//     10 ms steps, so nodes about as near keep the configured order, and
//     silent ones go last), registers with the first and, when its
//     connection ends for any reason other than `replaced`, dials the
//     next at once; once every node was tried it ranks them again, and
//     only then backs off. A node that dies takes its TCP connections
//     with it, so its peers move within a second; a machine that
//     vanishes without a reset is noticed by the keepalive (3 pings, 45
//     s). Links between peers do
//     not go through the rendezvous server, so a node's death costs them
//     nothing; a relayed link through the dead node ends and is punched
//     again, its relay chosen among the living nodes.
//
// Messages between nodes are JSON (clusterMsg). Nodes trust each other:
// whoever joins the NATS can read asks and answers, so the cluster's NATS
// must be private (cluster_secret_file for embedded routes, credentials
// and TLS for an existing deployment).
package rendezvous
