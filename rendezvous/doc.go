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
//   - Relays: a cross-node session's punch instructions name the
//     coordinating node (its ClusterConfig.Public, the `relay` field of
//     `punch`) as the relay of both sides. That node issued the session
//     and made both tokens with its own secret, so it checks a relay
//     connection exactly as a single server does, from its own memory,
//     asking no one; no secret is shared between nodes and no relay state
//     crosses NATS. Same-node sessions relay at their node as before. The
//     cost: the relay is the asker's node, not the one nearest both peers.
//     Choosing per pair (the node minimising the larger of the two RTTs,
//     under 80% of its relay capacity, from load every node publishes)
//     needs an authorisation any node verifies: an Ed25519 signature by
//     the issuing node over session ID, both keys, both sides and an
//     expiry, carried in a longer relay header (`WRR\x03`), verified
//     against the cluster's node keys. That, and load publishing, are not
//     built yet.
//   - Keys: every node holds the same server key (copy one key file to
//     each), so a daemon pins one public_key whichever node it reaches.
//     Pinning a list per node was the other choice; one key keeps
//     daemons' configs unchanged when nodes are added, and a node is as
//     trusted as the server it replaces anyway.
//   - Daemons list the nodes (`[rendezvous] addresses`). The client
//     ranks them by the round trip of one UDP probe each (500 ms at most;
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
//     again through a living one.
//
// Messages between nodes are JSON (clusterMsg). Nodes trust each other:
// whoever joins the NATS can read asks and answers, so the cluster's NATS
// must be private (cluster_secret_file for embedded routes, credentials
// and TLS for an existing deployment).
package rendezvous
