//go:build linux

package portmap

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The lab test runs the client as this test binary in a lab host's
// network namespace (goroutines cannot follow a thread into one), driven
// over stdin and stdout:
//
//	env PORTMAP_LAB_CHILD=PROTOCOL,PORT,LIFETIME (PROTOCOL "probe": Probe only; "all": every protocol)
//	out: offer PROTOCOL...
//	     service UPNP-SERVICE
//	     mapped udp|tcp PROTOCOL EXTERNAL DURATION
//	     renewed udp|tcp N EXTERNAL
//	     got udp|tcp PAYLOAD
//	     closed ok|ERROR
//	in:  end of input closes the client (deleting the mappings) and exits.
const childEnv = "PORTMAP_LAB_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		return fmt.Errorf("bad %s %q", childEnv, spec)
	}
	port, err := strconv.Atoi(f[1])
	if err != nil {
		return err
	}
	life, err := time.ParseDuration(f[2])
	if err != nil {
		return err
	}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	if f[0] == "probe" {
		return childProbe(say)
	}
	if err := listen(port, say); err != nil {
		return err
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	cfg := Config{Lifetime: life}
	if f[0] != "all" {
		cfg.Protocols = []Protocol{Protocol(f[0])}
	}
	c, err := New(cfg, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ms []*Mapping
	for _, t := range []Transport{UDP, TCP} {
		start := time.Now()
		m, err := c.Map(ctx, t, uint16(port))
		if err != nil {
			return err
		}
		say("mapped %s %s %s %v", t, m.Protocol(), m.External(), time.Since(start).Round(time.Millisecond))
		ms = append(ms, m)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchRenewals(ms, stop, say)
	}()
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until EOF
	close(stop)
	wg.Wait()
	if err := c.Close(context.Background()); err != nil {
		say("closed %v", err)
		return nil
	}
	say("closed ok")
	return nil
}

func watchRenewals(ms []*Mapping, stop <-chan struct{}, say func(string, ...any)) {
	seen := make([]int, len(ms))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for i, m := range ms {
			if n := m.Renewals(); n != seen[i] {
				seen[i] = n
				say("renewed %s %d %s", m.Transport(), n, m.External())
			}
		}
	}
}

// listen reports what arrives on UDP and TCP port port, until the
// process ends.
func listen(port int, say func(string, ...any)) error {
	pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	go func() { // the process's life: it ends with the process
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			say("got udp %s", buf[:n])
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			say("got tcp %s", strings.TrimSpace(line))
		}
	}()
	return nil
}

// childProbe prints which protocols the router answers.
func childProbe(say func(string, ...any)) error {
	c, err := New(Config{}, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := c.Probe(ctx)
	if err != nil {
		return err
	}
	ps := make([]string, len(o.Protocols))
	for i, p := range o.Protocols {
		ps[i] = string(p)
	}
	slices.Sort(ps)
	say("offer %s", strings.Join(ps, " "))
	say("service %s", o.UPnPService)
	return nil
}
