package e2e

import (
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// sshFileSize is what TestSSHAcrossConeNATs copies each way.
const sshFileSize = 100 << 20

// TestSSHAcrossConeNATs is the RDP use (examples/rdp) with a real client
// and server: OpenSSH's sshd on the office's loopback, exposed as the
// "rdp" service, and scp on a laptop behind another port-restricted cone
// NAT, through the laptop's forward. It copies a 100 MiB random file up,
// checks its SHA-256 with sha256sum run on the office over ssh, copies it
// back down and checks it again.
func TestSSHAcrossConeNATs(t *testing.T) {
	sshd := needTool(t, "sshd", "openssh-server")
	tools := map[string]string{}
	for _, name := range []string{"ssh", "scp", "ssh-keygen"} {
		tools[name] = needTool(t, name, "openssh-client")
	}
	lab, a, b := twoCones(t)
	laptop, office := a.Host(), b.Host()
	w := labWorld(t, lab)

	dir := t.TempDir()
	s := startSSHD(t, office, sshd, tools["ssh-keygen"], dir)
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	fwd := freePort(t, laptop)
	p := startPair(t, w, "rdp", laptop, office, "laptop", "office", keys,
		[]string{"127.0.0.1:13389", hostPort("127.0.0.1", fwd)}, []string{"127.0.0.1:3389", hostPort("127.0.0.1", s.port)})
	if !strings.HasPrefix(p.link.Path, "direct-") {
		t.Errorf("path %q, want a direct path", p.link.Path)
	}

	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	remote := me.Username + "@127.0.0.1"
	opts := []string{
		"-F", "/dev/null", "-i", s.clientKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=10",
	}
	// ssh runs one command on the office through the forward.
	ssh := func(cmd ...string) clientResult {
		t.Helper()
		args := append(append(append([]string{}, opts...), "-p", fwd, remote), cmd...)
		return runClient(t, laptop, 20*time.Second, nil, tools["ssh"], args...)
	}
	if r := ssh("echo", "hello from the office"); r.err != nil || strings.TrimSpace(r.stdout) != "hello from the office" {
		t.Fatalf("ssh through the forward 127.0.0.1:%s: %v, stdout %q\n%s", fwd, r.err, r.stdout, r.stderr)
	}

	src := filepath.Join(dir, "laptop-src.bin")
	up := filepath.Join(dir, "office-received.bin")
	down := filepath.Join(dir, "laptop-back.bin")
	want := writeRandomFile(t, src, sshFileSize)
	before := peerRow(t, laptop, p.clientAdmin, "office")

	for _, tc := range []struct {
		name     string
		from, to string // scp arguments
		got      string // the file that arrives
	}{
		{"up", src, remote + ":" + up, up},
		{"down", remote + ":" + up, down, down},
	} {
		args := append(append(append([]string{}, opts...), "-q", "-P", fwd), tc.from, tc.to)
		r := runClient(t, laptop, 60*time.Second, nil, tools["scp"], args...)
		if r.err != nil {
			t.Fatalf("scp %s (%s -> %s) through the forward: %v after %v\n%s", tc.name, tc.from, tc.to, r.err, r.took.Round(time.Millisecond), r.stderr)
		}
		got := fileSHA256(t, tc.got)
		if tc.name == "up" {
			// Hash where the file landed, on the office, over ssh too.
			r := ssh("sha256sum", "--", up)
			if f := strings.Fields(r.stdout); r.err != nil || len(f) == 0 || f[0] != got {
				t.Fatalf("sha256sum on the office: %v, %q\n%s", r.err, r.stdout, r.stderr)
			}
		}
		if got != want {
			t.Fatalf("scp %s: SHA-256 %s, sent %s", tc.name, got, want)
		}
		t.Logf("scp %s: %d MiB in %v, %.1f MiB/s, SHA-256 matches", tc.name, sshFileSize>>20,
			r.took.Round(time.Millisecond), float64(sshFileSize)/(1<<20)/r.took.Seconds())
	}

	// The bytes crossed the link, both ways.
	after := peerRow(t, laptop, p.clientAdmin, "office")
	if out, in := after.BytesOut-before.BytesOut, after.BytesIn-before.BytesIn; out < sshFileSize || in < sshFileSize {
		t.Errorf("laptop's link to office carried %d bytes out and %d in during the copies, want at least %d each way", out, in, sshFileSize)
	}
}

// sshServer is a running sshd and the client key it accepts.
type sshServer struct {
	port      string
	clientKey string
}

// startSSHD runs OpenSSH's sshd in the foreground on m's loopback with a
// generated host key, config and authorized client key, all in dir; it
// returns when sshd listens.
func startSSHD(t testing.TB, m machine, sshd, keygen, dir string) sshServer {
	t.Helper()
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	clientKey := filepath.Join(dir, "id_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if r := runClient(t, localhost{}, 20*time.Second, nil, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "warren-e2e", "-f", k); r.err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s%s", k, r.err, r.stdout, r.stderr)
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, m)
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, port, hostKey, authorized)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startService(t, m, "sshd", sshd, "-D", "-e", "-f", cfg)
	p.waitOutput(t, regexp.MustCompile(`Server listening on 127\.0\.0\.1 port `+port), 10*time.Second)
	return sshServer{port: port, clientKey: clientKey}
}

// writeRandomFile writes size random bytes to path and returns their
// SHA-256, hex encoded.
func writeRandomFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seed [32]byte
	crand.Read(seed[:])
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8(seed), size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileSHA256 returns the SHA-256 of the file at path, hex encoded.
func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// peerRow returns the daemon's status row for peer.
func peerRow(t testing.TB, m machine, admin, peer string) daemon.PeerStatus {
	t.Helper()
	var row daemon.PeerStatus
	waitStatus(t, m, admin, 5*time.Second, "status row for "+peer, func(st daemon.Status) bool {
		for _, p := range st.Peers {
			if p.Name == peer {
				row = p
				return true
			}
		}
		return false
	})
	return row
}
