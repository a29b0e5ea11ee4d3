package portmap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIGD is an IGD v1 on loopback: an SSDP responder and an HTTP server
// with a WANIPConnection:1 service that can refuse leases (725, as old
// routers do) or ports (718, taken).
type fakeIGD struct {
	ssdp net.PacketConn
	http *httptest.Server

	mu            sync.Mutex
	controlURL    string // in the description; default /ctl, on itself
	pad           int    // bytes of comment before the description
	onlyPermanent bool
	taken         map[int]bool   // external ports held by another host
	mappings      map[string]int // "UDP/40000" -> lease seconds
	adds          int
}

func newFakeIGD(t *testing.T) *fakeIGD {
	t.Helper()
	f := &fakeIGD{controlURL: "/ctl", taken: map[int]bool{}, mappings: map[string]int{}}
	f.http = httptest.NewServer(http.HandlerFunc(f.serveHTTP))
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ssdp = pc
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte("HTTP/1.1 200 OK\r\nST: "+ssdpTarget+"\r\nLOCATION: "+f.http.URL+"/rootDesc.xml\r\n\r\n"), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done; f.http.Close() })
	return f
}

func (f *fakeIGD) client(t *testing.T) *Client {
	t.Helper()
	c, err := New(Config{Gateway: netip.MustParseAddr("127.0.0.1"), Protocols: []Protocol{UPnP}, Lifetime: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.ssdpPort = uint16(f.ssdp.LocalAddr().(*net.UDPAddr).Port)
	return c
}

const fakeRootDesc = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>%s</controlURL>
<eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>`

var soapArg = regexp.MustCompile(`<(NewExternalPort|NewProtocol|NewLeaseDuration)>([^<]*)<`)

func (f *fakeIGD) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/rootDesc.xml" {
		f.mu.Lock()
		ctl, pad := f.controlURL, f.pad
		f.mu.Unlock()
		desc := fmt.Sprintf(fakeRootDesc, ctl)
		if pad > 0 {
			desc = strings.Replace(desc, "<root", "<!--"+strings.Repeat("x", pad)+"--><root", 1)
		}
		_, _ = io.WriteString(w, desc)
		return
	}
	body, _ := io.ReadAll(r.Body)
	args := map[string]string{}
	for _, m := range soapArg.FindAllStringSubmatch(string(body), -1) {
		args[m[1]] = m[2]
	}
	action := regexp.MustCompile(`#(\w+)`).FindStringSubmatch(r.Header.Get("SOAPAction"))[1]
	f.mu.Lock()
	code, out := f.actLocked(action, args)
	f.mu.Unlock()
	if code != 0 {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, soapEnvelope, fmt.Sprintf(`<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>`+
			`<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode>`+
			`<errorDescription>refused</errorDescription></UPnPError></detail></s:Fault>`, code))
		return
	}
	fmt.Fprintf(w, soapEnvelope, fmt.Sprintf(`<u:%sResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">%s</u:%sResponse>`, action, out, action))
}

const soapEnvelope = `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ` +
	`s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>%s</s:Body></s:Envelope>`

func (f *fakeIGD) actLocked(action string, args map[string]string) (int, string) {
	port, _ := strconv.Atoi(args["NewExternalPort"])
	key := args["NewProtocol"] + "/" + args["NewExternalPort"]
	switch action {
	case "GetExternalIPAddress":
		return 0, "<NewExternalIPAddress>198.51.100.7</NewExternalIPAddress>"
	case "AddPortMapping":
		f.adds++
		lease, _ := strconv.Atoi(args["NewLeaseDuration"])
		switch {
		case f.onlyPermanent && lease != 0:
			return upnpOnlyPermanent, ""
		case f.taken[port]:
			return upnpConflict, ""
		}
		f.mappings[key] = lease
		return 0, ""
	case "DeletePortMapping":
		if _, ok := f.mappings[key]; !ok {
			return 714, "" // NoSuchEntryInArray
		}
		delete(f.mappings, key)
		return 0, ""
	}
	return 401, "" // Invalid Action
}

func (f *fakeIGD) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]int{}
	for k, v := range f.mappings {
		m[k] = v
	}
	return m
}

// TestUPnPv1: through SSDP and an IGD v1's WANIPConnection:1, a mapping
// of the same port with the lease asked for, deleted on Close.
func TestUPnPv1(t *testing.T) {
	f := newFakeIGD(t)
	c := f.client(t)
	m, err := c.Map(ctxT(t), UDP, 40000)
	if err != nil {
		t.Fatal(err)
	}
	if m.Protocol() != UPnP || m.External() != netip.MustParseAddrPort("198.51.100.7:40000") {
		t.Fatalf("got %s %v", m.Protocol(), m.External())
	}
	if got := f.snapshot(); len(got) != 1 || got["UDP/40000"] != 3600 {
		t.Fatalf("router holds %v", got)
	}
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.snapshot(); len(got) != 0 {
		t.Fatalf("left after Close: %v", got)
	}
}

// TestUPnPOnlyPermanent: an old router that refuses leases gets a
// permanent mapping, which Close deletes all the same.
func TestUPnPOnlyPermanent(t *testing.T) {
	f := newFakeIGD(t)
	f.mu.Lock()
	f.onlyPermanent = true
	f.mu.Unlock()
	c := f.client(t)
	m, err := c.Map(ctxT(t), TCP, 40000)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Expires().IsZero() {
		t.Fatalf("a permanent mapping expires at %v", m.Expires())
	}
	if got := f.snapshot(); got["TCP/40000"] != 0 || len(got) != 1 {
		t.Fatalf("router holds %v", got)
	}
	if err := c.Close(ctxT(t)); err != nil || len(f.snapshot()) != 0 {
		t.Fatalf("close: %v, left %v", err, f.snapshot())
	}
}

// TestUPnPConflict: with the same port taken by another host, an IGD v1
// (no AddAnyPortMapping) gets another port.
func TestUPnPConflict(t *testing.T) {
	f := newFakeIGD(t)
	f.mu.Lock()
	f.taken[40000] = true
	f.mu.Unlock()
	m, err := f.client(t).Map(ctxT(t), UDP, 40000)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.External().Port(); p == 40000 || p < 1024 {
		t.Fatalf("mapped on external port %d", p)
	}
	if got := f.snapshot(); len(got) != 1 {
		t.Fatalf("router holds %v", got)
	}
}

// TestUPnPControlElsewhere: a description whose control URL points to
// another host is not followed: only the gateway is asked for mappings.
func TestUPnPControlElsewhere(t *testing.T) {
	f := newFakeIGD(t)
	f.mu.Lock()
	f.controlURL = "http://192.0.2.9:80/ctl"
	f.mu.Unlock()
	_, err := f.client(t).Map(ctxT(t), UDP, 40000)
	if !errors.Is(err, ErrNoRouter) || !strings.Contains(err.Error(), "no WAN connection service on the gateway") {
		t.Fatalf("got %v", err)
	}
}

// TestUPnPDescriptionBounded: a description beyond maxUPnPBody is not
// read to its end; one just under it is.
func TestUPnPDescriptionBounded(t *testing.T) {
	for _, tc := range []struct {
		pad int
		ok  bool
	}{{pad: maxUPnPBody - 4096, ok: true}, {pad: 4 * maxUPnPBody}} {
		f := newFakeIGD(t)
		f.mu.Lock()
		f.pad = tc.pad
		f.mu.Unlock()
		_, err := f.client(t).Map(ctxT(t), UDP, 40000)
		if (err == nil) != tc.ok {
			t.Fatalf("description of %d bytes: %v", tc.pad, err)
		}
	}
}
