/*
 * The key process's message codec (format in ca.h). Pure byte work over
 * struct moat_buf / moat_rd, shared by both ends of the socketpair, so the
 * parsers can be fuzzed without a process.
 *
 * The parsers are written for a hostile peer (STYLE.md item 2): the CA does
 * not trust the parent and the parent does not trust the CA's answers more
 * than it must. Every length is checked against its field's cap before the
 * bytes are looked at, a CRL's entry count is checked against the bytes
 * actually present before anyone allocates for it, and a message must be
 * consumed exactly.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/limits.h"
#include "pki/ca.h"

static moat_err put_u64(struct moat_buf *b, uint64_t v)
{
	moat_err rc = moat_buf_put_u32(b, (uint32_t)(v >> 32));

	return rc ? rc : moat_buf_put_u32(b, (uint32_t)v);
}

static moat_err rd_u64(struct moat_rd *r, uint64_t *v)
{
	uint32_t hi, lo;
	moat_err rc;

	if ((rc = moat_rd_u32(r, &hi)) != MOAT_OK || (rc = moat_rd_u32(r, &lo)) != MOAT_OK)
		return rc;
	*v = ((uint64_t)hi << 32) | lo;
	return MOAT_OK;
}

/* A time in 1..MOAT_CA_TIME_MAX, carried as u64. */
static moat_err rd_time(struct moat_rd *r, int64_t *t)
{
	uint64_t v;
	moat_err rc = rd_u64(r, &v);

	if (rc)
		return rc;
	if (v == 0 || v > (uint64_t)MOAT_CA_TIME_MAX)
		return MOAT_E_INVAL;
	*t = (int64_t)v;
	return MOAT_OK;
}

/* A string of min..max characters plus its NUL. */
static moat_err put_cstr(struct moat_buf *b, const char *s, size_t min, size_t max)
{
	size_t n;
	moat_err rc;

	if (s == NULL)
		return MOAT_E_INVAL;
	n = strnlen(s, max + 1);
	if (n < min || n > max)
		return MOAT_E_INVAL;
	if ((rc = moat_buf_reserve(b, n + 3)) != MOAT_OK)
		return rc;
	(void)moat_buf_put_u16(b, (uint16_t)(n + 1));
	(void)moat_buf_append(b, s, n);
	return moat_buf_put_u8(b, 0);
}

/* The counterpart: *s is a C string inside the message. */
static moat_err rd_cstr(struct moat_rd *r, size_t min, size_t max, const char **s)
{
	const uint8_t *p;
	uint16_t n;
	moat_err rc;

	if ((rc = moat_rd_str(r, &p, &n)) != MOAT_OK)
		return rc;
	/* n counts the NUL: an empty field has no terminator at all. */
	if (n == 0 || p[n - 1] != '\0' || memchr(p, '\0', (size_t)n - 1) != NULL)
		return MOAT_E_MALFORMED;
	if ((size_t)n - 1 < min || (size_t)n - 1 > max)
		return MOAT_E_INVAL;
	*s = (const char *)p;
	return MOAT_OK;
}

static moat_err put_blob(struct moat_buf *b, const uint8_t *p, size_t n, size_t max)
{
	moat_err rc;

	if ((p == NULL && n > 0) || n > max)
		return MOAT_E_INVAL;
	if ((rc = moat_buf_reserve(b, n + 4)) != MOAT_OK)
		return rc;
	(void)moat_buf_put_u32(b, (uint32_t)n);
	return moat_buf_append(b, p, n);
}

static moat_err rd_blob(struct moat_rd *r, size_t min, size_t max, const uint8_t **p, size_t *n)
{
	uint32_t len;
	moat_err rc;

	if ((rc = moat_rd_u32(r, &len)) != MOAT_OK)
		return rc;
	/* The cap first: a length past it is refused before it is trusted to
	 * index anything. */
	if (len < min || len > max)
		return moat_rd_left(r) < len ? MOAT_E_MALFORMED : MOAT_E_INVAL;
	if ((rc = moat_rd_bytes(r, len, p)) != MOAT_OK)
		return rc;
	*n = len;
	return MOAT_OK;
}

static moat_err put_head(struct moat_buf *b, uint8_t type, uint32_t seq)
{
	moat_err rc = moat_buf_put_u8(b, type);

	return rc ? rc : moat_buf_put_u32(b, seq);
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static uint8_t hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return (uint8_t)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (uint8_t)(c - 'a' + 10);
	return (uint8_t)(c - 'A' + 10);
}

/* A serial as octets is canonical: no leading zero octet (so zero itself is
 * refused) and it fits 20 octets once DER adds a sign octet. */
static bool serial_canonical(const uint8_t *p, size_t n)
{
	if (n == 0 || n > MOAT_CA_SERIAL_MAX || p[0] == 0)
		return false;
	return n < MOAT_CA_SERIAL_MAX || (p[0] & 0x80u) == 0;
}

moat_err moat_ca_serial_from_hex(const char *hex, uint8_t out[MOAT_CA_SERIAL_MAX], size_t *len)
{
	size_t n, i, o = 0;

	if (hex == NULL || out == NULL || len == NULL)
		return MOAT_E_INVAL;
	n = strnlen(hex, MOAT_CA_SERIAL_HEX_MAX + 1);
	if (n == 0 || n > MOAT_CA_SERIAL_HEX_MAX)
		return MOAT_E_INVAL;
	for (i = 0; i < n; i++) {
		if (!is_hex(hex[i]))
			return MOAT_E_INVAL;
	}
	for (i = 0; i < n && hex[i] == '0'; i++)
		;
	if (i == n)
		return MOAT_E_INVAL;
	/* An odd count of digits left: the first octet has one. */
	if ((n - i) % 2 == 1)
		out[o++] = hex_value(hex[i++]);
	for (; i < n; i += 2)
		out[o++] = (uint8_t)((hex_value(hex[i]) << 4) | hex_value(hex[i + 1]));
	if (!serial_canonical(out, o))
		return MOAT_E_INVAL;
	*len = o;
	return MOAT_OK;
}

moat_err moat_ca_req_put_simple(struct moat_buf *b, uint8_t type, uint32_t seq)
{
	if (type != MOAT_CA_PING && type != MOAT_CA_CACERTS)
		return MOAT_E_INVAL;
	return put_head(b, type, seq);
}

moat_err moat_ca_req_put_sign(struct moat_buf *b, uint32_t seq, const char *device_id,
			      const uint8_t *csr, size_t csr_len, const char *crl_url,
			      uint32_t days, uint32_t skew_s)
{
	moat_err rc;

	if (csr_len == 0 || days == 0 || days > MOAT_CERT_DAYS_MAX || skew_s > MOAT_CERT_SKEW_MAX_S)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_SIGN, seq)) != MOAT_OK ||
	    (rc = put_cstr(b, device_id, 1, MOAT_DEVICE_ID_MAX)) != MOAT_OK ||
	    (rc = put_blob(b, csr, csr_len, MOAT_CSR_MAX)) != MOAT_OK ||
	    (rc = put_cstr(b, crl_url != NULL ? crl_url : "", 0, MOAT_CRL_URL_MAX)) != MOAT_OK ||
	    (rc = moat_buf_put_u32(b, days)) != MOAT_OK)
		return rc;
	return moat_buf_put_u32(b, skew_s);
}

/* start, count and the entries of a CRL or CRL_ADD request. */
static moat_err put_entries(struct moat_buf *b, uint32_t start, const struct moat_revoked *list,
			    size_t n)
{
	uint8_t serial[MOAT_CA_SERIAL_MAX];
	size_t i, len;
	moat_err rc;

	if ((list == NULL && n > 0) || n > MOAT_CRL_CHUNK_ENTRIES ||
	    start > MOAT_CRL_MAX_ENTRIES - n)
		return MOAT_E_INVAL;
	if ((rc = moat_buf_put_u32(b, start)) != MOAT_OK ||
	    (rc = moat_buf_put_u32(b, (uint32_t)n)) != MOAT_OK)
		return rc;
	for (i = 0; i < n; i++) {
		if (list[i].revoked_at <= 0 || list[i].revoked_at > MOAT_CA_TIME_MAX)
			return MOAT_E_INVAL;
		if ((rc = moat_ca_serial_from_hex(list[i].serial, serial, &len)) != MOAT_OK)
			return rc;
		if ((rc = moat_buf_put_u8(b, (uint8_t)len)) != MOAT_OK ||
		    (rc = moat_buf_append(b, serial, len)) != MOAT_OK ||
		    (rc = put_u64(b, (uint64_t)list[i].revoked_at)) != MOAT_OK)
			return rc;
	}
	return MOAT_OK;
}

moat_err moat_ca_req_put_crl(struct moat_buf *b, uint32_t seq, uint64_t crl_number,
			     uint32_t next_update_s, uint32_t start,
			     const struct moat_revoked *list, size_t n)
{
	moat_err rc;

	if (next_update_s == 0 || next_update_s > MOAT_CRL_NEXT_UPDATE_MAX_S)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_CRL, seq)) != MOAT_OK || (rc = put_u64(b, crl_number)) != 0 ||
	    (rc = moat_buf_put_u32(b, next_update_s)) != MOAT_OK)
		return rc;
	return put_entries(b, start, list, n);
}

moat_err moat_ca_req_put_crl_add(struct moat_buf *b, uint32_t seq, uint32_t start,
				 const struct moat_revoked *list, size_t n)
{
	moat_err rc;

	if (n == 0)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_CRL_ADD, seq)) != MOAT_OK)
		return rc;
	return put_entries(b, start, list, n);
}

moat_err moat_ca_req_put_renew_server(struct moat_buf *b, uint32_t seq, const uint8_t *cert,
				      size_t len)
{
	moat_err rc;

	if (len == 0)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_RENEW_SERVER, seq)) != MOAT_OK)
		return rc;
	return put_blob(b, cert, len, MOAT_CSR_MAX);
}

moat_err moat_ca_req_put_key_sign(struct moat_buf *b, uint32_t seq, uint8_t slot,
				  const uint8_t *payload, size_t len)
{
	moat_err rc;

	if (slot == 0 || slot > MOAT_KEY_SLOT_MAX || len == 0)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_KEY_SIGN, seq)) != MOAT_OK ||
	    (rc = moat_buf_put_u8(b, slot)) != MOAT_OK)
		return rc;
	return put_blob(b, payload, len, MOAT_KEY_SIGN_MAX);
}

/* The bounds of SEAL's and UNSEAL's data (plaintext, sealed blob). */
static void seal_bounds(uint8_t type, size_t *min, size_t *max)
{
	*min = type == MOAT_CA_SEAL ? 1u : MOAT_KEY_SEAL_OVERHEAD + 1u;
	*max =
	    type == MOAT_CA_SEAL ? MOAT_KEY_SEAL_MAX : MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX;
}

moat_err moat_ca_req_put_seal(struct moat_buf *b, uint8_t type, uint32_t seq, uint8_t slot,
			      const uint8_t *ad, size_t ad_len, const uint8_t *data, size_t len)
{
	size_t min, max;
	moat_err rc;

	if ((type != MOAT_CA_SEAL && type != MOAT_CA_UNSEAL) || slot == 0 ||
	    slot > MOAT_KEY_SLOT_MAX)
		return MOAT_E_INVAL;
	seal_bounds(type, &min, &max);
	if (len < min)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, type, seq)) != MOAT_OK ||
	    (rc = moat_buf_put_u8(b, slot)) != MOAT_OK ||
	    (rc = put_blob(b, ad, ad_len, MOAT_KEY_AD_MAX)) != MOAT_OK)
		return rc;
	return put_blob(b, data, len, max);
}

moat_err moat_ca_req_put_crl_part(struct moat_buf *b, uint32_t seq, uint32_t offset)
{
	moat_err rc;

	if (offset >= MOAT_CRL_DER_MAX)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_CRL_PART, seq)) != MOAT_OK)
		return rc;
	return moat_buf_put_u32(b, offset);
}

moat_err moat_ca_entry_next(struct moat_rd *r, struct moat_ca_entry *e)
{
	const uint8_t *p;
	uint8_t n;
	moat_err rc;

	if ((rc = moat_rd_u8(r, &n)) != MOAT_OK)
		return rc;
	if (n == 0 || n > MOAT_CA_SERIAL_MAX)
		return MOAT_E_INVAL;
	if ((rc = moat_rd_bytes(r, n, &p)) != MOAT_OK)
		return rc;
	if (!serial_canonical(p, n))
		return MOAT_E_INVAL;
	memcpy(e->serial, p, n);
	e->serial_len = n;
	return rd_time(r, &e->revoked_at);
}

static void set_why(const char **why, const char *s)
{
	if (why != NULL)
		*why = s;
}

/* Why a field failed: missing bytes versus a value out of range. */
static const char *field_why(moat_err rc, const char *range)
{
	return rc == MOAT_E_MALFORMED ? "malformed request: truncated or unterminated field"
				      : range;
}

static moat_err parse_sign(struct moat_rd *r, struct moat_ca_req *req, const char **why)
{
	moat_err rc;

	if ((rc = rd_cstr(r, 1, MOAT_DEVICE_ID_MAX, &req->device_id)) != MOAT_OK) {
		set_why(why, field_why(rc, "device id length out of range"));
		return rc;
	}
	if ((rc = rd_blob(r, 1, MOAT_CSR_MAX, &req->csr, &req->csr_len)) != MOAT_OK) {
		set_why(why, field_why(rc, "certificate request length out of range"));
		return rc;
	}
	if ((rc = rd_cstr(r, 0, MOAT_CRL_URL_MAX, &req->crl_url)) != MOAT_OK) {
		set_why(why, field_why(rc, "CRL URL length out of range"));
		return rc;
	}
	if ((rc = moat_rd_u32(r, &req->days)) != MOAT_OK ||
	    (rc = moat_rd_u32(r, &req->skew_s)) != MOAT_OK) {
		set_why(why, field_why(rc, ""));
		return rc;
	}
	if (req->days == 0 || req->days > MOAT_CERT_DAYS_MAX) {
		set_why(why, "validity (days) out of range");
		return MOAT_E_INVAL;
	}
	if (req->skew_s > MOAT_CERT_SKEW_MAX_S) {
		set_why(why, "notBefore skew out of range");
		return MOAT_E_INVAL;
	}
	return MOAT_OK;
}

/* start, count and the entries of a CRL or CRL_ADD request. */
static moat_err parse_entries(struct moat_rd *r, struct moat_ca_req *req, uint32_t min,
			      const char **why)
{
	struct moat_ca_entry e;
	size_t start;
	uint32_t i;
	moat_err rc;

	if ((rc = moat_rd_u32(r, &req->start)) != MOAT_OK ||
	    (rc = moat_rd_u32(r, &req->n_revoked)) != MOAT_OK) {
		set_why(why, field_why(rc, ""));
		return rc;
	}
	if (req->n_revoked < min) {
		set_why(why, "no CRL entries");
		return MOAT_E_INVAL;
	}
	if (req->n_revoked > MOAT_CRL_CHUNK_ENTRIES ||
	    req->start > MOAT_CRL_MAX_ENTRIES - req->n_revoked) {
		set_why(why, "too many CRL entries");
		return MOAT_E_LIMIT;
	}
	/* Walk the entries now, so the count is one the bytes prove and the
	 * handler's reads cannot fail half-way through building a CRL. */
	start = r->pos;
	for (i = 0; i < req->n_revoked; i++) {
		if ((rc = moat_ca_entry_next(r, &e)) != MOAT_OK) {
			set_why(why, field_why(rc, "invalid CRL entry (serial or time)"));
			return rc;
		}
	}
	req->revoked = r->p + start;
	req->revoked_len = r->pos - start;
	return MOAT_OK;
}

static moat_err parse_crl(struct moat_rd *r, struct moat_ca_req *req, const char **why)
{
	moat_err rc;

	if ((rc = rd_u64(r, &req->crl_number)) != MOAT_OK ||
	    (rc = moat_rd_u32(r, &req->next_update_s)) != MOAT_OK) {
		set_why(why, field_why(rc, ""));
		return rc;
	}
	if (req->next_update_s == 0 || req->next_update_s > MOAT_CRL_NEXT_UPDATE_MAX_S) {
		set_why(why, "CRL nextUpdate out of range");
		return MOAT_E_INVAL;
	}
	return parse_entries(r, req, 0, why);
}

static moat_err parse_crl_part(struct moat_rd *r, struct moat_ca_req *req, const char **why)
{
	moat_err rc = moat_rd_u32(r, &req->offset);

	if (rc) {
		set_why(why, field_why(rc, ""));
		return rc;
	}
	if (req->offset >= MOAT_CRL_DER_MAX) {
		set_why(why, "CRL offset out of range");
		return MOAT_E_INVAL;
	}
	return MOAT_OK;
}

static moat_err parse_slot(struct moat_rd *r, struct moat_ca_req *req, const char **why)
{
	moat_err rc = moat_rd_u8(r, &req->slot);

	if (rc) {
		set_why(why, field_why(rc, ""));
		return rc;
	}
	if (req->slot == 0 || req->slot > MOAT_KEY_SLOT_MAX) {
		set_why(why, "key slot out of range");
		return MOAT_E_INVAL;
	}
	return MOAT_OK;
}

static moat_err parse_key_sign(struct moat_rd *r, struct moat_ca_req *req, const char **why)
{
	moat_err rc = parse_slot(r, req, why);

	if (rc)
		return rc;
	rc = rd_blob(r, 1, MOAT_KEY_SIGN_MAX, &req->data, &req->data_len);
	if (rc)
		set_why(why, field_why(rc, "payload length out of range"));
	return rc;
}

static moat_err parse_seal(struct moat_rd *r, struct moat_ca_req *req, const char **why)
{
	size_t min, max;
	moat_err rc = parse_slot(r, req, why);

	if (rc)
		return rc;
	if ((rc = rd_blob(r, 0, MOAT_KEY_AD_MAX, &req->ad, &req->ad_len)) != MOAT_OK) {
		set_why(why, field_why(rc, "associated data length out of range"));
		return rc;
	}
	seal_bounds(req->type, &min, &max);
	rc = rd_blob(r, min, max, &req->data, &req->data_len);
	if (rc)
		set_why(why, field_why(rc, req->type == MOAT_CA_SEAL
					       ? "plaintext length out of range"
					       : "sealed blob length out of range"));
	return rc;
}

moat_err moat_ca_req_parse(const uint8_t *p, size_t n, struct moat_ca_req *req, const char **why)
{
	struct moat_rd r;
	moat_err rc;

	memset(req, 0, sizeof(*req));
	set_why(why, "");
	if (p == NULL || n > MOAT_CA_MSG_MAX) {
		set_why(why, "request too large");
		return MOAT_E_TOO_LARGE;
	}
	moat_rd_init(&r, p, n);
	if (moat_rd_u8(&r, &req->type) != MOAT_OK || moat_rd_u32(&r, &req->seq) != MOAT_OK) {
		set_why(why, "malformed request: shorter than its header");
		return MOAT_E_MALFORMED;
	}
	switch (req->type) {
	case MOAT_CA_PING:
	case MOAT_CA_CACERTS:
		rc = MOAT_OK;
		break;
	case MOAT_CA_SIGN:
		rc = parse_sign(&r, req, why);
		break;
	case MOAT_CA_CRL:
		rc = parse_crl(&r, req, why);
		break;
	case MOAT_CA_CRL_ADD:
		rc = parse_entries(&r, req, 1, why);
		break;
	case MOAT_CA_CRL_PART:
		rc = parse_crl_part(&r, req, why);
		break;
	case MOAT_CA_RENEW_SERVER:
		rc = rd_blob(&r, 1, MOAT_CSR_MAX, &req->cert, &req->cert_len);
		if (rc)
			set_why(why, field_why(rc, "certificate length out of range"));
		break;
	case MOAT_CA_KEY_SIGN:
		rc = parse_key_sign(&r, req, why);
		break;
	case MOAT_CA_SEAL:
	case MOAT_CA_UNSEAL:
		rc = parse_seal(&r, req, why);
		break;
	default:
		set_why(why, "unknown request type");
		return MOAT_E_PROTOCOL;
	}
	if (rc)
		return rc;
	if (moat_rd_left(&r) != 0) {
		set_why(why, "malformed request: bytes left over after the last field");
		return MOAT_E_MALFORMED;
	}
	return MOAT_OK;
}

moat_err moat_ca_ans_put_error(struct moat_buf *b, uint8_t type, uint32_t seq, moat_err status,
			       const char *msg)
{
	char text[MOAT_CA_ERR_MAX];
	moat_err rc;

	if (status == MOAT_OK || (unsigned)status >= (unsigned)MOAT_E__COUNT)
		status = MOAT_E_INTERNAL;
	if (msg == NULL || msg[0] == '\0')
		msg = moat_strerror(status);
	/* Truncate rather than fail: the error must get through. */
	snprintf(text, sizeof(text), "%s", msg);
	if ((rc = put_head(b, type, seq)) != MOAT_OK ||
	    (rc = moat_buf_put_u8(b, (uint8_t)status)) != MOAT_OK)
		return rc;
	return put_cstr(b, text, 1, MOAT_CA_ERR_MAX - 1);
}

moat_err moat_ca_ans_put_ok(struct moat_buf *b, uint8_t type, uint32_t seq)
{
	moat_err rc;

	if (type != MOAT_CA_HELLO && type != MOAT_CA_PING && type != MOAT_CA_CRL_ADD)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, type, seq)) != MOAT_OK)
		return rc;
	return moat_buf_put_u8(b, MOAT_OK);
}

/* The answers that are one blob, and its bounds. */
static bool ans_blob_bounds(uint8_t type, size_t *min, size_t *max)
{
	*min = 1;
	switch (type) {
	case MOAT_CA_CRL_PART:
		*max = MOAT_CRL_PART_MAX;
		return true;
	case MOAT_CA_CACERTS:
	case MOAT_CA_RENEW_SERVER:
		*max = MOAT_CA_MSG_MAX;
		return true;
	case MOAT_CA_KEY_SIGN:
		*max = MOAT_KEY_SIG_MAX;
		return true;
	case MOAT_CA_SEAL:
		*min = MOAT_KEY_SEAL_OVERHEAD + 1u;
		*max = MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX;
		return true;
	case MOAT_CA_UNSEAL:
		*max = MOAT_KEY_SEAL_MAX;
		return true;
	default:
		return false;
	}
}

moat_err moat_ca_ans_put_der(struct moat_buf *b, uint8_t type, uint32_t seq, const uint8_t *der,
			     size_t len)
{
	moat_err rc;

	size_t min, max;

	if (!ans_blob_bounds(type, &min, &max) || len < min)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, type, seq)) != MOAT_OK || (rc = moat_buf_put_u8(b, MOAT_OK)) != 0)
		return rc;
	return put_blob(b, der, len, max);
}

moat_err moat_ca_ans_put_crl(struct moat_buf *b, uint32_t seq, uint32_t total, const uint8_t *part,
			     size_t len)
{
	moat_err rc;

	if (total == 0 || total > MOAT_CRL_DER_MAX || len == 0 || len > total)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_CRL, seq)) != MOAT_OK ||
	    (rc = moat_buf_put_u8(b, MOAT_OK)) != MOAT_OK ||
	    (rc = moat_buf_put_u32(b, total)) != MOAT_OK)
		return rc;
	return put_blob(b, part, len, MOAT_CRL_PART_MAX);
}

static bool hex_string(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!is_hex(*s))
			return false;
	}
	return true;
}

moat_err moat_ca_ans_put_sign(struct moat_buf *b, uint32_t seq, const uint8_t *der, size_t len,
			      const char *serial_hex, int64_t not_after)
{
	moat_err rc;

	if (len == 0 || serial_hex == NULL || !hex_string(serial_hex) || not_after <= 0 ||
	    not_after > MOAT_CA_TIME_MAX)
		return MOAT_E_INVAL;
	if ((rc = put_head(b, MOAT_CA_SIGN, seq)) != MOAT_OK ||
	    (rc = moat_buf_put_u8(b, MOAT_OK)) != MOAT_OK ||
	    (rc = put_blob(b, der, len, MOAT_CA_MSG_MAX)) != MOAT_OK ||
	    (rc = put_cstr(b, serial_hex, 1, MOAT_CA_SERIAL_HEX_MAX)) != MOAT_OK)
		return rc;
	return put_u64(b, (uint64_t)not_after);
}

static moat_err parse_ans_body(struct moat_rd *r, struct moat_ca_ans *ans)
{
	size_t min, max;
	moat_err rc;

	if (ans->status != MOAT_OK)
		return rd_cstr(r, 1, MOAT_CA_ERR_MAX - 1, &ans->msg);
	switch (ans->type) {
	case MOAT_CA_HELLO:
	case MOAT_CA_PING:
	case MOAT_CA_CRL_ADD:
		return MOAT_OK;
	case MOAT_CA_SIGN:
		if ((rc = rd_blob(r, 1, MOAT_CA_MSG_MAX, &ans->der, &ans->der_len)) != MOAT_OK ||
		    (rc = rd_cstr(r, 1, MOAT_CA_SERIAL_HEX_MAX, &ans->serial)) != MOAT_OK)
			return rc;
		if (!hex_string(ans->serial))
			return MOAT_E_INVAL;
		return rd_time(r, &ans->not_after);
	case MOAT_CA_CRL:
		if ((rc = moat_rd_u32(r, &ans->total)) != MOAT_OK)
			return rc;
		if (ans->total == 0 || ans->total > MOAT_CRL_DER_MAX)
			return MOAT_E_INVAL;
		if ((rc = rd_blob(r, 1, MOAT_CRL_PART_MAX, &ans->der, &ans->der_len)) != MOAT_OK)
			return rc;
		return ans->der_len <= ans->total ? MOAT_OK : MOAT_E_INVAL;
	default:
		if (!ans_blob_bounds(ans->type, &min, &max))
			return MOAT_E_PROTOCOL;
		return rd_blob(r, min, max, &ans->der, &ans->der_len);
	}
}

moat_err moat_ca_ans_parse(const uint8_t *p, size_t n, struct moat_ca_ans *ans)
{
	struct moat_rd r;
	moat_err rc;

	memset(ans, 0, sizeof(*ans));
	if (p == NULL || n > MOAT_CA_MSG_MAX)
		return MOAT_E_TOO_LARGE;
	moat_rd_init(&r, p, n);
	if (moat_rd_u8(&r, &ans->type) != MOAT_OK || moat_rd_u32(&r, &ans->seq) != MOAT_OK ||
	    moat_rd_u8(&r, &ans->status) != MOAT_OK)
		return MOAT_E_MALFORMED;
	if (ans->status >= (uint8_t)MOAT_E__COUNT)
		return MOAT_E_MALFORMED;
	if ((rc = parse_ans_body(&r, ans)) != MOAT_OK)
		return rc;
	return moat_rd_left(&r) == 0 ? MOAT_OK : MOAT_E_MALFORMED;
}
