package forward_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/forward/forwardtest"
)

// resettingOpener opens streams whose far end reads the request and
// resets the stream without a reply, as a link over its stream limit or
// receive budget does.
type resettingOpener struct{ t *testing.T }

func (o resettingOpener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	near, far, err := forwardtest.TCPPair(ctx)
	if err != nil {
		return nil, err
	}
	go func() {
		far.SetReadDeadline(time.Now().Add(5 * time.Second))
		forward.ReadRequest(far)
		far.(*net.TCPConn).SetLinger(0)
		far.Close()
	}()
	return near, nil
}

// Issue 16: a connection the peer's link refuses (over a limit) is
// refused here with a log line that says so and, for SOCKS5, a reply code
// (general failure), not a connection cut off without a word.
func TestStreamRefusedByPeersLink(t *testing.T) {
	log, hook := testLogger(t)
	l := forward.NewListeners([]config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil,
		resettingOpener{t}, forward.Config{}, log.WithField("side", "local"))
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dialTCP(t, l.SocksAddrs()[0])
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if code := socksConnect(t, c, "127.0.0.1:9"); code != forward.CodeGeneralFailure {
		t.Fatalf("SOCKS5 reply %d, want %d (general failure)", code, forward.CodeGeneralFailure)
	}
	waitFor(t, "the refusal's log line", func() bool {
		e := findEntry(hook, "refused by peer")
		return e != nil && strings.Contains(e.Data["reason"].(string), "stream limit")
	})
}
