/* Listening sockets and peer addresses (shared by MQTT and HTTPS). */
#ifndef MOAT_NET_H
#define MOAT_NET_H

#include <stddef.h>
#include <sys/socket.h>

#include "core/config.h"

/* A non-blocking listening socket for lc (SO_REUSEPORT, so each worker can
 * own one); -1 with a sentence in err on failure. */
int moat_listen_socket(const struct moat_listener_conf *lc, char *err, size_t errlen);

/* The numeric address of ss ("?" if not IPv4/IPv6). */
void moat_sockaddr_str(const struct sockaddr_storage *ss, char *out, size_t outlen);

#endif
