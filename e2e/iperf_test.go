package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveIperf3 runs an iperf3 server on m's loopback until the test ends
// and returns its port.
func serveIperf3(t testing.TB, m machine) string {
	return serveIperf3On(t, m, "127.0.0.1")
}

// serveIperf3On is serveIperf3 bound to host.
func serveIperf3On(t testing.TB, m machine, host string) string {
	t.Helper()
	port := freePort(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := m.Command(ctx, "iperf3", "-s", "--forceflush", "-B", host, "-p", port)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("iperf3 server: %v (is iperf3 installed?)", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() { // read to the end, so iperf3 never blocks on output
			if !said && strings.Contains(sc.Text(), "Server listening") {
				close(listening)
				said = true
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("iperf3 server did not start listening within 10s")
	}
	return port
}

// iperf3 runs an iperf3 client on m against addr for secs seconds (the
// first left out as slow start) and returns the received rate in Mbit/s.
func iperf3(t testing.TB, m machine, addr string, secs int) float64 {
	return iperf3Run(t, m, addr, secs, 1).mbps
}

// iperfResult is what an iperf3 run received.
type iperfResult struct {
	mbps  float64
	bytes int64 // in the measured seconds, slow start left out
}

// iperf3Run is iperf3 with parallel streams (-P).
func iperf3Run(t testing.TB, m machine, addr string, secs, parallel int) iperfResult {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	out, err := m.Command(ctx, "iperf3", "-c", host, "-p", port, "-t", strconv.Itoa(secs), "-O", "1", "-J",
		"-P", strconv.Itoa(parallel)).Output()
	var rep struct {
		End struct {
			SumReceived struct {
				Bytes         int64   `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil || err != nil || rep.Error != "" {
		t.Fatalf("iperf3 to %s: %v %v %s", addr, err, jerr, rep.Error)
	}
	r := iperfResult{mbps: rep.End.SumReceived.BitsPerSecond / 1e6, bytes: rep.End.SumReceived.Bytes}
	t.Logf("iperf3 %ds ×%d to %s: %.0f Mbit/s", secs, parallel, addr, r.mbps)
	return r
}
