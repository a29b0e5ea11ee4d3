package natlab

import (
	"strings"
	"testing"
)

func TestParseKind(t *testing.T) {
	for _, k := range Kinds() {
		if got, err := ParseKind(string(k)); err != nil || got != k || !k.Valid() {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	if _, err := ParseKind("full-cone"); err == nil || !strings.Contains(err.Error(), "symseq-busy") {
		t.Errorf("ParseKind(full-cone): %v, want an error listing the kinds", err)
	}
}

// TestRouterRules reads the rules each kind gets, without a kernel; the
// probes in lab_test.go check what they do.
func TestRouterRules(t *testing.T) {
	for _, tc := range []struct {
		kind      Kind
		want, not []string
	}{
		{Cone, []string{`oifname "wan0" masquerade`, "ct state established,related accept", "\t\tdrop\n"},
			[]string{"fully-random", "reset", "numgen"}},
		{ConeRST, []string{`oifname "wan0" masquerade`, "reject with tcp reset"}, []string{"fully-random", "numgen"}},
		{SymSeq, []string{"snat to 203.0.113.10 : numgen inc mod 10000 map { 0 : 20000, 1 : 20001,", "9999 : 29999 }"},
			[]string{"offset", "fully-random", "reset"}},
		{SymSeqBusy, []string{"numgen inc mod 10000 map"}, []string{"offset"}},
		{SymRand, []string{"masquerade fully-random"}, []string{"numgen", "reset"}},
	} {
		rules, err := routerRules(tc.kind, "203.0.113.10")
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		for _, w := range append(tc.want, `ip saddr 203.0.113.10 accept`, `iifname "lan0" accept`, "policy drop") {
			if !strings.Contains(rules, w) {
				t.Errorf("%s: rules lack %q", tc.kind, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(rules, n) {
				t.Errorf("%s: rules contain %q", tc.kind, n)
			}
		}
	}
	if _, err := routerRules(Open, "203.0.113.10"); err == nil {
		t.Error("Open got router rules")
	}
}

func TestLossRules(t *testing.T) {
	if got := lossRules(0); strings.Contains(got, "drop") {
		t.Errorf("lossRules(0) = %q", got)
	}
	if got := lossRules(30); !strings.Contains(got, "numgen random mod 100 < 30 drop") || !strings.Contains(got, "ether type ip") {
		t.Errorf("lossRules(30) = %q", got)
	}
}

func TestConfigVerify(t *testing.T) {
	for _, c := range []Config{{Prefix: "Wl"}, {Prefix: "wl-1"}, {Prefix: "abcdefghijklm"}, {LossPercent: -1}, {LossPercent: 101}, {UDPTimeout: -1}} {
		if c.Verify() == nil {
			t.Errorf("%+v verified", c)
		}
	}
	if err := (Config{Prefix: "wl1234", LossPercent: 100}).Verify(); err != nil {
		t.Error(err)
	}
}
