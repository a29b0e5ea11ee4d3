//go:build windows

package punch

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// reuseControl lets sockets share the local port; on Windows SO_REUSEADDR
// alone allows it.
func reuseControl(network, address string, c syscall.RawConn) error {
	var opErr error
	err := c.Control(func(fd uintptr) {
		opErr = windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return opErr
}

// ClampMSS does nothing on Windows, whose TCP_MAXSEG can only be read:
// there a path MTU black hole is left to the system's own detection
// (EnablePMTUBHDetect).
func ClampMSS(network, address string, c syscall.RawConn) error { return nil }
