package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestNATCommand runs `warren nat` behind each kind of lab NAT against the
// lab's rendezvous server and checks the verdict, in both output forms.
func TestNATCommand(t *testing.T) {
	lab := labtest.New(t, natlab.Config{})
	w := labWorld(t, lab)
	srv := lab.Server().Addrs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, tc := range []struct {
		kind natlab.Kind
		want string
	}{
		{natlab.Open, "none"},
		{natlab.Cone, "cone"},
		{natlab.SymSeq, `symseq\(\+1\)`},
		{natlab.SymRand, "symrand"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			site, err := lab.AddSite(ctx, fmt.Sprintf("n%d", i), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"nat", "-rendezvous", w.rvAddr, "-alt", hostPort(srv[1].String(), "7778")}
			out := run(t, site.Host(), args...)
			if !regexp.MustCompile(`(?m)^NAT\s+`+tc.want+`$`).MatchString(out) ||
				!regexp.MustCompile(`(?m)^LOCAL\s+SERVER\s+SEEN AS$`).MatchString(out) {
				t.Fatalf("warren nat behind %s:\n%s", tc.kind, out)
			}
			// Every name is snake_case, the samples' too.
			var rep struct {
				NAT     string `json:"nat"`
				Public  string `json:"public_ip"`
				Samples []struct {
					Local  string `json:"local"`
					Server string `json:"server"`
					Mapped string `json:"mapped"`
				} `json:"samples"`
			}
			js := run(t, site.Host(), append(args, "-json")...)
			if err := json.Unmarshal([]byte(js), &rep); err != nil ||
				!regexp.MustCompile(`^`+tc.want+`$`).MatchString(rep.NAT) || len(rep.Samples) < 4 {
				t.Fatalf("warren nat -json behind %s: %+v, %v", tc.kind, rep, err)
			}
			for _, s := range rep.Samples {
				if s.Local == "" || s.Server == "" || s.Mapped == "" {
					t.Fatalf("warren nat -json behind %s: a sample without local, server or mapped:\n%s", tc.kind, js)
				}
			}
		})
	}
}
