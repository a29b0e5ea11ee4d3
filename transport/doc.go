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
// transport must not speak yamux (the link layer runs it above a stream),
// decide which peer address to punch or keep, or talk to the rendezvous
// server. KCP encrypts and authenticates nothing: the link layer runs its
// TLS over a Conn. QUIC's handshake runs with the TLS configuration its
// caller passes in (the link's, both keys pinned), and is then the UDP
// link's only authentication and encryption: the link checks it
// (QUICStream.TLSState) and runs no TLS of its own inside QUIC's.
//
// # Lossy paths: why KCP runs without a congestion window
//
// Loss-based congestion control reads every lost packet as congestion. On
// a path that loses packets for other reasons (radio, busy Wi-Fi) it never
// opens its window: by the Mathis bound ~1 Mbit/s at 100 ms and 2% loss,
// whatever the capacity. Measured with e2e's BenchmarkLossy (one iperf3
// stream through a forward between two cone sites on natlab profiles,
// against plain kernel TCP over the same path in the same run):
//
//   - KCP with its own congestion window (this package's default until
//     issue 14) carried nothing on "mobile" (90 ms, 2% loss in runs, 20
//     Mbit/s): kcp-go drops its window to one packet on every timeout and
//     retransmissions are not limited by the window, so the path's queue
//     overflowed with retransmissions until the link's keepalive gave up.
//     In process (wanpath_test.go) it carried 1.3-1.7 Mbit/s on a
//     mobile-like path and 4 on a bad-Wi-Fi-like one.
//   - Without it (Config.CongestionWindow false, as kcptun and frp's KCP
//     mode run kcp-go), the send window alone bounds what is in flight:
//     12 Mbit/s on "mobile" in the lab (60% of capacity; 13-14 in
//     process) and 39 on "bad-wifi" (48-150 in process), 10-30 times
//     more. The cost: on a path slower than SendWindow*MTU per round trip
//     a stream fills the bottleneck's queue and loses what overflows, as
//     frp does; the 1024-packet window keeps that to ~1.4 MB per round trip.
//   - QUIC stays on quic-go's CUBIC, which v0.65 does not let a caller
//     replace (its congestion package is internal): 0.4 Mbit/s on
//     "mobile", 2 on "bad-wifi", 13 on "broadband" (0.1% loss). QUIC is
//     still the faster stream on a clean path (989 against 139 Mbit/s on
//     "lan" in the same run), so ChooseStream picks per path, from measured
//     round trip and loss: QUIC where the Mathis bound of its CUBIC stays
//     above what KCP can carry, KCP elsewhere.
//
// # Choosing per path: udp_stream "auto"
//
// The default [link] udp_stream, "auto", makes the controlling peer
// measure each punched path before it nominates it: a train of 48 pings
// (16 when their answers say the path is a LAN) whose pongs echo them (punch/spec.md), paced like every punch packet, taking a few
// milliseconds on a LAN and about a round trip and a half plus 20 ms on a
// long clean path; on a long lossy path it ends at the first lost ping,
// about a round trip in, as more pings could not change the choice. EstimateQuality turns the counts into a
// PathQuality (the smallest round trip; the loss, at least
// LossFloorPercent), and ChooseStream picks. The floor is there because a
// short train cannot tell a clean path from one losing 1% (on the lab's
// bursty "mobile" profile a train of 48 sees no loss about half the time),
// while the difference decides QUIC's ceiling. With it the choice comes
// down to this: QUIC on paths under about 2 ms (a LAN), unless
// the train saw real loss there; KCP on every longer path, which is what
// the lab measured as faster on each of its WAN profiles, broadband
// included (38 against 18 Mbit/s). The choice travels in the nomination,
// so both ends run the same stream, and status shows what it was made from.
//
// Between a UDP and a direct TCP link (package session's race) the lab's
// numbers decide too. Warren's TCP link carries the kernel's TCP (CUBIC
// with SACK and RACK), which recovers from the lab's bursty loss far
// better than the Mathis bound: on "bad-wifi" (20 ms) it carried 67-154
// Mbit/s against KCP's 39-66, on "broadband" 65-74 against 36-39, on
// "mobile" (90 ms) 12-17 against 12-14. So the race prefers the UDP link
// only on a path that lost probes and is at least 50 ms long, where each
// loss costs a TCP link the most round trips and KCP loses nothing
// against it; everywhere else direct TCP keeps its head start.
//
// Plain kernel TCP (CUBIC with SACK and RACK) does far better than the
// Mathis bound on the lab's bursty loss (18 of 20 Mbit/s on "mobile", ~100
// on "bad-wifi"), so the "4x plain TCP" cannot be met there; warren's
// direct TCP link, though, carried 14-17 Mbit/s on "bad-wifi", and KCP 39.
//
// # Why KCP is for lossy paths only
//
// On a clean path KCP carries a fraction of what QUIC does (the lab's
// forward: ~400 against ~1,800 Mbit/s on an idle machine; 20-29 against
// 314 MB/s in BenchmarkKCPThroughput and BenchmarkQUICThroughput on
// loopback, same run), and it will stay there while it shares the
// punched socket: a CPU profile of BenchmarkKCPThroughput spends 56% in
// system calls, one sendto per KCP packet (kcp-go's defaultTx, 44%) and
// one recvfrom per packet (21%). kcp-go batches with sendmmsg and
// recvmmsg only on a *net.UDPConn it is handed, and a KCP stream here is
// handed the Demux's packetConn, since the socket also carries punch
// packets, keepalives and QUIC; quic-go batches through the same Demux
// because it reaches the socket itself (SyscallConn: GSO and recvmmsg).
// Doubling KCP on a clean path would take a socket of its own per stream
// (a second socket on the punched port, connected to the peer, which
// Linux prefers for that peer's packets) or a fork of kcp-go; neither is
// worth it for a stream that ChooseStream picks only where loss, not
// packet rate, bounds it.
//
// Forward error correction (kcp-go's Reed–Solomon) is still off: it puts a
// 6-byte header in front of KCP's, moving the conversation ID the Demux
// routes by (spec.md section 1) and the sequence numbers packetConn reads
// to know what the peer has acknowledged. Turning it on needs the wire
// format to carry the conv ahead of the FEC header. Without it the stream
// already reaches the 60% of capacity on "mobile"; FEC would mostly
// save retransmission round trips (latency), not throughput.
package transport
