package demo

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestDemoOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := logrus.New()
	log.SetOutput(io.Discard)
	var out strings.Builder
	if err := Run(ctx, Options{Once: true, Out: &out, Log: log}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	// Both transports race on loopback: under load the UDP link can win.
	if !regexp.MustCompile(`link up over direct-(tcp|udp) in`).MatchString(out.String()) {
		t.Errorf("demo output lacks a direct link:\n%s", out.String())
	}
	for _, want := range []string{`"hello from home, through warren"`, "refused by home's ACL", "all checks passed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
