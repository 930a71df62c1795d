/*
 * The WebSocket opening handshake (RFC 6455 4.2.1-4.2.2): checks of the
 * upgrade request and the 101 answer. Framing is libwslay's, driven by the
 * server loop (server.c).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "http/http.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Does the comma-separated header value list contain token? */
static bool has_token(const char *v, const char *token)
{
	size_t tl = strlen(token);

	while (v != NULL && *v != '\0') {
		const char *end;
		size_t n;
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		end = strchr(v, ',');
		n = end ? (size_t)(end - v) : strlen(v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(v, token, tl) == 0)
			return true;
		v = end;
	}
	return false;
}

/* A refused upgrade closes the connection after its answer. */
static void problem(struct moat_http_resp *r, int status, const char *type, const char *detail)
{
	moat_http_resp_problem(r, status, type, detail);
	r->close = true;
}

moat_err moat_http_ws_accept(const struct moat_http_req *req, struct moat_http_resp *resp,
			     const struct moat_http_ws_handler *h)
{
	const char *key = moat_http_header(req, "sec-websocket-key");
	const char *ver = moat_http_header(req, "sec-websocket-version");
	const char *origin = moat_http_header(req, "origin");
	const char *host = moat_http_header(req, "host");
	unsigned char raw[24], digest[SHA_DIGEST_LENGTH];
	char cat[64], accept[32];
	unsigned dlen = 0;

	if (req->method != MOAT_HTTP_GET || req->http_minor != 1 ||
	    !has_token(moat_http_header(req, "upgrade"), "websocket") ||
	    !has_token(moat_http_header(req, "connection"), "upgrade")) {
		problem(resp, 400, "bad-request",
			"a WebSocket opens with GET, Upgrade: websocket and Connection: Upgrade");
		return MOAT_E_MALFORMED;
	}
	if (ver == NULL || strcmp(ver, "13") != 0 ||
	    moat_http_header_count(req, "sec-websocket-version") != 1) {
		moat_http_resp_header(resp, "Sec-WebSocket-Version", "13");
		problem(resp, 426, "bad-request", "only WebSocket version 13 is spoken");
		return MOAT_E_MALFORMED;
	}
	/* 16 random bytes in base64: 24 characters ending in "==" */
	if (key == NULL || moat_http_header_count(req, "sec-websocket-key") != 1 ||
	    strlen(key) != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 ||
	    key[22] != '=' || key[23] != '=') {
		problem(resp, 400, "bad-request", "Sec-WebSocket-Key must be 16 bytes in base64");
		return MOAT_E_MALFORMED;
	}
	if (origin != NULL) {
		if (moat_http_header_count(req, "origin") != 1 || host == NULL ||
		    strncasecmp(origin, "https://", 8) != 0 || strcasecmp(origin + 8, host) != 0) {
			problem(resp, 403, "forbidden",
				"the Origin of a WebSocket must be this server's own");
			return MOAT_E_DENIED;
		}
	}
	snprintf(cat, sizeof(cat), "%s%s", key, ws_guid);
	if (EVP_Digest(cat, strlen(cat), digest, &dlen, EVP_sha1(), NULL) != 1) {
		problem(resp, 500, "internal", "no SHA-1");
		return MOAT_E_CRYPTO;
	}
	EVP_EncodeBlock((unsigned char *)accept, digest, sizeof(digest));
	moat_http_resp_take(resp, 101, NULL, NULL, 0);
	moat_http_resp_header(resp, "Upgrade", "websocket");
	moat_http_resp_header(resp, "Connection", "Upgrade");
	moat_http_resp_header(resp, "Sec-WebSocket-Accept", accept);
	resp->ws = *h;
	return MOAT_OK;
}
