package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/net/proxy"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/rendezvous"
)

// Options configures Run.
type Options struct {
	// Once makes Run return after the checks instead of serving until ctx
	// ends.
	Once bool
	// Out receives the narrative for the user.
	Out io.Writer
	// Log receives the components' logs.
	Log logrus.FieldLogger
	// Command is how the user runs warren, for the commands the demo
	// suggests ("warren", "go run ./cmd/warren"). Default: "warren".
	Command string
}

// Page is the body the demo's web service on "home" returns.
const Page = "hello from home, through warren\n"

// Run runs the demo. It returns an error if any check fails.
func Run(ctx context.Context, opt Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := opt.Out
	dir, err := os.MkdirTemp("", "warren-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The service that lives on "home".
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	websrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, Page)
	}), ReadHeaderTimeout: 5 * time.Second}
	go websrv.Serve(web)
	defer websrv.Close()

	// The rendezvous server.
	rvKey, err := identity.Generate()
	if err != nil {
		return err
	}
	srv, err := rendezvous.NewServer(rendezvous.ServerConfig{Key: rvKey, Relay: true, Log: opt.Log.WithField("node", "rendezvous")})
	if err != nil {
		return err
	}
	bound := make(chan net.Addr, 1)
	srvDone := make(chan error, 1)
	go func() {
		srvDone <- srv.ListenAndServe(ctx, "127.0.0.1:0", "", func(a []net.Addr) { bound <- a[0] })
	}()
	var rvAddr net.Addr
	select {
	case rvAddr = <-bound:
	case err := <-srvDone:
		return fmt.Errorf("rendezvous server: %w", err)
	}
	defer func() { cancel(); <-srvDone }()

	keys := map[string]identity.PublicKey{}
	for _, n := range []string{"laptop", "home"} {
		k, _, err := identity.LoadOrCreate(filepath.Join(dir, n+".key"))
		if err != nil {
			return err
		}
		keys[n] = k.Public()
	}
	common := fmt.Sprintf("admin_listen = \"127.0.0.1:0\"\n[rendezvous]\naddress = %q\npublic_key = %q\n",
		rvAddr.String(), rvKey.Public())
	homeConf := fmt.Sprintf(`key_file = "home.key"
%s
[[peers]]
name = "laptop"
public_key = %q
targets = ["localhost:*", "127.0.0.1:*"]   # laptop may exit here to local services only

[[expose]]
name = "web"
target = %q
peers = ["laptop"]
`, common, keys["laptop"], web.Addr().String())
	laptopConf := fmt.Sprintf(`key_file = "laptop.key"
%s
[[peers]]
name = "home"
public_key = %q

[[forward]]
listen = "127.0.0.1:0"
peer = "home"
service = "web"

[[socks]]
listen = "127.0.0.1:0"
peer = "home"
`, common, keys["home"])

	var daemons []*daemon.Daemon
	defer func() {
		for _, d := range daemons {
			d.Close()
		}
	}()
	for _, n := range []struct{ name, conf string }{{"home", homeConf}, {"laptop", laptopConf}} {
		cfg, err := config.Parse(filepath.Join(dir, n.name+".toml"), []byte(n.conf))
		if err != nil {
			return fmt.Errorf("%s config: %w", n.name, err)
		}
		d, err := daemon.New(cfg, opt.Log.WithField("node", n.name))
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if err := d.Start(ctx); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		daemons = append(daemons, d)
	}
	home, laptop := daemons[0], daemons[1]
	fmt.Fprintf(out, "rendezvous server on %s, two peers registered: laptop and home\n", rvAddr)

	start := time.Now()
	if err := waitConnected(ctx, laptop, "home", 15*time.Second); err != nil {
		return err
	}
	ps := laptop.Status().Peers[0]
	fmt.Fprintf(out, "laptop ⇄ home: link up over %s in %v (TLS 1.3, keys pinned both ways)\n",
		ps.Path, time.Since(start).Round(time.Millisecond))

	fwdAddr := laptop.Listeners().ForwardAddrs()[0].String()
	socksAddr := laptop.Listeners().SocksAddrs()[0].String()
	_, webPort, _ := net.SplitHostPort(web.Addr().String())
	socksURL := "http://localhost:" + webPort + "/"

	body, err := get(ctx, http.DefaultTransport, "http://"+fwdAddr+"/")
	if err != nil {
		return fmt.Errorf("fetch through the forward: %w", err)
	}
	fmt.Fprintf(out, "forward %s → home's service \"web\": %q\n", fwdAddr, strings.TrimSpace(body))

	dialer, err := proxy.SOCKS5("tcp", socksAddr, nil, proxy.Direct)
	if err != nil {
		return err
	}
	tr := &http.Transport{DialContext: dialer.(proxy.ContextDialer).DialContext}
	defer tr.CloseIdleConnections()
	body, err = get(ctx, tr, socksURL)
	if err != nil {
		return fmt.Errorf("fetch through SOCKS5: %w", err)
	}
	fmt.Fprintf(out, "SOCKS5 %s, exit at home, %s resolved there: %q\n", socksAddr, socksURL, strings.TrimSpace(body))

	// The ACL on home lets laptop reach only local services.
	_, err = get(ctx, tr, "http://192.0.2.1:80/")
	var refused bool
	if err != nil && strings.Contains(err.Error(), "not allowed") {
		refused = true
	}
	if !refused {
		return fmt.Errorf("home's ACL should refuse 192.0.2.1:80, got %v", err)
	}
	fmt.Fprintln(out, "SOCKS5 to 192.0.2.1:80: refused by home's ACL (deny by default), as configured")
	if opt.Once {
		fmt.Fprintln(out, "demo: all checks passed")
		return nil
	}
	warren := cmp.Or(opt.Command, "warren")
	fmt.Fprintln(out, "\nall checks passed; the demo keeps running until you press Ctrl-C. Try:")
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	for _, try := range [][2]string{
		{"curl http://" + fwdAddr + "/", "laptop's forward to home's web service"},
		{"curl --socks5-hostname " + socksAddr + " " + socksURL, "laptop's SOCKS5 proxy, exit at home"},
		{warren + " status -admin " + laptop.AdminAddr().String(), "laptop's view of its peers"},
		{warren + " status -admin " + home.AdminAddr().String(), "home's view"},
		{warren + " ping -admin " + laptop.AdminAddr().String() + " home", "round trips from laptop to home over the link"},
	} {
		fmt.Fprintf(tw, "  %s\t# %s\n", try[0], try[1])
	}
	tw.Flush()
	<-ctx.Done()
	return nil
}

func waitConnected(ctx context.Context, d *daemon.Daemon, peer string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		for _, p := range d.Status().Peers {
			if p.Name == peer && p.State == daemon.StateConnected {
				return nil
			}
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.New("link did not come up within " + max.String())
}

func get(ctx context.Context, rt http.RoundTripper, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}
