package portmap

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// igdClient is the part of a WAN*Connection service a mapping needs;
// WANIPConnection1/2 and WANPPPConnection1 all have it.
type igdClient interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string,
		intPort uint16, intClient string, enabled bool, desc string, lease uint32) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	DeletePortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string) error
}

// anyPortClient is IGDv2's AddAnyPortMapping: the router picks another
// external port when the asked one is taken.
type anyPortClient interface {
	AddAnyPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string,
		intPort uint16, intClient string, enabled bool, desc string, lease uint32) (uint16, error)
}

// UPnP error codes (IGD WANIPConnection:2 section 2.5) acted on.
const (
	upnpConflict      = 718 // ConflictInMappingEntry
	upnpOnlyPermanent = 725 // OnlyPermanentLeasesSupported
	mappingDesc       = "warren"
)

// upnpMapper maps through the gateway's IGD, found by SSDP on probe.
type upnpMapper struct {
	gw       netip.Addr
	ssdpPort uint16

	mu      sync.Mutex
	client  igdClient // nil until a probe found one
	service string    // e.g. "WANIPConnection:2", for logs
}

func (u *upnpMapper) protocol() Protocol { return UPnP }

// probe finds the IGD and its first WAN connection service, preferring
// WANIPConnection:2 (which has AddAnyPortMapping).
func (u *upnpMapper) probe(ctx context.Context) error {
	loc, err := discoverIGD(ctx, u.gw, u.ssdpPort)
	if err != nil {
		return err
	}
	hc := newUPnPHTTP()
	root, err := fetchDescription(ctx, &hc, loc)
	if err != nil {
		return err
	}
	c, name, err := pickService(root, loc, u.gw, hc)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.client, u.service = c, name
	u.mu.Unlock()
	return nil
}

// pickService returns the first WAN connection service of root whose
// control URL is on the gateway, set to use HTTP client hc.
func pickService(root *goupnp.RootDevice, loc *url.URL, gw netip.Addr, hc http.Client) (igdClient, string, error) {
	var found []igdClient
	var names []string
	var sc []*goupnp.ServiceClient
	if cs, err := internetgateway2.NewWANIPConnection2ClientsFromRootDevice(root, loc); err == nil {
		for _, c := range cs {
			found, names, sc = append(found, c), append(names, "WANIPConnection:2"), append(sc, &c.ServiceClient)
		}
	}
	if cs, err := internetgateway2.NewWANIPConnection1ClientsFromRootDevice(root, loc); err == nil {
		for _, c := range cs {
			found, names, sc = append(found, c), append(names, "WANIPConnection:1"), append(sc, &c.ServiceClient)
		}
	}
	if cs, err := internetgateway2.NewWANPPPConnection1ClientsFromRootDevice(root, loc); err == nil {
		for _, c := range cs {
			found, names, sc = append(found, c), append(names, "WANPPPConnection:1"), append(sc, &c.ServiceClient)
		}
	}
	for i, c := range found {
		if err := onHost(&sc[i].SOAPClient.EndpointURL, gw); err == nil {
			sc[i].SOAPClient.HTTPClient = hc
			return c, names[i], nil
		}
	}
	return nil, "", fmt.Errorf("upnp: %v describes no WAN connection service on the gateway", loc)
}

func (u *upnpMapper) serviceName() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.service
}

// forget drops IGD client c, if it is still the one found, so that the
// next probe searches again (the router may have restarted elsewhere).
func (u *upnpMapper) forget(c igdClient) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.client == c {
		u.client, u.service = nil, ""
	}
}

func (u *upnpMapper) igd() (igdClient, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.client == nil {
		return nil, errors.New("upnp: no IGD found yet")
	}
	return u.client, nil
}

// add maps internal on local to the same external port (or prev's), with
// AddAnyPortMapping where the router has it, else AddPortMapping.
func (u *upnpMapper) add(ctx context.Context, req mapRequest) (lease, error) {
	c, err := u.igd()
	if err != nil {
		return lease{}, err
	}
	ext := req.internal
	if req.prev != nil {
		ext = req.prev.external.Port()
	}
	proto := upnpProto(req.t)
	life := seconds(req.lifetime)
	port, err := u.addOnce(ctx, c, ext, proto, req, life)
	if upnpCode(err) == upnpOnlyPermanent {
		life = 0 // old IGDv1 routers: a permanent mapping, deleted on Close
		port, err = u.addOnce(ctx, c, ext, proto, req, life)
	}
	// An IGDv1 router cannot pick a free port itself: try a few random
	// ones when the same port is taken (by another host).
	for i := 0; i < 3 && upnpCode(err) == upnpConflict && req.prev == nil; i++ {
		port, err = u.addOnce(ctx, c, uint16(1024+mrand.N(65535-1024)), proto, req, life)
	}
	if err != nil {
		if upnpCode(err) == 0 {
			u.forget(c) // unreachable or garbled: search again next time
		}
		return lease{}, upnpError("add port mapping", err)
	}
	ipText, err := c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return lease{}, upnpError("get external IP address", err)
	}
	ip, err := netip.ParseAddr(ipText)
	if err != nil || !ip.Is4() || ip.IsUnspecified() {
		return lease{}, fmt.Errorf("upnp: router reports unusable external address %q", ipText)
	}
	return lease{external: netip.AddrPortFrom(ip, port), lifetime: time.Duration(life) * time.Second}, nil
}

func (u *upnpMapper) addOnce(ctx context.Context, c igdClient, ext uint16, proto string, req mapRequest, life uint32) (uint16, error) {
	if any, ok := c.(anyPortClient); ok {
		port, err := any.AddAnyPortMappingCtx(ctx, "", ext, proto, req.internal, req.local.String(), true, mappingDesc, life)
		if err == nil && port == 0 {
			return 0, errors.New("router reserved external port 0")
		}
		return port, err
	}
	return ext, c.AddPortMappingCtx(ctx, "", ext, proto, req.internal, req.local.String(), true, mappingDesc, life)
}

func (u *upnpMapper) remove(ctx context.Context, t Transport, _ uint16, l lease) error {
	c, err := u.igd()
	if err != nil {
		return err
	}
	if err := c.DeletePortMappingCtx(ctx, "", l.external.Port(), upnpProto(t)); err != nil {
		return upnpError("delete port mapping", err)
	}
	return nil
}

func upnpProto(t Transport) string {
	if t == TCP {
		return "TCP"
	}
	return "UDP"
}

// upnpCode returns the UPnP error code of a SOAP fault, or 0.
func upnpCode(err error) int {
	var f *soap.SOAPFaultError
	if errors.As(err, &f) {
		return f.Detail.UPnPError.Errorcode
	}
	return 0
}

// upnpError turns a SOAP fault into a ResultError and gives others context.
func upnpError(action string, err error) error {
	var f *soap.SOAPFaultError
	if errors.As(err, &f) && f.Detail.UPnPError.Errorcode != 0 {
		return fmt.Errorf("upnp: %s: %w", action, &ResultError{Protocol: UPnP,
			Code: f.Detail.UPnPError.Errorcode, Text: f.Detail.UPnPError.ErrorDescription})
	}
	return fmt.Errorf("upnp: %s: %w", action, err)
}
