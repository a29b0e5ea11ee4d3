// Package link owns a peer link: one authenticated, encrypted, multiplexed
// session with one peer, built from raw byte streams that punching (or a
// relay) produced. It authenticates each candidate connection once, with
// TLS 1.3 and both keys pinned: its own TLS over the connection, or, for a
// connection whose transport already ran that handshake with the link's
// TLSConfig (QUIC, which says so by implementing Secured), the transport's,
// so that no byte is encrypted twice. Either way one check, verifyPeer,
// decides who the other end is. It nominates exactly one candidate (the
// peer with the lower key decides, so both ends agree without another
// round trip), and runs yamux over the winner: inside its TLS, or straight
// on a secured transport's stream. Streams it returns are net.Conns whose CloseWrite and
// Close behave as a TCP socket's shutdown(SHUT_WR) and close(2) do: a
// half-closed stream stays readable for as long as the peer sends, and a
// closed one resets a peer that sends into it or does not finish its side
// within StreamCloseTimeout. Abort is close(2) with SO_LINGER 0: the peer
// reads what came before, then a reset. yamux v0.1.2 does none of this, so
// the link follows the frame boundaries in what yamux reads, slips resets
// of its own in, and marks an aborted stream's FIN with a flag of its own
// that yamux ignores (yamuxFlagAbort).
//
// The TLS session that authenticated the link (its own, or QUIC's) is also
// the source of keys for whatever must be authenticated between the two
// ends after the link is up, below the link:
// a UDP path's roam announcements (which move the path to a new peer
// endpoint) are keyed through its exporter (RFC 5705, RFC 8446 section
// 7.5), handed to the nominated candidate's connection if it implements
// Keyed, and available as Link.ExportKeyingMaterial. Nothing else a link
// depends on is keyed by the punch session, which the rendezvous server
// issued and which crosses the wire in clear.
//
// What a peer can make this end hold is bounded per link by memory, not by
// a small stream count: many idle streams are cheap, and a forward must
// carry 10,000 connections to one peer (MaxStreams is 16,384, a ceiling
// on bookkeeping). The bytes a peer sends and no one reads are what cost:
// yamux gives each stream a window of 256 KiB that no update announces
// and that grows to StreamWindow once the stream is read, and bounds no
// sum, so 256 streams to a target that never reads held 1 GiB. Capping
// streams × window would have left 256 streams (or 16 at full windows);
// rewriting yamux's window updates could not take back the implicit 256
// KiB of each new stream. So the link counts what the peer sent and no
// one read, over all its streams (ReceiveBudget, 64 MiB), as each frame
// header goes by, and swallows a frame that would go over it before yamux
// buffers a byte of it: yamux reads a reset of the stream in its place,
// and the peer is sent one. A stream keeps within its window as before;
// only streams the peer fills while the whole link is full are reset. A
// stream this end closed that the peer never finishes keeps its place
// under MaxStreams until it is reset (StreamCloseTimeout).
//
// Link neither knows nor cares how the bytes below it travel (TCP, UDP or a
// relay); it must not dial, listen, punch, or interpret stream contents.
package link
