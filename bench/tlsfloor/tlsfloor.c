#define _GNU_SOURCE
/*
 * moat-tlsfloor: OpenSSL's floor for an idle mutual-TLS connection.
 *
 * A server that does only what every MQTT-over-TLS broker must: accept,
 * complete the TLS handshake with Moat's own server context
 * (moat_tls_server_ctx: TLS 1.3, client certificate verified, buffers
 * released while idle, one session ticket), answer the first bytes with a
 * CONNACK and then hold the connection. Its resident memory per connection
 * is what OpenSSL and the kernel cost; `moat serve`'s figure minus this one
 * is Moat's own share (bench/run, the idle scenario). One thread, epoll,
 * the connection state a bare struct.
 *
 * usage: moat-tlsfloor --dir DATA --port PORT [--bind ADDR]
 *   DATA holds server.crt, server.key and ca.crt (moat init's layout).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/tls.h"

struct floor_conn {
	int fd;
	SSL *ssl;
	int state; /* 0 handshake, 1 waiting for CONNECT, 2 idle */
};

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fputs("usage: moat-tlsfloor --dir DATA --port PORT [--bind ADDR]\n"
	      "\n"
	      "Holds idle mutual-TLS connections with Moat's own TLS server context and\n"
	      "nothing else (a CONNACK answers the first packet), to measure OpenSSL's\n"
	      "memory per connection beside moat serve's. DATA holds server.crt,\n"
	      "server.key and ca.crt. Stops on SIGTERM or SIGINT.\n",
	      f);
}

static void conn_close(int ep, struct floor_conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	SSL_free(c->ssl);
	close(c->fd);
	free(c);
}

static void conn_step(int ep, struct floor_conn *c)
{
	/* v5 CONNACK: session present 0, reason 0, no properties; v3.1.1
	 * clients read the first two bytes of the same layout. */
	static const unsigned char connack5[] = {0x20, 0x03, 0x00, 0x00, 0x00};
	unsigned char buf[4096];
	int r;

	if (c->state == 0) {
		r = SSL_accept(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				conn_close(ep, c);
			}
			return;
		}
		c->state = 1;
	}
	for (;;) {
		r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				conn_close(ep, c);
			}
			return;
		}
		if (c->state == 1) {
			/* The CONNECT (whatever it holds): accept it. */
			if (SSL_write(c->ssl, connack5, (int)sizeof(connack5)) <= 0) {
				ERR_clear_error();
				conn_close(ep, c);
				return;
			}
			c->state = 2;
		}
	}
}

int main(int argc, char **argv)
{
	const char *dir = NULL, *bind_addr = "127.0.0.1";
	char cert[4096], key[4096], ca[4096], err[1024];
	struct moat_tls_paths paths;
	struct sockaddr_in sa;
	struct epoll_event ev, evs[256];
	SSL_CTX *ctx;
	int port = 0, lfd, ep, one = 1, i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			port = (*end == '\0' && v > 0 && v <= 65535) ? (int)v : -1;
		} else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
			bind_addr = argv[++i];
		} else {
			fprintf(stderr, "moat-tlsfloor: unexpected argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (dir == NULL || port <= 0 || port > 65535) {
		usage(stderr);
		return 2;
	}
	snprintf(cert, sizeof(cert), "%s/server.crt", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	paths.cert = cert;
	paths.key = key;
	paths.ca = ca;
	ctx = moat_tls_server_ctx(&paths, true, err, sizeof(err));
	if (ctx == NULL) {
		fprintf(stderr, "moat-tlsfloor: %s\n", err);
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "moat-tlsfloor: --bind %s: not an IPv4 address\n", bind_addr);
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4096) != 0) {
		fprintf(stderr, "moat-tlsfloor: listen on %s:%d: %s\n", bind_addr, port,
			strerror(errno));
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) {
		fprintf(stderr, "moat-tlsfloor: epoll: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	while (!stop) {
		int n = epoll_wait(ep, evs, 256, 1000);
		for (i = 0; i < n; i++) {
			struct floor_conn *c = evs[i].data.ptr;
			if (c == NULL) {
				int fd;
				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					c = calloc(1, sizeof(*c));
					if (c == NULL) {
						close(fd);
						continue;
					}
					(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
							 sizeof(one));
					c->fd = fd;
					c->ssl = SSL_new(ctx);
					if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
						SSL_free(c->ssl);
						close(fd);
						free(c);
						continue;
					}
					SSL_set_accept_state(c->ssl);
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
						conn_close(ep, c);
						continue;
					}
				}
				continue;
			}
			conn_step(ep, c);
		}
	}
	SSL_CTX_free(ctx);
	close(ep);
	close(lfd);
	return 0;
}
