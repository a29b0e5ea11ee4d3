//go:build !windows

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// runDaemon runs body until ctx ends, turning each SIGHUP into a reload.
func runDaemon(ctx context.Context, body func(ctx context.Context, reloads <-chan struct{}) error) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reloads := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reloads <- struct{}{}:
				default: // one reload pending reads the newest file anyway
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return body(ctx, reloads)
}

func cmdService(_ context.Context, _ []string, _, _ io.Writer) error {
	return usageError{errors.New("warren service is for Windows; on Linux use examples/systemd/warren.service")}
}
