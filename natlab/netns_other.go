//go:build !linux

package natlab

import (
	"errors"
	"syscall"
)

var errNotLinux = errors.New("Linux (network namespaces and nftables)")

func platformSupported() error { return errNotLinux }

func inNetns(ns string, fn func() error) error { return errNotLinux }

func writeSysctls(ns string, kv []sysctl) error { return errNotLinux }

type sysctl struct {
	key, value string
	optional   bool
}

func ownSession() *syscall.SysProcAttr { return nil }

func processExists(pid int) bool { return true }
