// Package forward carries application traffic over peer links.
//
// It owns:
//
//   - the stream request protocol (spec.md): after opening a stream to a
//     peer, the opener sends a Request (an exposed service by name, or a
//     TCP host:port) and the peer answers with a Reply whose codes are the
//     SOCKS5 reply codes; then raw bytes flow both ways;
//   - the local side (Listeners): [[socks]] SOCKS5 listeners (CONNECT and
//     UDP ASSOCIATE, host names passed to the exit unresolved, optional
//     RFC 1929 username/password) and [[forward]] static TCP and UDP port
//     forwards (a stream per UDP client address, closed when idle), whose
//     connections become streams through an Opener (Dial); Reload swaps
//     their configuration, keeping what did not change bound;
//   - the exit side (Server, Policy): reading requests from inbound
//     streams, the deny-by-default ACL built from [[peers]] (exit,
//     targets) and [[expose]], name resolution at the exit with every
//     resolved address checked before it is dialled, dialing, and mapping
//     failures to reply codes;
//   - joining a connection to a stream, with half-close passed through
//     (CloseWrite) and failures passed on as resets (the copy buffers are
//     internal/bufcopy's), and datagrams framed over streams (spec.md,
//     "Datagram streams").
//
// It must not touch links, transports, hole punching or identities. It
// sees a link only as "open a stream to peer X" (the Opener interface,
// implemented by the daemon) and "serve this inbound stream from peer X"
// (Server.ServeStream, called by the daemon). Streams are plain net.Conns;
// half-close works when they offer CloseWrite() error.
//
// Package forwardtest provides an in-process Opener for tests.
package forward
