//go:build linux

// Command forward is the benchmark's Go reference: the least an epoll
// event loop in Go can do between pgbench and PostgreSQL — accept, dial,
// and for every readable socket one recvfrom and one sendto to its peer,
// with no framing, tracking or parsing. It waits and yields the way the
// proxy's event loop does (raw epoll_pwait, a yield every 5 ms), so `make
// bench` can show how much of the proxy's distance to pgbouncer is a Go
// event loop's and how much the proxy's own. Not a product: no TLS, no
// backpressure (a send the socket does not take whole is dropped).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:55444", "address to listen on")
	upstream := flag.String("upstream", "127.0.0.1:55440", "PostgreSQL address")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "forward:", err)
		os.Exit(1)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "forward:", err)
		os.Exit(1)
	}
	pairs := make(chan [2]int, 64)
	go accept(ln, *upstream, pairs)
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1) // the loop keeps its P, as the proxy's does
	loop(ep, pairs)
}

// accept pairs every client with a new server connection.
func accept(ln net.Listener, upstream string, pairs chan<- [2]int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "forward:", err)
			os.Exit(1)
		}
		s, err := net.Dial("tcp", upstream)
		if err != nil {
			fmt.Fprintln(os.Stderr, "forward:", err)
			_ = c.Close()
			continue
		}
		pairs <- [2]int{rawFD(c), rawFD(s)}
		_ = c.Close() // the duplicates stay open
		_ = s.Close()
	}
}

// rawFD returns a non-blocking duplicate of a TCP connection's socket.
func rawFD(c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		panic(err)
	}
	fd := -1
	_ = rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e == 0 {
			fd = int(r)
		}
	})
	if fd < 0 || syscall.SetNonblock(fd, true) != nil {
		panic("forward: cannot take the socket")
	}
	return fd
}

func loop(ep int, pairs <-chan [2]int) {
	peer := map[int]int{}
	buf := make([]byte, 64*1024)
	evs := make([]syscall.EpollEvent, 256)
	yielded := time.Now()
	for {
		select {
		case p := <-pairs:
			peer[p[0]], peer[p[1]] = p[1], p[0]
			for _, fd := range p {
				ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
				_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev)
			}
		default:
		}
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep),
			uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 10, 0, 0)
		if e != 0 || n == 0 || time.Since(yielded) >= 5*time.Millisecond {
			runtime.Gosched()
			yielded = time.Now()
		}
		if e != 0 {
			continue
		}
		for i := range int(n) {
			fd := int(evs[i].Fd)
			r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
			if e == syscall.EAGAIN || e == syscall.EINTR {
				continue
			}
			other := peer[fd]
			if e != 0 || r == 0 {
				for _, x := range []int{fd, other} {
					_ = syscall.EpollCtl(ep, syscall.EPOLL_CTL_DEL, x, nil)
					_ = syscall.Close(x)
					delete(peer, x)
				}
				continue
			}
			_, _, _ = syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(other), uintptr(unsafe.Pointer(&buf[0])), r, syscall.MSG_NOSIGNAL, 0, 0)
		}
	}
}
