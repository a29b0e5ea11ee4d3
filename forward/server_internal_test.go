package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestDialErrorCode(t *testing.T) {
	op := func(errno error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		err  error
		want byte
	}{
		{op(syscall.ECONNREFUSED), CodeConnectionRefused},
		{op(syscall.ENETUNREACH), CodeNetworkUnreachable},
		{op(syscall.EHOSTUNREACH), CodeHostUnreachable},
		{op(syscall.ETIMEDOUT), CodeTTLExpired},
		{op(syscall.ECONNRESET), CodeGeneralFailure},
		{&net.OpError{Op: "dial", Err: context.DeadlineExceeded}, CodeTTLExpired},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), CodeTTLExpired},
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, CodeHostUnreachable},
		{&net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, CodeTTLExpired},
		{errors.New("something"), CodeGeneralFailure},
	}
	for _, tt := range tests {
		if got := dialErrorCode(tt.err); got != tt.want {
			t.Errorf("dialErrorCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// abortRecorder is a stream that records whether it was aborted.
type abortRecorder struct {
	net.Conn
	aborted atomic.Bool
}

func (a *abortRecorder) Abort() error {
	a.aborted.Store(true)
	return a.Conn.Close()
}

// Issue 15, finding 9: a refused stream is reset after its reply, so that
// a link forgets it at once instead of waiting for a peer that may never
// finish it; the reply still arrives first.
func TestRefusedStreamIsAborted(t *testing.T) {
	granted := Request{Kind: KindTarget, Payload: "127.0.0.1:1"}
	var b bytes.Buffer
	if err := WriteRequest(&b, granted); err != nil {
		t.Fatal(err)
	}
	for _, req := range [][]byte{
		b.Bytes(),          // not granted
		[]byte{9, 9, 0, 0}, // not a request
	} {
		pol, err := NewPolicy(nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		log := logrus.New()
		log.SetOutput(io.Discard)
		srv := NewServer(pol, Config{}, log)
		near, far := net.Pipe()
		stream := &abortRecorder{Conn: far}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeStream(context.Background(), stream, "alice")
		}()
		near.SetDeadline(time.Now().Add(5 * time.Second))
		go near.Write(req)
		rep, err := ReadReply(near)
		if req[0] == Version && (err != nil || rep.Code != CodeNotAllowed) {
			t.Fatalf("reply %+v, %v; want not allowed", rep, err)
		}
		<-done
		near.Close()
		if !stream.aborted.Load() {
			t.Errorf("request %x: refused stream closed, not aborted", req)
		}
	}
}
