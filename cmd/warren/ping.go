package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// cmdPing asks the running daemon to ping a peer over its link, like
// ping(8): one line per round trip, then a summary.
func cmdPing(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ping", stderr)
	admin := fs.String("admin", "127.0.0.1:7780", "the daemon's admin_listen `ADDR`")
	count := fs.Int("c", 4, "stop after `N` round trips")
	interval := fs.Duration("i", time.Second, "wait `DURATION` between round trips")
	operands, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(operands) != 1 {
		return usagef("ping needs one PEER (a [[peers]] name)")
	}
	if *count < 1 || *interval <= 0 {
		return usagef("-c must be at least 1 and -i positive")
	}
	peer := operands[0]
	var rtts []float64
	for i := range *count {
		if i > 0 {
			select {
			case <-time.After(*interval):
			case <-ctx.Done():
				return printPingSummary(stdout, peer, *count, rtts)
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		body, err := adminGet(pctx, *admin, "/ping?peer="+url.QueryEscape(peer))
		cancel()
		if err != nil {
			if len(rtts) == 0 && i == 0 {
				return err
			}
			fmt.Fprintf(stdout, "%s: %v\n", peer, err)
			continue
		}
		var r daemon.PingResult
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("admin API /ping: %w", err)
		}
		rtts = append(rtts, r.RTTMs)
		fmt.Fprintf(stdout, "%s via %s %s: rtt %.3f ms\n", r.Peer, r.Path, r.Remote, r.RTTMs)
	}
	return printPingSummary(stdout, peer, *count, rtts)
}

func printPingSummary(w io.Writer, peer string, sent int, rtts []float64) error {
	fmt.Fprintf(w, "--- %s: %d sent, %d answered", peer, sent, len(rtts))
	if len(rtts) == 0 {
		fmt.Fprintln(w)
		return fmt.Errorf("no answer from %s", peer)
	}
	lo, hi, sum := rtts[0], rtts[0], 0.0
	for _, r := range rtts {
		lo, hi, sum = min(lo, r), max(hi, r), sum+r
	}
	fmt.Fprintf(w, ", rtt min/avg/max %.3f/%.3f/%.3f ms\n", lo, sum/float64(len(rtts)), hi)
	return nil
}
