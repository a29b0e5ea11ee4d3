package rendezvous

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/warren-p2p/warren/punch"
)

// TestNATReportWire pins the NAT report's wire form (spec.md): peers and
// servers of protocol version 1 read these names.
func TestNATReportWire(t *testing.T) {
	n := punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationSequential,
		Delta: -2, PublicIP: netip.MustParseAddr("203.0.113.7"), LastPort: 41641}
	b, err := json.Marshal(&Message{Type: TypeNAT, NAT: ReportNAT(n)})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"nat","nat":{"Behind":true,"Mapping":"address-and-port-dependent","Allocation":"sequential","Delta":-2,"PublicIP":"203.0.113.7","LastPort":41641}}`
	if string(b) != want {
		t.Fatalf("wire form\n got %s\nwant %s", b, want)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if got := m.NAT.NAT(); got != n {
		t.Fatalf("round trip: %+v, want %+v", got, n)
	}
	if got := (*NATReport)(nil).NAT(); got != (punch.NAT{}) {
		t.Fatalf("no report reads as %+v, want the zero NAT", got)
	}
	// A port mapping travels under its own name, and only when there is one.
	n.MappedTCP = netip.MustParseAddrPort("203.0.113.7:41000")
	b, err = json.Marshal(ReportNAT(n))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"LastPort":41641,"mapped_tcp":"203.0.113.7:41000"}`; !strings.HasSuffix(string(b), want) {
		t.Fatalf("wire form with a port mapping %s, want it to end %s", b, want)
	}
	var r NATReport
	if err := json.Unmarshal(b, &r); err != nil || r.NAT() != n {
		t.Fatalf("round trip with a port mapping: %+v (%v), want %+v", r.NAT(), err, n)
	}
	// A field punch.NAT gains must be given a wire name here too.
	if a, b := reflect.TypeFor[punch.NAT]().NumField(), reflect.TypeFor[NATReport]().NumField(); a != b {
		t.Fatalf("punch.NAT has %d fields, NATReport %d", a, b)
	}
}
