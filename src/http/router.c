/*
 * Route matching and query strings. Patterns are literal segments and
 * {param} segments; a parameter is one non-empty segment of unreserved
 * characters (RFC 3986), so an encoded slash or dot-segment never reaches a
 * handler. Query values are percent-decoded into caller buffers.
 */
#include <stdio.h>
#include <string.h>

#include "http/http.h"

static bool unreserved(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '~' || ch == '-';
}

static bool dot_segment(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

/* One {param} or {param*} of pattern [pat, end) at path[*pi]. */
static bool param_match(const char *pat, const char *end, const char *path, size_t path_len,
			size_t *pi, struct moat_http_params *params)
{
	bool rest = end > pat + 1 && end[-1] == '*';
	size_t start = *pi, seg = *pi, max = rest ? MOAT_HTTP_PARAM_REST_MAX : MOAT_HTTP_PARAM_MAX;

	if (params->n >= MOAT_HTTP_MAX_PARAMS || (rest && end[1] != '\0'))
		return false;
	for (;;) {
		if (*pi < path_len && path[*pi] != '/') {
			if (!unreserved(path[*pi]))
				return false;
			(*pi)++;
			continue;
		}
		/* a segment ends: never empty, never a dot-segment */
		if (*pi == seg || dot_segment(path + seg, *pi - seg))
			return false;
		if (!rest || *pi == path_len)
			break;
		(*pi)++; /* the '/' inside a {param*} */
		seg = *pi;
	}
	if (*pi - start >= max)
		return false;
	if (rest) {
		memcpy(params->rest, path + start, *pi - start);
		params->rest[*pi - start] = '\0';
		params->v[params->n][0] = '\0';
	} else {
		memcpy(params->v[params->n], path + start, *pi - start);
		params->v[params->n][*pi - start] = '\0';
	}
	params->name[params->n] = pat + 1;
	params->name_len[params->n] = (size_t)(end - pat - 1) - (rest ? 1u : 0u);
	params->n++;
	return true;
}

static bool route_match(const char *pat, const char *path, size_t path_len,
			struct moat_http_params *params)
{
	size_t pi = 0;

	params->n = 0;
	params->rest[0] = '\0';
	while (*pat != '\0') {
		if (pat[0] == '{') {
			const char *end = strchr(pat, '}');
			if (end == NULL || !param_match(pat, end, path, path_len, &pi, params))
				return false;
			pat = end + 1;
			continue;
		}
		if (pi >= path_len || path[pi] != *pat)
			return false;
		pi++;
		pat++;
	}
	return pi == path_len;
}

const char *moat_http_param(const struct moat_http_params *p, const char *name)
{
	size_t i, len = strlen(name);

	for (i = 0; i < p->n; i++)
		if (p->name_len[i] == len && memcmp(p->name[i], name, len) == 0)
			return p->name[i][len] == '*' ? p->rest : p->v[i];
	return NULL;
}

int moat_http_route_find(const struct moat_http_route *routes, size_t n, int method,
			 const char *path, size_t path_len, struct moat_http_params *params,
			 bool *path_known, char *allow, size_t allowlen)
{
	size_t i, alen = 0;
	int found = -1;

	*path_known = false;
	if (allow && allowlen)
		allow[0] = '\0';
	for (i = 0; i < n; i++) {
		struct moat_http_params tmp;
		if (!route_match(routes[i].pattern, path, path_len, &tmp))
			continue;
		*path_known = true;
		if (allow && alen < allowlen) {
			int k = snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "",
					 llhttp_method_name((llhttp_method_t)routes[i].method));
			if (k > 0)
				alen += (size_t)k;
		}
		if (found < 0 &&
		    (routes[i].method == method ||
		     (method == MOAT_HTTP_HEAD && routes[i].method == MOAT_HTTP_GET))) {
			found = (int)i;
			*params = tmp;
		}
	}
	return found;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode [s, s+n) into out; MOAT_E_MALFORMED / MOAT_E_LIMIT. */
static moat_err pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			int h, l;
			if (i + 2 >= n)
				return MOAT_E_MALFORMED;
			h = hexval(s[i + 1]);
			l = hexval(s[i + 2]);
			if (h < 0 || l < 0)
				return MOAT_E_MALFORMED;
			ch = (char)(h * 16 + l);
			i += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		if (ch == '\0')
			return MOAT_E_MALFORMED;
		if (o + 1 >= outlen)
			return MOAT_E_LIMIT;
		out[o++] = ch;
	}
	if (outlen == 0)
		return MOAT_E_LIMIT;
	out[o] = '\0';
	return MOAT_OK;
}

moat_err moat_http_query_get(const char *query, const char *key, char *out, size_t outlen)
{
	const char *p = query;
	size_t klen = strlen(key);
	bool found = false;
	moat_err rc = MOAT_E_NOTFOUND;

	while (*p != '\0') {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t nlen = eq ? (size_t)(eq - p) : len;

		if (nlen == klen && memcmp(p, key, klen) == 0) {
			if (found)
				return MOAT_E_INVAL;
			found = true;
			rc = eq ? pct_decode(eq + 1, len - nlen - 1, out, outlen)
				: pct_decode("", 0, out, outlen);
			if (rc != MOAT_OK)
				return rc;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return rc;
}

bool moat_http_query_only(const char *query, const char *const *keys, size_t nkeys, char *bad,
			  size_t badlen)
{
	const char *p = query;

	while (*p != '\0') {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t nlen = eq ? (size_t)(eq - p) : len, i;
		bool ok = false;

		for (i = 0; i < nkeys && !ok; i++)
			ok = strlen(keys[i]) == nlen && memcmp(keys[i], p, nlen) == 0;
		if (!ok && nlen > 0) {
			if (badlen)
				snprintf(bad, badlen, "%.*s", (int)(nlen < 64 ? nlen : 64), p);
			return false;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return true;
}
