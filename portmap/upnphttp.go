package portmap

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/huin/goupnp"
)

// maxUPnPBody bounds what the router's HTTP answers may hold: a
// description or a SOAP answer is a few KiB, and a hostile or broken
// router must not make this process read without end.
const maxUPnPBody = 256 << 10

// newUPnPHTTP returns the HTTP client for talking to the router. It never
// uses a proxy (HTTP_PROXY is for the internet, never for the LAN's
// router), follows no redirect (which could lead off the gateway), keeps
// no idle connections (so no background goroutines outlive a request),
// and cuts answers at maxUPnPBody. goupnp's own package-level client is
// left alone.
func newUPnPHTTP() http.Client {
	return http.Client{
		Transport:     limitBody{&http.Transport{Proxy: nil, DisableKeepAlives: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type limitBody struct{ rt http.RoundTripper }

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxUPnPBody), resp.Body}
	return resp, nil
}

// fetchDescription fetches and parses the IGD's device description at loc.
// Relative URLs in it are resolved against loc; the deprecated URLBase
// element is ignored, so that it cannot point the client elsewhere.
func fetchDescription(ctx context.Context, hc *http.Client, loc *url.URL) (*goupnp.RootDevice, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("upnp: description %v: %w", loc, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upnp: description: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upnp: description %v: HTTP %s", loc, resp.Status)
	}
	root := new(goupnp.RootDevice)
	dec := xml.NewDecoder(resp.Body)
	dec.DefaultSpace = goupnp.DeviceXMLNamespace
	if err := dec.Decode(root); err != nil {
		return nil, fmt.Errorf("upnp: description %v: %w", loc, err)
	}
	root.SetURLBase(loc)
	return root, nil
}
