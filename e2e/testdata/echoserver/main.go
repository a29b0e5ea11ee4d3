// Command echoserver is the echo service of the e2e stream benchmarks, in
// a process of its own: holding 10,000 idle connections' service ends in
// the benchmark process, next to their 10,000 client ends, would reach the
// 20,000 file descriptors a process may open.
//
// It listens on 127.0.0.1 (port 0 unless -listen says otherwise), prints
// "port N" once it accepts, and echoes every connection until EOF. It
// exits when its standard input closes, so it never outlives the
// benchmark that started it.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
)

// bufSize is each connection's echo buffer. The benchmarks send a few
// bytes per connection and then hold it idle, so a small buffer keeps
// 10,000 connections at a few MiB here (io.Copy's 32 KiB would take
// 320 MiB of a shared machine for nothing).
const bufSize = 512

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors, say: the benchmark sees the failed
			// echo and reports it.
			fmt.Fprintln(os.Stderr, err)
			continue
		}
		go func() {
			defer c.Close()
			io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, bufSize))
		}()
	}
}
