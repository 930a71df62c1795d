/*
 * One audit entry as a line of JSON, for exports an operator reads or feeds
 * to another system. The line carries the exact bytes that were hashed
 * (detail becomes an object only when that is lossless), so an export plus
 * audit.pub is enough to re-verify the chain.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "audit/audit.h"

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if the byte at p starts none. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
	size_t need, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		need = 2;
		cp = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		need = 3;
		cp = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		need = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	if (left < need)
		return 0;
	for (i = 1; i < need; i++) {
		if ((p[i] & 0xc0u) != 0x80u)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	if ((need == 3 && (cp < 0x800u || (cp >= 0xd800u && cp <= 0xdfffu))) ||
	    (need == 4 && (cp < 0x10000u || cp > 0x10ffffu)))
		return 0;
	return need;
}

/* A JSON string for s; bytes that are not UTF-8 become U+FFFD, since JSON
 * text cannot carry them. */
static json_t *json_text(const char *s)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)p), i, o = 0, k;
	json_t *j;
	char *fixed;

	j = json_stringn((const char *)p, n);
	if (j != NULL)
		return j;
	/* Invalid UTF-8 (or no memory): rebuild it, at most 3 bytes per byte. */
	if (n > (SIZE_MAX - 1) / 3 || (fixed = malloc(n * 3 + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i += k) {
		k = utf8_seq(p + i, n - i);
		if (k == 0) {
			memcpy(fixed + o, repl, 3);
			o += 3;
			k = 1;
		} else {
			memcpy(fixed + o, p + i, k);
			o += k;
		}
	}
	j = json_stringn(fixed, o);
	free(fixed);
	return j;
}

/* detail as an object when that round-trips byte for byte, else a string. */
static json_t *json_detail(const char *detail)
{
	json_t *obj;
	char *back;
	bool same = false;

	if (detail == NULL)
		return json_text("");
	obj = json_loads(detail, 0, NULL);
	if (obj == NULL)
		return json_text(detail);
	if (json_is_object(obj)) {
		back = json_dumps(obj, JSON_COMPACT);
		same = back != NULL && strcmp(back, detail) == 0;
		free(back);
	}
	if (same)
		return obj;
	json_decref(obj);
	return json_text(detail);
}

/* RFC 3339 UTC with milliseconds: "2026-11-22T07:10:00.123Z". */
static bool format_ts(int64_t ts_ms, char *out, size_t outlen)
{
	/* Floor division, so times before 1970 keep a positive millisecond. */
	int64_t sec = ts_ms / 1000, ms = ts_ms % 1000;
	time_t t;
	struct tm tm;
	int n;

	if (ms < 0) {
		ms += 1000;
		sec -= 1;
	}
	t = (time_t)sec;
	if ((int64_t)t != sec || gmtime_r(&t, &tm) == NULL)
		return false;
	/* By hand rather than strftime: %Y does not pad years below 1000. */
	n = snprintf(out, outlen, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
		     (long long)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, (int)ms);
	return n > 0 && (size_t)n < outlen;
}

static json_t *json_hex(const uint8_t h[MOAT_AUDIT_HASH_LEN])
{
	char hex[MOAT_AUDIT_HASH_LEN * 2 + 1];

	sodium_bin2hex(hex, sizeof(hex), h, MOAT_AUDIT_HASH_LEN);
	return json_string(hex);
}

/* Add v under key, consuming the reference; false (and v gone) on failure. */
static bool put(json_t *o, const char *key, json_t *v)
{
	return v != NULL && json_object_set_new(o, key, v) == 0;
}

moat_err moat_audit_entry_json(const struct moat_audit_entry *e, char **out)
{
	char ts[64];
	json_t *o = NULL;
	char *s;
	moat_err rc = MOAT_E_INVAL;

	if (e == NULL || out == NULL)
		goto out;
	rc = MOAT_E_NOMEM;
	o = json_object();
	if (o == NULL)
		goto out;
	/* jansson keeps insertion order: this is the order of the export. A
	 * time gmtime cannot express (a damaged row) still exports, as null. */
	if (!put(o, "seq", json_integer(e->seq)) ||
	    !put(o, "ts", format_ts(e->ts_ms, ts, sizeof(ts)) ? json_string(ts) : json_null()) ||
	    !put(o, "ts_ms", json_integer(e->ts_ms)) || !put(o, "actor", json_text(e->actor)) ||
	    !put(o, "action", json_text(e->action)) || !put(o, "target", json_text(e->target)) ||
	    !put(o, "outcome", json_text(e->outcome)) || !put(o, "peer", json_text(e->peer)) ||
	    !put(o, "detail", json_detail(e->detail)) || !put(o, "prev", json_hex(e->prev)) ||
	    !put(o, "hash", json_hex(e->hash)))
		goto out;
	s = json_dumps(o, JSON_COMPACT);
	if (s == NULL)
		goto out;
	*out = s;
	rc = MOAT_OK;
out:
	json_decref(o);
	return rc;
}
