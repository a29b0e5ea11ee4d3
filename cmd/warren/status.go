package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	admin := fs.String("admin", "127.0.0.1:7780", "the daemon's admin_listen `ADDR`")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := adminGet(ctx, *admin, "/status")
	if err != nil {
		return err
	}
	if *asJSON {
		_, err = stdout.Write(body)
		return err
	}
	var st daemon.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status API: %w", err)
	}
	printStatus(stdout, st)
	return nil
}

// adminGet fetches path from the daemon's admin API at admin. An answer
// other than 200 is an error, with the API's own message if it sent one.
func adminGet(ctx context.Context, admin, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		return nil, usageError{err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the daemon running with admin_listen = %q? %w", admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("admin API %s: %s", path, resp.Status)
	}
	return body, nil
}

func printStatus(w io.Writer, st daemon.Status) {
	observed := orDash(st.Observed)
	if st.Observed6 != "" {
		observed += " " + st.Observed6
	}
	rv := st.Rendezvous
	if st.RendezvousNode != "" {
		rv += " with node " + st.RendezvousNode
	}
	fmt.Fprintf(w, "key %s  rendezvous %s  observed %s  nat %s\n",
		st.PublicKey, rv, observed, st.NAT)
	// Said only when it matters: a restricted network explains every
	// relayed link below it.
	if st.Network != "" || (st.RendezvousRoute != "" && !strings.HasPrefix(st.RendezvousRoute, "direct ")) {
		fmt.Fprintf(w, "network %s  rendezvous via %s\n", orDash(st.Network), orDash(st.RendezvousRoute))
	}
	if st.PortMapping != nil {
		fmt.Fprintf(w, "port mapping %s\n", portMappingText(st.PortMapping))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tPATH\tREMOTE\tRTT\tSINCE\tIN\tOUT\tSTREAMS\tPEER NAT\tSTRATEGY")
	for _, p := range st.Peers {
		since := "-"
		if p.Since != nil {
			since = time.Since(*p.Since).Round(time.Second).String()
		}
		rtt := "-"
		if p.RTTMs > 0 {
			rtt = fmt.Sprintf("%.1fms", p.RTTMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.State, orDash(p.Path), orDash(p.Remote),
			rtt, since, bytesText(p.BytesIn), bytesText(p.BytesOut), p.Streams, orDash(p.PeerNAT), orDash(p.Strategy))
	}
	tw.Flush()
	if st.RendezvousError != "" {
		fmt.Fprintf(w, "\nrendezvous: %s", st.RendezvousError)
		if st.RendezvousSince != nil {
			fmt.Fprintf(w, " (for %s)", time.Since(*st.RendezvousSince).Round(time.Second))
		}
	}
	for _, p := range st.Peers {
		if p.Error != "" {
			fmt.Fprintf(w, "\n%s: %s", p.Name, strings.TrimSpace(p.Error))
		}
		if p.Why != "" {
			fmt.Fprintf(w, "\n%s: relayed because %s", p.Name, p.Why)
		}
		if p.Choice != "" {
			fmt.Fprintf(w, "\n%s: %s", p.Name, p.Choice)
		}
		if r := p.Remembered; r != nil {
			fmt.Fprintf(w, "\n%s: last time on these networks: %s in %s, %s ago", p.Name, r.Path,
				time.Duration(r.SetupMs*float64(time.Millisecond)).Round(time.Millisecond), time.Since(r.At).Round(time.Second))
		}
	}
}

// portMappingText is a daemon's port mapping on one line: "upnp tcp
// 203.0.113.10:41000 udp 203.0.113.10:41000 renewed before 14:02:11", or
// why there is none.
func portMappingText(pm *daemon.PortMappingStatus) string {
	if pm.TCP == "" && pm.UDP == "" {
		return "- (" + pm.Error + ")"
	}
	s := pm.Protocol
	if pm.TCP != "" {
		s += " tcp " + pm.TCP
	}
	if pm.UDP != "" {
		s += " udp " + pm.UDP
	}
	if pm.Expires != nil {
		s += " expires " + pm.Expires.Local().Format(time.TimeOnly)
	}
	if pm.Error != "" {
		s += " (" + pm.Error + ")"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
