/*
 * The CLI's blocking HTTPS/1.1 client; see http_client.h for the contract.
 *
 * One request per connection keeps it simple: no keep-alive state, no
 * pipelining, and the answer ends at the latest when the server closes.
 * Every byte from the server is untrusted: llhttp parses it (no hand-written
 * HTTP parser), the head and the body are capped, and only the headers the
 * CLI needs are kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "cli/cli.h"
#include "cli/http_client.h"
#include "core/buf.h"
#include "core/limits.h"
#include "tls/tls.h"

/* Longest header value we look at (Content-Type, Retry-After, Set-Cookie):
 * the session cookie with its attributes is well under 200 bytes. */
#define HC_MAX_VALUE 4096u
/* Longest header name we compare; longer names are not ones we want. */
#define HC_MAX_FIELD 64u
/* Longest session cookie value we keep. */
#define HC_MAX_COOKIE 1024u
/* Request head, without the body. */
#define HC_MAX_REQUEST_HEAD (16u * 1024u)

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* --------------------------------------------------------------------- */
/* URL                                                                    */

static bool hc_name_valid(const char *h, size_t n)
{
	bool all_digits = true;
	size_t i;

	if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
		return false;
	for (i = 0; i < n; i++) {
		char c = h[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')
			all_digits = false;
		else if (!((c >= '0' && c <= '9') || c == '.'))
			return false;
	}
	/* "127.1" or "10.0.0.256" would be resolved as numbers by the resolver
	 * and then matched as a DNS name: refuse them as IP addresses. */
	return !all_digits;
}

moat_err moat_hc_url_parse(const char *url, struct moat_hc_url *u, char *err, size_t errlen)
{
	struct moat_hc_url t;
	const char *p, *host, *hend, *port = NULL, *pend = NULL;
	unsigned char addr[16];
	size_t hlen, i;
	int n;

	memset(&t, 0, sizeof(t));
	if (url == NULL || *url == '\0') {
		errf(err, errlen, "empty server URL (expected https://HOST[:PORT])");
		return MOAT_E_INVAL;
	}
	if (strncasecmp(url, "https://", 8) != 0) {
		if (strncasecmp(url, "http://", 7) == 0)
			errf(err, errlen,
			     "'%s': plain http is not supported; use https://HOST[:PORT]", url);
		else
			errf(err, errlen,
			     "'%s' is not an https:// URL (expected https://HOST[:PORT])", url);
		return MOAT_E_INVAL;
	}
	p = url + 8;
	if (*p == '[') {
		host = p + 1;
		hend = strchr(host, ']');
		if (hend == NULL) {
			errf(err, errlen, "'%s': missing ']' after the IPv6 address", url);
			return MOAT_E_INVAL;
		}
		p = hend + 1;
		t.ipv6 = true;
	} else {
		host = p;
		hend = p + strcspn(p, ":/?#@[]");
		p = hend;
	}
	if (*p == ':') {
		port = p + 1;
		pend = port + strcspn(port, "/?#@");
		p = pend;
	}
	if (*p != '\0' && strcmp(p, "/") != 0) {
		errf(err, errlen,
		     "'%s': expected https://HOST[:PORT] without user, path, query or fragment",
		     url);
		return MOAT_E_INVAL;
	}
	hlen = (size_t)(hend - host);
	if (hlen == 0 || hlen >= sizeof(t.host)) {
		errf(err, errlen, "'%s': %s host", url, hlen == 0 ? "missing" : "overlong");
		return MOAT_E_INVAL;
	}
	memcpy(t.host, host, hlen);
	t.host[hlen] = '\0';
	if (t.ipv6) {
		if (inet_pton(AF_INET6, t.host, addr) != 1) {
			errf(err, errlen, "'%s': '%s' is not an IPv6 address", url, t.host);
			return MOAT_E_INVAL;
		}
		t.is_ip = true;
	} else if (inet_pton(AF_INET, t.host, addr) == 1) {
		t.is_ip = true;
	} else if (!hc_name_valid(t.host, hlen)) {
		errf(err, errlen, "'%s': '%s' is not a host name or IP address", url, t.host);
		return MOAT_E_INVAL;
	} else {
		for (i = 0; i < hlen; i++) {
			if (t.host[i] >= 'A' && t.host[i] <= 'Z')
				t.host[i] = (char)(t.host[i] - 'A' + 'a');
		}
	}
	if (port != NULL) {
		size_t plen = (size_t)(pend - port);
		unsigned long v;
		char *end;

		if (plen == 0 || plen > 5 || port[0] < '0' || port[0] > '9') {
			errf(err, errlen, "'%s': the port must be 1-65535", url);
			return MOAT_E_INVAL;
		}
		memcpy(t.port, port, plen);
		t.port[plen] = '\0';
		errno = 0;
		v = strtoul(t.port, &end, 10);
		if (errno != 0 || *end != '\0' || v == 0 || v > 65535) {
			errf(err, errlen, "'%s': the port must be 1-65535", url);
			return MOAT_E_INVAL;
		}
		(void)snprintf(t.port, sizeof(t.port), "%lu", v);
	} else {
		memcpy(t.port, "443", 4);
	}
	n = snprintf(t.canon, sizeof(t.canon), "https://%s%s%s:%s", t.ipv6 ? "[" : "", t.host,
		     t.ipv6 ? "]" : "", t.port);
	if (n < 0 || (size_t)n >= sizeof(t.canon)) {
		errf(err, errlen, "'%s': URL too long", url);
		return MOAT_E_INVAL;
	}
	*u = t;
	return MOAT_OK;
}

/* --------------------------------------------------------------------- */
/* TCP                                                                    */

static int64_t hc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connect one address with the deadline; 0 or an errno. */
static int hc_connect_one(int fd, const struct addrinfo *ai, int64_t deadline)
{
	struct pollfd pfd;
	socklen_t sl = sizeof(int);
	int soerr = 0, r;

	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return errno;
	for (;;) {
		int64_t left = deadline - hc_now_ms();
		if (left <= 0)
			return ETIMEDOUT;
		pfd.fd = fd;
		pfd.events = POLLOUT;
		pfd.revents = 0;
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			return ETIMEDOUT;
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
		return errno;
	return soerr;
}

static int hc_connect(const struct moat_hc_url *u, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct timeval tv;
	int64_t deadline;
	int fd = -1, last = ECONNREFUSED, rc, flags;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (u->is_ip ? AI_NUMERICHOST : 0);
	rc = getaddrinfo(u->host, u->port, &hints, &res);
	if (rc != 0) {
		errf(err, errlen, "cannot connect to %s: cannot resolve %s: %s", u->canon, u->host,
		     rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	deadline = hc_now_ms() + (int64_t)MOAT_CLI_CONNECT_TIMEOUT_S * 1000;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		last = hc_connect_one(fd, ai, deadline);
		if (last == 0)
			break;
		close(fd);
		fd = -1;
		if (last == ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		if (last == ETIMEDOUT)
			errf(err, errlen, "cannot connect to %s: no answer within %u s", u->canon,
			     MOAT_CLI_CONNECT_TIMEOUT_S);
		else
			errf(err, errlen, "cannot connect to %s: %s", u->canon, strerror(last));
		return -1;
	}
	/* Blocking from here on, with a bound on every read and write. */
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		errf(err, errlen, "cannot connect to %s: fcntl: %s", u->canon, strerror(errno));
		close(fd);
		return -1;
	}
	tv.tv_sec = MOAT_CLI_IO_TIMEOUT_S;
	tv.tv_usec = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
		errf(err, errlen, "cannot connect to %s: setsockopt: %s", u->canon,
		     strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* --------------------------------------------------------------------- */
/* TLS                                                                    */

static SSL_CTX *hc_ctx(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char why[512] = "";

	if (ctx == NULL) {
		moat_tls_errors(why, sizeof(why));
		errf(err, errlen, "TLS: cannot create a context: %s", why);
		return NULL;
	}
	/* The server's policy (tls.h): TLS 1.3, or 1.2 with ECDHE and AEAD. */
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL && *ca_file != '\0') {
		FILE *f = fopen(ca_file, "r");
		if (f == NULL) {
			errf(err, errlen, "cannot read CA file %s: %s", ca_file, strerror(errno));
			SSL_CTX_free(ctx);
			return NULL;
		}
		fclose(f);
		if (SSL_CTX_load_verify_file(ctx, ca_file) != 1) {
			moat_tls_errors(why, sizeof(why));
			errf(err, errlen, "CA file %s holds no usable certificate: %s", ca_file,
			     why);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		goto fail;
	}
	return ctx;
fail:
	moat_tls_errors(why, sizeof(why));
	errf(err, errlen, "TLS: cannot configure the context: %s", why);
	SSL_CTX_free(ctx);
	return NULL;
}

static void hc_tls_fail(const struct moat_hc_url *u, SSL *ssl, int ret, int saved,
			const char *ca_file, char *err, size_t errlen)
{
	long vr = SSL_get_verify_result(ssl);
	int e = SSL_get_error(ssl, ret);
	char why[512] = "";

	if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		ERR_clear_error();
		errf(err, errlen,
		     "TLS: certificate verify failed: the server certificate does not name %s; "
		     "fix: connect with a name or address it carries (moat init --san adds one)",
		     u->host);
	} else if (vr != X509_V_OK) {
		ERR_clear_error();
		errf(err, errlen, "TLS: certificate verify failed: %s; fix: pass --ca %s",
		     X509_verify_cert_error_string(vr),
		     ca_file != NULL && *ca_file != '\0'
			 ? "with the CA that signed the server certificate (DATA_DIR/ca.crt)"
			 : "DATA_DIR/ca.crt");
	} else if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)) {
		ERR_clear_error();
		errf(err, errlen, "TLS handshake with %s: no answer within %u s", u->canon,
		     MOAT_CLI_IO_TIMEOUT_S);
	} else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		errf(err, errlen, "TLS handshake with %s failed: %s", u->canon,
		     saved != 0 ? strerror(saved) : "connection closed by the server");
	} else {
		moat_tls_errors(why, sizeof(why));
		errf(err, errlen, "TLS handshake with %s failed: %s", u->canon,
		     why[0] != '\0' ? why : "unknown error");
	}
}

/* --------------------------------------------------------------------- */
/* Request                                                                */

/* Bytes we put in the request head from callers: printable ASCII without
 * spaces, so nothing can add a header or split the request. */
static bool hc_token_ok(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	}
	return true;
}

static bool hc_state_changing(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	       strcmp(method, "OPTIONS") != 0;
}

static moat_err hc_put(struct moat_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static moat_err hc_put(struct moat_buf *b, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;
	moat_err rc;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		rc = MOAT_E_LIMIT;
	} else {
		rc = moat_buf_append(b, line, (size_t)n);
	}
	sodium_memzero(line, sizeof(line));
	return rc;
}

static moat_err hc_build(const struct moat_hc_url *u, const struct moat_hc_req *req,
			 struct moat_buf *b, char *err, size_t errlen)
{
	bool std_port = strcmp(u->port, "443") == 0;

	if (!hc_token_ok(req->method) || !hc_token_ok(req->path) || req->path[0] != '/' ||
	    (req->bearer != NULL && !hc_token_ok(req->bearer)) ||
	    (req->session != NULL && !hc_token_ok(req->session)) ||
	    (req->csrf != NULL && !hc_token_ok(req->csrf)) ||
	    (req->content_type != NULL && !hc_token_ok(req->content_type))) {
		errf(err, errlen,
		     "refusing to send a request with control characters or spaces "
		     "in its method, path or credentials");
		return MOAT_E_INVAL;
	}
	if (hc_put(b, "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n", req->method, req->path,
		   u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "", std_port ? "" : ":",
		   std_port ? "" : u->port) != MOAT_OK ||
	    hc_put(b,
		   "User-Agent: moat-cli/%s\r\nAccept: application/json, "
		   "application/problem+json\r\nConnection: close\r\n",
		   MOAT_VERSION) != MOAT_OK)
		goto toolong;
	if (req->bearer != NULL &&
	    hc_put(b, "Authorization: Bearer %s\r\n", req->bearer) != MOAT_OK)
		goto toolong;
	if (req->session != NULL) {
		if (hc_put(b, "Cookie: __Host-moat_session=%s\r\n", req->session) != MOAT_OK)
			goto toolong;
		if (req->csrf != NULL && hc_state_changing(req->method) &&
		    hc_put(b, "X-CSRF-Token: %s\r\n", req->csrf) != MOAT_OK)
			goto toolong;
	}
	if (req->body != NULL) {
		if (hc_put(b, "Content-Type: %s\r\nContent-Length: %zu\r\n",
			   req->content_type != NULL ? req->content_type : "application/json",
			   req->body_len) != MOAT_OK)
			goto toolong;
	} else if (hc_state_changing(req->method)) {
		if (hc_put(b, "Content-Length: 0\r\n") != MOAT_OK)
			goto toolong;
	}
	if (moat_buf_append(b, "\r\n", 2) != MOAT_OK)
		goto toolong;
	if (req->body != NULL && req->body_len > 0 &&
	    moat_buf_append(b, req->body, req->body_len) != MOAT_OK)
		goto toolong;
	return MOAT_OK;
toolong:
	errf(err, errlen, "request too large");
	return MOAT_E_LIMIT;
}

/* --------------------------------------------------------------------- */
/* Response (llhttp callbacks)                                            */

struct hc_parse {
	struct moat_buf body; /* secret: answers carry session and CSRF tokens */
	char field[HC_MAX_FIELD];
	size_t field_len;
	bool field_long;
	bool field_done; /* the name is complete: the next name starts a new header */
	char value[HC_MAX_VALUE];
	size_t value_len;
	bool value_long;
	size_t head_bytes;
	char *content_type;
	char *retry_after;
	char *session;
	int status;
	bool done;
	const char *why; /* our reason when a callback fails */
};

static void hc_free_secret(char **p)
{
	if (*p != NULL) {
		sodium_memzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static int hc_head_count_cb(llhttp_t *p, size_t len)
{
	struct hc_parse *st = p->data;

	st->head_bytes += len;
	if (st->head_bytes > MOAT_CLI_MAX_RESPONSE_HEAD) {
		st->why = "the response head is too large";
		return -1;
	}
	return 0;
}

static int hc_on_status_cb(llhttp_t *p, const char *at, size_t len)
{
	(void)at;
	return hc_head_count_cb(p, len);
}

static int hc_on_field_cb(llhttp_t *p, const char *at, size_t len)
{
	struct hc_parse *st = p->data;

	if (hc_head_count_cb(p, len) != 0)
		return -1;
	/* Do not rely on a value callback for every header (an empty value
	 * may have none): a new name always starts afresh. */
	if (st->field_done) {
		st->field_done = false;
		st->field_len = st->value_len = 0;
		st->field[0] = st->value[0] = '\0';
		st->field_long = st->value_long = false;
	}
	if (st->field_long || len >= sizeof(st->field) - st->field_len) {
		st->field_long = true;
		return 0;
	}
	memcpy(st->field + st->field_len, at, len);
	st->field_len += len;
	st->field[st->field_len] = '\0';
	return 0;
}

static int hc_on_value_cb(llhttp_t *p, const char *at, size_t len)
{
	struct hc_parse *st = p->data;

	if (hc_head_count_cb(p, len) != 0)
		return -1;
	if (st->value_long || len >= sizeof(st->value) - st->value_len) {
		st->value_long = true;
		return 0;
	}
	memcpy(st->value + st->value_len, at, len);
	st->value_len += len;
	st->value[st->value_len] = '\0';
	return 0;
}

static int hc_on_field_done_cb(llhttp_t *p)
{
	struct hc_parse *st = p->data;

	st->field_done = true;
	return 0;
}

/* cookie-octet (RFC 6265 4.1.1) */
static bool hc_cookie_octet(unsigned char c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
	       (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static void hc_set_cookie(struct hc_parse *st)
{
	static const char name[] = "__Host-moat_session=";
	const char *v = st->value;
	size_t n = 0, i;

	while (*v == ' ' || *v == '\t')
		v++;
	if (strncmp(v, name, sizeof(name) - 1) != 0)
		return;
	v += sizeof(name) - 1;
	while (v[n] != '\0' && v[n] != ';' && v[n] != ' ' && v[n] != '\t')
		n++;
	/* An empty value is the server clearing the cookie (logout). */
	if (n == 0 || n > HC_MAX_COOKIE)
		return;
	for (i = 0; i < n; i++) {
		if (!hc_cookie_octet((unsigned char)v[i]))
			return;
	}
	hc_free_secret(&st->session);
	st->session = strndup(v, n);
}

static int hc_on_value_done_cb(llhttp_t *p)
{
	struct hc_parse *st = p->data;
	char **slot = NULL;

	if (!st->field_long && !st->value_long) {
		if (strcasecmp(st->field, "set-cookie") == 0)
			hc_set_cookie(st);
		else if (strcasecmp(st->field, "content-type") == 0)
			slot = &st->content_type;
		else if (strcasecmp(st->field, "retry-after") == 0)
			slot = &st->retry_after;
		if (slot != NULL) {
			free(*slot);
			*slot = strndup(st->value, st->value_len);
			if (*slot == NULL) {
				st->why = "out of memory";
				return -1;
			}
		}
	}
	sodium_memzero(st->value, sizeof(st->value));
	st->field_len = st->value_len = 0;
	st->field[0] = st->value[0] = '\0';
	st->field_long = st->value_long = false;
	return 0;
}

static int hc_on_headers_done_cb(llhttp_t *p)
{
	struct hc_parse *st = p->data;

	/* Check the declared size before reading the body (STYLE.md item 4). */
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > MOAT_CLI_MAX_RESPONSE) {
		st->why = "the response body is larger than the CLI accepts (16 MiB)";
		return -1;
	}
	return 0;
}

static int hc_on_body_cb(llhttp_t *p, const char *at, size_t len)
{
	struct hc_parse *st = p->data;

	if (len > MOAT_CLI_MAX_RESPONSE - moat_buf_used(&st->body)) {
		st->why = "the response body is larger than the CLI accepts (16 MiB)";
		return -1;
	}
	if (moat_buf_append(&st->body, at, len) != MOAT_OK) {
		st->why = "out of memory";
		return -1;
	}
	return 0;
}

static int hc_on_done_cb(llhttp_t *p)
{
	struct hc_parse *st = p->data;
	int status = llhttp_get_status_code(p);

	/* An interim 1xx answer: the real one follows on the same stream. */
	if (status >= 100 && status < 200 && status != 101) {
		moat_buf_reset(&st->body);
		free(st->content_type);
		st->content_type = NULL;
		free(st->retry_after);
		st->retry_after = NULL;
		return 0;
	}
	st->done = true;
	return HPE_PAUSED;
}

static void hc_parse_free(struct hc_parse *st)
{
	moat_buf_free(&st->body);
	free(st->content_type);
	free(st->retry_after);
	hc_free_secret(&st->session);
	sodium_memzero(st->value, sizeof(st->value));
}

/* Read the answer into st. */
static moat_err hc_read(const struct moat_hc_url *u, SSL *ssl, struct hc_parse *st, char *err,
			size_t errlen)
{
	llhttp_settings_t settings;
	llhttp_t parser;
	char buf[16384];
	bool eof = false;
	moat_err rc = MOAT_E_MALFORMED;

	llhttp_settings_init(&settings);
	settings.on_status = hc_on_status_cb;
	settings.on_header_field = hc_on_field_cb;
	settings.on_header_field_complete = hc_on_field_done_cb;
	settings.on_header_value = hc_on_value_cb;
	settings.on_header_value_complete = hc_on_value_done_cb;
	settings.on_headers_complete = hc_on_headers_done_cb;
	settings.on_body = hc_on_body_cb;
	settings.on_message_complete = hc_on_done_cb;
	llhttp_init(&parser, HTTP_RESPONSE, &settings);
	parser.data = st;

	while (!st->done && !eof) {
		size_t n = 0;
		llhttp_errno_t pe;

		ERR_clear_error();
		errno = 0;
		if (SSL_read_ex(ssl, buf, sizeof(buf), &n) != 1) {
			int saved = errno;
			int e = SSL_get_error(ssl, 0);

			if (e == SSL_ERROR_ZERO_RETURN) {
				eof = true;
				break;
			}
			if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)) {
				errf(err, errlen, "no answer from %s within %u s", u->canon,
				     MOAT_CLI_IO_TIMEOUT_S);
				rc = MOAT_E_IO;
				goto out;
			}
			/* A close without close_notify before the message was
			 * complete: the answer may have been cut short. */
			if ((e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) ||
			    ERR_GET_REASON(ERR_peek_error()) ==
				SSL_R_UNEXPECTED_EOF_WHILE_READING) {
				ERR_clear_error();
				errf(err, errlen,
				     "%s closed the connection before the answer was complete",
				     u->canon);
				rc = MOAT_E_CLOSED;
			} else {
				char why[512] = "";
				moat_tls_errors(why, sizeof(why));
				errf(err, errlen, "TLS error reading from %s: %s", u->canon,
				     why[0] != '\0' ? why : strerror(saved));
				rc = MOAT_E_TLS;
			}
			goto out;
		}
		pe = llhttp_execute(&parser, buf, n);
		if (pe == HPE_PAUSED && st->done)
			break;
		if (pe != HPE_OK) {
			errf(err, errlen, "malformed HTTP answer from %s: %s", u->canon,
			     st->why != NULL ? st->why : llhttp_get_error_reason(&parser));
			rc = st->why != NULL && strstr(st->why, "large") ? MOAT_E_TOO_LARGE
									 : MOAT_E_MALFORMED;
			goto out;
		}
	}
	if (!st->done && eof) {
		/* A body delimited by the end of the connection: a clean TLS close
		 * (close_notify) says it is complete. */
		llhttp_errno_t pe = llhttp_finish(&parser);
		if (pe != HPE_OK && !(pe == HPE_PAUSED && st->done)) {
			errf(err, errlen, "malformed HTTP answer from %s: %s", u->canon,
			     st->why != NULL ? st->why : llhttp_get_error_reason(&parser));
			goto out;
		}
		if (!st->done) {
			errf(err, errlen, "%s closed the connection before the answer was complete",
			     u->canon);
			rc = MOAT_E_CLOSED;
			goto out;
		}
	}
	rc = MOAT_OK;
out:
	sodium_memzero(buf, sizeof(buf));
	if (rc == MOAT_OK) {
		int status = llhttp_get_status_code(&parser);
		if (status < 100 || status > 999) {
			errf(err, errlen, "malformed HTTP answer from %s: status %d", u->canon,
			     status);
			return MOAT_E_MALFORMED;
		}
		st->status = status;
	}
	return rc;
}

static moat_err hc_write_all(const struct moat_hc_url *u, SSL *ssl, const uint8_t *p, size_t n,
			     char *err, size_t errlen)
{
	while (n > 0) {
		size_t w = 0;

		errno = 0;
		if (SSL_write_ex(ssl, p, n, &w) != 1) {
			int saved = errno;
			ERR_clear_error();
			if (saved == EAGAIN || saved == EWOULDBLOCK)
				errf(err, errlen, "sending to %s: no progress within %u s",
				     u->canon, MOAT_CLI_IO_TIMEOUT_S);
			else
				errf(err, errlen, "sending to %s failed: %s", u->canon,
				     saved != 0 ? strerror(saved) : "connection closed");
			return MOAT_E_IO;
		}
		p += w;
		n -= w;
	}
	return MOAT_OK;
}

moat_err moat_hc_request(const struct moat_hc_url *u, const char *ca_file,
			 const struct moat_hc_req *req, struct moat_hc_resp *resp, char *err,
			 size_t errlen)
{
	struct hc_parse st;
	struct moat_buf out;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd = -1, r;
	moat_err rc = MOAT_E_INVAL;

	memset(&st, 0, sizeof(st));
	moat_buf_init(&st.body, (size_t)MOAT_CLI_MAX_RESPONSE);
	st.body.secret = 1;
	moat_buf_init(&out, HC_MAX_REQUEST_HEAD + (req->body != NULL ? req->body_len : 0));
	out.secret = 1;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (u == NULL || req == NULL || resp == NULL || req->method == NULL || req->path == NULL) {
		errf(err, errlen, "invalid request");
		goto out;
	}
	/* A server closing early must be an error we report, not SIGPIPE. */
	(void)signal(SIGPIPE, SIG_IGN);

	rc = hc_build(u, req, &out, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = MOAT_E_TLS;
	ctx = hc_ctx(ca_file, err, errlen);
	if (ctx == NULL)
		goto out;
	rc = MOAT_E_IO;
	fd = hc_connect(u, err, errlen);
	if (fd < 0)
		goto out;
	rc = MOAT_E_TLS;
	ssl = SSL_new(ctx);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
		errf(err, errlen, "TLS: cannot create a connection object");
		goto out;
	}
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (u->is_ip) {
		/* RFC 6066: no IP literals in SNI; the address is checked against
		 * the certificate's IP SANs instead. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u->host) != 1) {
			errf(err, errlen, "TLS: cannot set the expected address %s", u->host);
			goto out;
		}
	} else if (SSL_set_tlsext_host_name(ssl, u->host) != 1 ||
		   SSL_set1_host(ssl, u->host) != 1) {
		errf(err, errlen, "TLS: cannot set the expected host name %s", u->host);
		goto out;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_connect(ssl);
	if (r != 1) {
		hc_tls_fail(u, ssl, r, errno, ca_file, err, errlen);
		goto out;
	}
	rc = hc_write_all(u, ssl, moat_buf_head(&out), moat_buf_used(&out), err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = hc_read(u, ssl, &st, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = MOAT_E_NOMEM;
	memset(resp, 0, sizeof(*resp));
	resp->body = malloc(moat_buf_used(&st.body) + 1);
	if (resp->body == NULL) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	if (moat_buf_used(&st.body) > 0)
		memcpy(resp->body, moat_buf_head(&st.body), moat_buf_used(&st.body));
	resp->body_len = moat_buf_used(&st.body);
	resp->body[resp->body_len] = '\0';
	resp->content_type = st.content_type;
	resp->retry_after = st.retry_after;
	resp->session = st.session;
	st.content_type = st.retry_after = st.session = NULL;
	resp->status = st.status;
	rc = MOAT_OK;
out:
	if (ssl != NULL) {
		if (rc == MOAT_OK)
			(void)SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	moat_buf_free(&out);
	hc_parse_free(&st);
	return rc;
}

void moat_hc_resp_free(struct moat_hc_resp *resp)
{
	if (resp == NULL)
		return;
	if (resp->body != NULL) {
		sodium_memzero(resp->body, resp->body_len);
		free(resp->body);
	}
	free(resp->content_type);
	free(resp->retry_after);
	hc_free_secret(&resp->session);
	memset(resp, 0, sizeof(*resp));
}
