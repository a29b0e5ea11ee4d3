package punch

import "golang.org/x/sys/unix"

// linearTimeouts keeps a punched connection's retransmission timeout from
// doubling while few segments are in flight (the kernel's "thin stream"
// mode). After a NAT forgets its mappings, the path opens again only when
// the far side sends; with exponential backoff its next retransmission
// can come 6 s or more later, with linear timeouts within a few hundred
// milliseconds. Bulk transfers are not thin and keep the usual backoff.
func linearTimeouts(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS, 1)
}
