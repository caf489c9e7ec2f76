/*
 * forward.c is the benchmark's C reference: the same least-possible epoll
 * forwarder as bench/forward (accept, dial, one recv and one send per
 * readable socket, no framing or parsing), in C, so that `make bench` can
 * tell a Go event loop's cost from the proxy's own. Not a product: no TLS,
 * no backpressure (a send the socket does not take whole is dropped).
 *
 * usage: forward LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536

static int peer[MAXFD];
static char buf[65536];

static void tune(int fd) {
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	fcntl(fd, F_SETFL, O_NONBLOCK);
}

static struct sockaddr_in loopback(int port) {
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	return a;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
		return 2;
	}
	int lport = atoi(argv[1]), uport = atoi(argv[2]), one = 1;
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in la = loopback(lport);
	if (bind(ls, (struct sockaddr *)&la, sizeof la) < 0 || listen(ls, 128) < 0) {
		perror("forward: listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = {.events = EPOLLIN, .data.fd = ls};
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
				if (c < 0)
					continue;
				int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
				struct sockaddr_in ua = loopback(uport);
				if (c >= MAXFD || s < 0 || s >= MAXFD || connect(s, (struct sockaddr *)&ua, sizeof ua) < 0) {
					close(c);
					if (s >= 0)
						close(s);
					continue;
				}
				tune(c);
				tune(s);
				peer[c] = s;
				peer[s] = c;
				struct epoll_event ce = {.events = EPOLLIN, .data.fd = c}, se = {.events = EPOLLIN, .data.fd = s};
				epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				epoll_ctl(ep, EPOLL_CTL_ADD, s, &se);
				continue;
			}
			ssize_t r = recv(fd, buf, sizeof buf, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				int other = peer[fd];
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				epoll_ctl(ep, EPOLL_CTL_DEL, other, NULL);
				close(fd);
				close(other);
				continue;
			}
			send(peer[fd], buf, (size_t)r, MSG_NOSIGNAL);
		}
	}
}
