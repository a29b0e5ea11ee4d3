package session

// Path names, as links, the status API and the metrics report them.
const (
	PathTCP   = "direct-tcp"
	PathUDP   = "direct-udp"
	PathRelay = "relay"
)
