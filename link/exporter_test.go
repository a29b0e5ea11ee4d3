package link

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// keyedConn records the exporter Establish hands it.
type keyedConn struct {
	net.Conn
	mu     sync.Mutex
	export Exporter
}

func (k *keyedConn) LinkKeys(e Exporter) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.export = e
}

// TestExporterKeysBothEnds: both ends of a link derive the same keys from
// its TLS session, per label; another link's differ; and a Keyed
// candidate connection gets the exporter of the link that runs over it.
func TestExporterKeysBothEnds(t *testing.T) {
	aID, bID := newIdentity(t), newIdentity(t)
	a, b := tcpPairs(t, 1)
	ka, kb := &keyedConn{Conn: a[0]}, &keyedConn{Conn: b[0]}
	ra, rb := establishBoth(t, aID, bID, bID.Public, aID.Public, []net.Conn{ka}, []net.Conn{kb})
	if ra.err != nil || rb.err != nil {
		t.Fatalf("establish: %v / %v", ra.err, rb.err)
	}
	key := func(e Exporter, label string) []byte {
		t.Helper()
		k, err := e(label, nil, 32)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	const label = "EXPERIMENTAL warren test"
	x, y := key(ra.l.ExportKeyingMaterial, label), key(rb.l.ExportKeyingMaterial, label)
	if !bytes.Equal(x, y) {
		t.Fatal("the two ends derived different keys")
	}
	if bytes.Equal(x, key(ra.l.ExportKeyingMaterial, label+" other")) {
		t.Fatal("two labels gave one key")
	}
	for _, k := range []*keyedConn{ka, kb} {
		k.mu.Lock()
		e := k.export
		k.mu.Unlock()
		if e == nil || !bytes.Equal(key(e, label), x) {
			t.Fatal("the candidate connection did not get the link's exporter")
		}
	}
	c, d := tcpPairs(t, 1)
	rc, _ := establishBoth(t, aID, bID, bID.Public, aID.Public, c, d)
	if rc.err != nil {
		t.Fatal(rc.err)
	}
	if bytes.Equal(x, key(rc.l.ExportKeyingMaterial, label)) {
		t.Fatal("another link between the same keys derived the same key")
	}
}
