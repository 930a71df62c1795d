/*
 * The CLI's HTTPS client: one blocking HTTP/1.1 request per TLS connection
 * (`Connection: close`) to the management API.
 *
 * TLS 1.2 or later; the server certificate must chain to the CA file the
 * operator named (or to the system trust store) AND name the host or IP the
 * URL names. Responses are parsed by llhttp; the body is capped at
 * MOAT_CLI_MAX_RESPONSE. The prefix is moat_hc_ (HTTP client) so it cannot
 * collide with the server's src/http/.
 */
#ifndef MOAT_CLI_HTTP_CLIENT_H
#define MOAT_CLI_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* A parsed `https://HOST[:PORT][/]`. */
struct moat_hc_url {
	char host[256]; /* name or IP literal, IPv6 without brackets */
	char port[6];	/* decimal, "443" by default */
	bool is_ip;	/* host is an IPv4 or IPv6 literal */
	bool ipv6;
	char canon[300]; /* "https://host:port" (IPv6 in brackets): for messages and
			  * for comparing servers */
};

/* Parse url. On failure err says what is wrong with it (MOAT_E_INVAL). */
moat_err moat_hc_url_parse(const char *url, struct moat_hc_url *u, char *err, size_t errlen);

struct moat_hc_req {
	const char *method; /* "GET", "POST", "PATCH", "DELETE" */
	const char *path;   /* origin-form target: "/api/v1/users?limit=50" */
	const char *body;   /* NULL: no body */
	size_t body_len;
	const char *content_type; /* of the body; "application/json" by default */
	const char *bearer;	  /* Authorization: Bearer <bearer>, or NULL */
	const char *session;	  /* Cookie: __Host-moat_session=<session>, or NULL */
	const char *csrf;	  /* X-CSRF-Token on POST/PUT/PATCH/DELETE with a session */
};

struct moat_hc_resp {
	int status;
	char *body; /* NUL-terminated (the NUL is not counted); never NULL on success */
	size_t body_len;
	char *content_type; /* NULL if absent */
	char *retry_after;  /* NULL if absent */
	char *session;	    /* value of a `Set-Cookie: __Host-moat_session=...`, or NULL */
};

/*
 * Send req to the server at u over TLS, verifying the server against ca_file
 * (PEM; NULL or "" for the system trust store). On success *resp holds the
 * answer whatever its status; free it with moat_hc_resp_free. On failure
 * err holds one readable line (cannot connect, TLS verification failed and
 * how to fix it, timeout, malformed or oversized answer).
 */
moat_err moat_hc_request(const struct moat_hc_url *u, const char *ca_file,
			 const struct moat_hc_req *req, struct moat_hc_resp *resp, char *err,
			 size_t errlen);

/* Wipe (the body and cookie may hold secrets) and free; safe on a zeroed
 * struct. */
void moat_hc_resp_free(struct moat_hc_resp *resp);

#endif
