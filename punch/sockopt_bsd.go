//go:build unix && !linux

package punch

// linearTimeouts is a Linux option; elsewhere retransmissions back off as
// the system decides.
func linearTimeouts(fd int) error { return nil }
