package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
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
