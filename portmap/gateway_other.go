//go:build !linux

package portmap

import "net/netip"

// gatewayFromSystem has no routing table reader off Linux yet; Gateway
// falls back to its guess.
func gatewayFromSystem() (netip.Addr, error) { return netip.Addr{}, ErrNoGateway }
