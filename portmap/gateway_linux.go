package portmap

import (
	"fmt"
	"net/netip"
	"os"
)

func gatewayFromSystem() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: %w", err)
	}
	defer f.Close()
	return parseProcRoute(f)
}
