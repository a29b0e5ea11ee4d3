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
// The server is trusted for addresses only. It never sees what peers carry
// and cannot impersonate a peer: peers authenticate each other with pinned
// keys in the link layer. This package must not dial peers, punch, or carry
// peer traffic. The wire format is in spec.md.
package rendezvous
