package portmap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// SSDP (UPnP Device Architecture 1.1, section 1.3): an M-SEARCH over UDP
// to port 1900, answered with an HTTP-like response whose LOCATION header
// is the URL of the device description.
const (
	ssdpPort   = 1900
	ssdpTarget = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
)

var ssdpMulticast = netip.MustParseAddr("239.255.255.250")

func ssdpRequest() []byte {
	return []byte("M-SEARCH * HTTP/1.1\r\n" +
		"HOST: 239.255.255.250:1900\r\n" +
		"MAN: \"ssdp:discover\"\r\n" +
		"MX: 1\r\n" +
		"ST: " + ssdpTarget + "\r\n\r\n")
}

// discoverIGD sends an M-SEARCH for an IGD to the gateway and to the SSDP
// multicast group, and returns the LOCATION of the first answer from the
// gateway itself. Answers from other hosts are ignored, as is a location
// on another host: only the router may be asked for a mapping. It
// retransmits (UDP may drop the search) until ctx ends.
func discoverIGD(ctx context.Context, gw netip.Addr, port uint16) (*url.URL, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp4", ":0")
	if err != nil {
		return nil, fmt.Errorf("ssdp: %w", err)
	}
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	req := ssdpRequest()
	buf := make([]byte, 2048)
	wait := firstRetransmit
	var last error
	for ctx.Err() == nil {
		for _, to := range []netip.Addr{gw, ssdpMulticast} {
			// The multicast send may fail without a multicast route; the
			// unicast one is what matters.
			_, _ = pc.WriteTo(req, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, port)))
		}
		_ = pc.SetReadDeadline(time.Now().Add(wait))
		wait *= 2
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			src := from.(*net.UDPAddr).AddrPort().Addr().Unmap()
			if src != gw {
				continue
			}
			loc, err := parseSSDPResponse(buf[:n], gw)
			if err == nil {
				return loc, nil
			}
			last = err
		}
	}
	return nil, errors.Join(fmt.Errorf("ssdp: no IGD answered from %v: %w", gw, ctx.Err()), last)
}

// parseSSDPResponse returns the LOCATION of an SSDP answer from gw, which
// must be an http URL on gw itself.
func parseSSDPResponse(b []byte, gw netip.Addr) (*url.URL, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return nil, fmt.Errorf("ssdp: malformed answer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ssdp: answer status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, fmt.Errorf("ssdp: location: %w", err)
	}
	if err := onHost(loc, gw); err != nil {
		return nil, fmt.Errorf("ssdp: location %v: %w", loc, err)
	}
	return loc, nil
}

// onHost checks that u is an http URL on host gw.
func onHost(u *url.URL, gw netip.Addr) error {
	if u.Scheme != "http" {
		return fmt.Errorf("scheme %q, want http", u.Scheme)
	}
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil || a.Unmap() != gw {
		return fmt.Errorf("host %q is not the gateway %v", u.Hostname(), gw)
	}
	return nil
}
