#define _GNU_SOURCE
/* Listening sockets and peer addresses, shared by the MQTT workers and the
 * management thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net.h"

int moat_listen_socket(const struct moat_listener_conf *lc, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = -1, one = 1;
	int family = strchr(lc->bind, ':') ? AF_INET6 : AF_INET;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(lc->port);
		if (inet_pton(AF_INET6, lc->bind, &a->sin6_addr) != 1)
			goto bad;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(lc->port);
		if (inet_pton(AF_INET, lc->bind, &a->sin_addr) != 1)
			goto bad;
		sl = sizeof(*a);
	}
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto bad;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0)
		goto bad;
	return fd;
bad:
	snprintf(err, errlen, "listener %s: cannot listen on %s port %u: %s", lc->name, lc->bind,
		 lc->port, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

void moat_sockaddr_str(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	if (outlen == 0)
		return;
	snprintf(out, outlen, "?");
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ss)->sin_addr, out,
			  (socklen_t)outlen);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr,
			  out, (socklen_t)outlen);
}
