package forward

import "cmp"

// ListenerInfo describes one running listener, for the status API and the
// dashboard.
type ListenerInfo struct {
	Name     string `json:"name"`     // its config key: "socks[0]", "forward[2]"
	Kind     string `json:"kind"`     // "socks5" or "forward"
	Protocol string `json:"protocol"` // "tcp" or "udp"
	Listen   string `json:"listen"`   // the bound address
	Peer     string `json:"peer"`
	// To is where a forward leads: "service web" or a host:port the peer
	// dials; empty for SOCKS5, whose clients name their targets.
	To string `json:"to,omitempty"`
}

// Describe lists the running listeners in config order.
func (l *Listeners) Describe() []ListenerInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []ListenerInfo{}
	for _, ln := range l.order {
		c := ln.conf.Load()
		info := ListenerInfo{Name: c.name, Listen: ln.addr().String(), Peer: confPeer(c)}
		switch {
		case c.socks != nil:
			info.Kind, info.Protocol = "socks5", "tcp"
		case c.fwd.Service != "":
			info.Kind, info.Protocol, info.To = "forward", cmp.Or(c.fwd.Protocol, "tcp"), "service "+c.fwd.Service
		default:
			info.Kind, info.Protocol, info.To = "forward", cmp.Or(c.fwd.Protocol, "tcp"), c.fwd.Target
		}
		out = append(out, info)
	}
	return out
}
