package natlab

import (
	"net/netip"
	"strings"
	"testing"
)

// TestRestrictedRules reads the rules of the restricted kinds without a
// kernel; egress_test.go probes what they do.
func TestRestrictedRules(t *testing.T) {
	for _, k := range RestrictedKinds() {
		if got, err := ParseKind(string(k)); err != nil || got != k || !k.Valid() {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
		rules, err := routerRules(k, "203.0.113.10")
		if err != nil {
			t.Fatal(err)
		}
		// A cone NAT whose LAN may not send everything out.
		for _, w := range []string{`oifname "wan0" masquerade`, "policy drop", "ct state established,related accept"} {
			if !strings.Contains(rules, w) {
				t.Errorf("%s: rules lack %q", k, w)
			}
		}
		if strings.Contains(rules, `iifname "lan0" accept`) {
			t.Errorf("%s: the LAN may send anything out:\n%s", k, rules)
		}
	}
	rules, _ := routerRules(HTTPSOnly, "203.0.113.10")
	for _, w := range []string{`iifname "lan0" tcp dport 443 accept`, `th dport 53 accept`} {
		if !strings.Contains(rules, w) {
			t.Errorf("https-only: rules lack %q", w)
		}
	}
	rules, _ = routerRules(ProxyOnly, "203.0.113.10")
	if strings.Contains(rules, "dport") {
		t.Errorf("proxy-only forwards a port:\n%s", rules)
	}
	conf := tinyproxyConf(netip.MustParsePrefix("10.3.0.1/24"))
	for _, w := range []string{"Listen 10.3.0.1\n", "Allow 10.3.0.0/24\n", "ConnectPort 443\n", "Port 8888\n"} {
		if !strings.Contains(conf, w) {
			t.Errorf("tinyproxy config lacks %q:\n%s", w, conf)
		}
	}
}
