// Package transport turns an already-punched UDP socket into reliable,
// congestion-controlled byte streams, and shares that socket with the other
// packet users of the daemon's port. It has two ways to do it: KCP, below,
// and QUIC (QUICSocket, see quic.go), which batches sends and receives and
// is several times faster.
//
// A Demux takes ownership of one *net.UDPConn. Its single read goroutine
// routes every datagram by its first bytes: datagrams that start with a
// prefix registered with Handle (punch and keepalive packets, which all
// start with 'W') go to that prefix's handler; every other datagram is a
// KCP packet and goes to the stream whose conversation ID and remote
// address it carries. Dial opens such a stream: a *Conn, a net.Conn running
// KCP (github.com/xtaci/kcp-go/v5) over the shared socket. KCP is
// symmetric, so both peers call Dial with the same conversation ID; there
// is no listener and no handshake. spec.md beside this file is the wire
// contract: the conversation ID rule that keeps KCP packets apart from
// prefixed ones, and the small control packets (keepalive, close, reset)
// that give KCP the end-of-stream and dead-peer signals it lacks.
//
// transport must not speak TLS or yamux (the link layer runs both above a
// Conn), decide which peer address to punch or keep, or talk to the
// rendezvous server. It encrypts and authenticates nothing of its own: the
// link layer's TLS does that (QUIC's handshake uses the TLS configuration
// its caller passes in).
package transport
