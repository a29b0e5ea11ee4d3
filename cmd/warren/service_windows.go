//go:build windows

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// serviceName is the Windows service `warren service install` registers.
const serviceName = "warren"

// runDaemon runs body until ctx ends. Started by the service control
// manager, it runs as a Windows service instead: Stop and Shutdown end it,
// and a parameter change (`sc control warren paramchange`) reloads the
// config, as SIGHUP does elsewhere.
func runDaemon(ctx context.Context, body func(ctx context.Context, reloads <-chan struct{}) error) error {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return fmt.Errorf("service check: %w", err)
	}
	if !isService {
		return body(ctx, nil)
	}
	h := &serviceHandler{body: body}
	if err := svc.Run(serviceName, h); err != nil {
		return fmt.Errorf("run as service: %w", err)
	}
	return h.err
}

type serviceHandler struct {
	body func(ctx context.Context, reloads <-chan struct{}) error
	err  error
}

func (h *serviceHandler) Execute(_ []string, requests <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	const accepts = svc.AcceptStop | svc.AcceptShutdown | svc.AcceptParamChange
	changes <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reloads := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- h.body(ctx, reloads) }()
	changes <- svc.Status{State: svc.Running, Accepts: accepts}
	for {
		select {
		case err := <-done:
			// The daemon ended on its own: a bad config or a bind failure.
			h.err = err
			if err != nil {
				return false, 1
			}
			return false, 0
		case r := <-requests:
			switch r.Cmd {
			case svc.Interrogate:
				changes <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				changes <- svc.Status{State: svc.StopPending, WaitHint: uint32((shutdownGrace + 5*time.Second) / time.Millisecond)}
				cancel()
				h.err = <-done
				return false, 0
			case svc.ParamChange:
				select {
				case reloads <- struct{}{}:
				default:
				}
			}
		}
	}
}

// cmdService installs or removes the Windows service that runs
// `warren up -c FILE -log FILE`.
func cmdService(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "install" && args[0] != "uninstall") {
		return usagef("warren service install -c FILE [-log FILE] | warren service uninstall")
	}
	fs := newFlags("service "+args[0], stderr)
	path := fs.String("c", "", "config `FILE`")
	logFile := fs.String("log", "", "log `FILE` (default: warren.log beside the config)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	if args[0] == "uninstall" {
		s, err := m.OpenService(serviceName)
		if err != nil {
			return fmt.Errorf("service %s: %w", serviceName, err)
		}
		defer s.Close()
		if err := s.Delete(); err != nil {
			return fmt.Errorf("delete service %s: %w", serviceName, err)
		}
		fmt.Fprintf(stdout, "service %s removed (it stops when it next stops)\n", serviceName)
		return nil
	}
	if *path == "" {
		return usagef("-c FILE is required")
	}
	cfg, err := filepath.Abs(*path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg); err != nil {
		return usageError{err}
	}
	logPath := *logFile
	if logPath == "" {
		logPath = filepath.Join(filepath.Dir(cfg), "warren.log")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		return errors.New("service warren exists already; warren service uninstall first")
	}
	s, err := m.CreateService(serviceName, exe, mgr.Config{
		DisplayName: "warren peer daemon",
		Description: "NAT-traversing links to peers, with SOCKS5 and port forwards through them",
		StartType:   mgr.StartAutomatic,
	}, "up", "-c", cfg, "-log", logPath)
	if err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	defer s.Close()
	fmt.Fprintf(stdout, "service %s installed: %s up -c %s -log %s\nstart it with: sc start %s\n", serviceName, exe, cfg, logPath, serviceName)
	return nil
}
