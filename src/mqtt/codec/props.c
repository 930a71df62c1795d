/*
 * MQTT 5 properties (spec 2.2.2): decoding with the per-packet allow-lists,
 * sizing and writing for the encoder, and the user-property iterator.
 *
 * User properties stay a raw region of the input: the span from the first
 * User Property to the end of the last one. Properties of other kinds may sit
 * inside that span (the spec allows any order), so everything that walks the
 * region (the iterator, the encoder) skips what is not a User Property. That
 * keeps decode free of allocation however many pairs a peer sends.
 */
#include <stddef.h>

#include "mqtt/codec/internal.h"

enum prop_kind {
	PK_NONE = 0,
	PK_BYTE,
	PK_U16,
	PK_U32,
	PK_VARINT,
	PK_STR,
	PK_BIN,
	PK_PAIR,
};

static const uint8_t prop_kind[64] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = PK_BYTE,
    [MQTT_PROP_MESSAGE_EXPIRY] = PK_U32,
    [MQTT_PROP_CONTENT_TYPE] = PK_STR,
    [MQTT_PROP_RESPONSE_TOPIC] = PK_STR,
    [MQTT_PROP_CORRELATION_DATA] = PK_BIN,
    [MQTT_PROP_SUBSCRIPTION_ID] = PK_VARINT,
    [MQTT_PROP_SESSION_EXPIRY] = PK_U32,
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = PK_STR,
    [MQTT_PROP_SERVER_KEEPALIVE] = PK_U16,
    [MQTT_PROP_AUTH_METHOD] = PK_STR,
    [MQTT_PROP_AUTH_DATA] = PK_BIN,
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = PK_BYTE,
    [MQTT_PROP_WILL_DELAY] = PK_U32,
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = PK_BYTE,
    [MQTT_PROP_RESPONSE_INFO] = PK_STR,
    [MQTT_PROP_SERVER_REFERENCE] = PK_STR,
    [MQTT_PROP_REASON_STRING] = PK_STR,
    [MQTT_PROP_RECEIVE_MAXIMUM] = PK_U16,
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = PK_U16,
    [MQTT_PROP_TOPIC_ALIAS] = PK_U16,
    [MQTT_PROP_MAXIMUM_QOS] = PK_BYTE,
    [MQTT_PROP_RETAIN_AVAILABLE] = PK_BYTE,
    [MQTT_PROP_USER_PROPERTY] = PK_PAIR,
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = PK_U32,
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = PK_BYTE,
    [MQTT_PROP_SUB_ID_AVAILABLE] = PK_BYTE,
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = PK_BYTE,
};

#define H(id) MQTT_HAS(MQTT_PROP_##id)

/* The table in spec 2.2.2.2, by packet type; index 0 is the Will. */
static const uint64_t allowed_props[16] = {
    [MQTT_PCTX_WILL] = H(PAYLOAD_FORMAT) | H(MESSAGE_EXPIRY) | H(CONTENT_TYPE) | H(RESPONSE_TOPIC) |
		       H(CORRELATION_DATA) | H(WILL_DELAY) | H(USER_PROPERTY),
    [MQTT_CONNECT] = H(SESSION_EXPIRY) | H(AUTH_METHOD) | H(AUTH_DATA) | H(REQUEST_PROBLEM_INFO) |
		     H(REQUEST_RESPONSE_INFO) | H(RECEIVE_MAXIMUM) | H(TOPIC_ALIAS_MAXIMUM) |
		     H(USER_PROPERTY) | H(MAXIMUM_PACKET_SIZE),
    [MQTT_CONNACK] = H(SESSION_EXPIRY) | H(ASSIGNED_CLIENT_ID) | H(SERVER_KEEPALIVE) |
		     H(AUTH_METHOD) | H(AUTH_DATA) | H(RESPONSE_INFO) | H(SERVER_REFERENCE) |
		     H(REASON_STRING) | H(RECEIVE_MAXIMUM) | H(TOPIC_ALIAS_MAXIMUM) |
		     H(MAXIMUM_QOS) | H(RETAIN_AVAILABLE) | H(USER_PROPERTY) |
		     H(MAXIMUM_PACKET_SIZE) | H(WILDCARD_SUB_AVAILABLE) | H(SUB_ID_AVAILABLE) |
		     H(SHARED_SUB_AVAILABLE),
    [MQTT_PUBLISH] = H(PAYLOAD_FORMAT) | H(MESSAGE_EXPIRY) | H(CONTENT_TYPE) | H(RESPONSE_TOPIC) |
		     H(CORRELATION_DATA) | H(SUBSCRIPTION_ID) | H(TOPIC_ALIAS) | H(USER_PROPERTY),
    [MQTT_PUBACK] = H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_PUBREC] = H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_PUBREL] = H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_PUBCOMP] = H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_SUBSCRIBE] = H(SUBSCRIPTION_ID) | H(USER_PROPERTY),
    [MQTT_SUBACK] = H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_UNSUBSCRIBE] = H(USER_PROPERTY),
    [MQTT_UNSUBACK] = H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_PINGREQ] = 0,
    [MQTT_PINGRESP] = 0,
    [MQTT_DISCONNECT] =
	H(SESSION_EXPIRY) | H(SERVER_REFERENCE) | H(REASON_STRING) | H(USER_PROPERTY),
    [MQTT_AUTH] = H(AUTH_METHOD) | H(AUTH_DATA) | H(REASON_STRING) | H(USER_PROPERTY),
};

/* Handled by count/region rather than by the `present` bit on encode. */
#define MULTI_PROPS (H(USER_PROPERTY) | H(SUBSCRIPTION_ID))

static inline unsigned lowest_bit(uint64_t v)
{
	return (unsigned)__builtin_ctzll(v);
}

/* Where the string/binary field of each PK_STR/PK_BIN property lives. */
#define OFF(f) offsetof(struct mqtt_props, f)
static const size_t prop_off[64] = {
    [MQTT_PROP_CONTENT_TYPE] = OFF(content_type),
    [MQTT_PROP_RESPONSE_TOPIC] = OFF(response_topic),
    [MQTT_PROP_CORRELATION_DATA] = OFF(correlation_data),
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = OFF(assigned_client_id),
    [MQTT_PROP_AUTH_METHOD] = OFF(auth_method),
    [MQTT_PROP_AUTH_DATA] = OFF(auth_data),
    [MQTT_PROP_RESPONSE_INFO] = OFF(response_info),
    [MQTT_PROP_SERVER_REFERENCE] = OFF(server_reference),
    [MQTT_PROP_REASON_STRING] = OFF(reason_string),
};

/* Callers only pass ids whose kind is PK_STR or PK_BIN, which all have an
 * entry (checked by test_codec's property round trips). */
static const struct mqtt_bytes *prop_bytes(const struct mqtt_props *pr, unsigned id)
{
	return (const struct mqtt_bytes *)((const char *)pr + prop_off[id]);
}

static struct mqtt_bytes *prop_bytes_mut(struct mqtt_props *pr, unsigned id)
{
	return (struct mqtt_bytes *)((char *)pr + prop_off[id]);
}

/*
 * Skip the value of a property already known to be valid (a region the
 * decoder accepted, or one built by mqtt_user_prop_add). Bounded all the same.
 */
static moat_err prop_skip(struct mqtt_cur *c, unsigned id)
{
	struct mqtt_bytes b;
	uint32_t v;
	moat_err rc = MOAT_E_MALFORMED;

	if (id >= 64)
		goto out;
	switch (prop_kind[id]) {
	case PK_BYTE:
	case PK_U16:
	case PK_U32: {
		size_t n = prop_kind[id] == PK_BYTE ? 1u : prop_kind[id] == PK_U16 ? 2u : 4u;
		if (cur_left(c) < n)
			goto out;
		c->p += n;
		rc = MOAT_OK;
		break;
	}
	case PK_VARINT:
		rc = cur_varint(c, &v);
		break;
	case PK_STR:
	case PK_BIN:
		rc = cur_bin(c, &b);
		break;
	case PK_PAIR:
		if ((rc = cur_bin(c, &b)) == MOAT_OK)
			rc = cur_bin(c, &b);
		break;
	default:
		break;
	}
out:
	return rc;
}

moat_err mqtt_props_decode(struct mqtt_cur *c, unsigned ctx, struct mqtt_props *out)
{
	const uint64_t allowed = allowed_props[ctx & 15u];
	const uint8_t *ufirst = NULL, *uend = NULL;
	struct mqtt_cur pc;
	uint32_t plen, v;
	moat_err rc;

	if ((rc = cur_varint(c, &plen)) != MOAT_OK)
		goto out;
	if (plen > cur_left(c)) {
		rc = MOAT_E_MALFORMED;
		goto out;
	}
	pc.p = c->p;
	pc.end = c->p + plen;
	while (pc.p < pc.end) {
		const uint8_t *start = pc.p;
		/* Identifiers are varints, but all defined ones fit one byte: a
		 * byte >= 0x80 starts an identifier >= 128, which is unknown. */
		unsigned id = *pc.p++;
		uint64_t bit;

		if (id >= 64 || prop_kind[id] == PK_NONE) {
			rc = MOAT_E_MALFORMED;
			goto out;
		}
		bit = MQTT_HAS(id);
		if (!(allowed & bit)) {
			rc = MOAT_E_PROTOCOL;
			goto out;
		}
		/* Only User Property may repeat, and Subscription Identifier in a
		 * PUBLISH (one per matching subscription, server to client). */
		if ((out->present & bit) && id != MQTT_PROP_USER_PROPERTY &&
		    !(id == MQTT_PROP_SUBSCRIPTION_ID && ctx == MQTT_PUBLISH)) {
			rc = MOAT_E_PROTOCOL;
			goto out;
		}
		out->present |= bit;
		switch (id) {
		case MQTT_PROP_PAYLOAD_FORMAT:
			rc = cur_u8(&pc, &out->payload_format);
			if (rc == MOAT_OK && out->payload_format > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_MESSAGE_EXPIRY:
			rc = cur_u32(&pc, &out->message_expiry);
			break;
		case MQTT_PROP_SUBSCRIPTION_ID:
			rc = cur_varint(&pc, &v);
			if (rc != MOAT_OK)
				break;
			if (v == 0) {
				rc = MOAT_E_PROTOCOL;
				break;
			}
			if (out->n_sub_ids == 0)
				out->sub_id = v;
			out->n_sub_ids++;
			break;
		case MQTT_PROP_SESSION_EXPIRY:
			rc = cur_u32(&pc, &out->session_expiry);
			break;
		case MQTT_PROP_SERVER_KEEPALIVE:
			rc = cur_u16(&pc, &out->server_keepalive);
			break;
		case MQTT_PROP_REQUEST_PROBLEM_INFO:
			rc = cur_u8(&pc, &out->request_problem_info);
			if (rc == MOAT_OK && out->request_problem_info > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_WILL_DELAY:
			rc = cur_u32(&pc, &out->will_delay);
			break;
		case MQTT_PROP_REQUEST_RESPONSE_INFO:
			rc = cur_u8(&pc, &out->request_response_info);
			if (rc == MOAT_OK && out->request_response_info > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_RECEIVE_MAXIMUM:
			rc = cur_u16(&pc, &out->receive_maximum);
			if (rc == MOAT_OK && out->receive_maximum == 0)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
			rc = cur_u16(&pc, &out->topic_alias_max);
			break;
		case MQTT_PROP_TOPIC_ALIAS:
			rc = cur_u16(&pc, &out->topic_alias);
			if (rc == MOAT_OK && out->topic_alias == 0)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_MAXIMUM_QOS:
			rc = cur_u8(&pc, &out->maximum_qos);
			if (rc == MOAT_OK && out->maximum_qos > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_RETAIN_AVAILABLE:
			rc = cur_u8(&pc, &out->retain_available);
			if (rc == MOAT_OK && out->retain_available > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_MAXIMUM_PACKET_SIZE:
			rc = cur_u32(&pc, &out->max_packet_size);
			if (rc == MOAT_OK && out->max_packet_size == 0)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
			rc = cur_u8(&pc, &out->wildcard_sub_available);
			if (rc == MOAT_OK && out->wildcard_sub_available > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_SUB_ID_AVAILABLE:
			rc = cur_u8(&pc, &out->sub_id_available);
			if (rc == MOAT_OK && out->sub_id_available > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_SHARED_SUB_AVAILABLE:
			rc = cur_u8(&pc, &out->shared_sub_available);
			if (rc == MOAT_OK && out->shared_sub_available > 1)
				rc = MOAT_E_PROTOCOL;
			break;
		case MQTT_PROP_USER_PROPERTY: {
			struct mqtt_bytes k, val;
			if ((rc = cur_str(&pc, &k)) != MOAT_OK)
				break;
			if ((rc = cur_str(&pc, &val)) != MOAT_OK)
				break;
			/* Bounded so what we forward stays bounded; see limits.h. */
			if (++out->n_user > MOAT_MAX_USER_PROPERTIES) {
				rc = MOAT_E_LIMIT;
				break;
			}
			if (ufirst == NULL)
				ufirst = start;
			uend = pc.p;
			break;
		}
		default:
			if (prop_kind[id] == PK_STR)
				rc = cur_str(&pc, prop_bytes_mut(out, id));
			else
				rc = cur_bin(&pc, prop_bytes_mut(out, id));
			break;
		}
		if (rc != MOAT_OK)
			goto out;
	}
	if (ufirst != NULL) {
		out->user.p = ufirst;
		out->user.len = (size_t)(uend - ufirst);
	}
	c->p = pc.end;
	rc = MOAT_OK;
out:
	return rc;
}

/*
 * Walk a user-property region: count the bytes of its User Properties and,
 * when w is not NULL, copy them there. Other properties in the span (see the
 * top of this file) are skipped.
 */
static moat_err user_walk(const struct mqtt_bytes *region, size_t *size, uint8_t *w)
{
	struct mqtt_cur c;
	size_t total = 0;
	moat_err rc = MOAT_OK;

	if (region->len == 0)
		goto out;
	c.p = region->p;
	c.end = region->p + region->len;
	while (c.p < c.end) {
		const uint8_t *start = c.p;
		unsigned id = *c.p++;

		if ((rc = prop_skip(&c, id)) != MOAT_OK) {
			rc = MOAT_E_INVAL;
			goto out;
		}
		if (id != MQTT_PROP_USER_PROPERTY)
			continue;
		if (w != NULL)
			w = wr_raw(w, start, (size_t)(c.p - start));
		total += (size_t)(c.p - start);
	}
out:
	if (rc == MOAT_OK)
		*size = total;
	return rc;
}

moat_err mqtt_props_size(unsigned ctx, const struct mqtt_props *pr, size_t *size)
{
	const uint64_t allowed = allowed_props[ctx & 15u];
	uint64_t bits = pr->present & ~MULTI_PROPS;
	size_t sz = 0, usz;
	moat_err rc = MOAT_E_INVAL;

	if (bits & ~allowed)
		goto out;
	while (bits) {
		unsigned id = lowest_bit(bits);

		bits &= bits - 1;
		switch (prop_kind[id]) {
		case PK_BYTE:
			sz += 2;
			break;
		case PK_U16:
			sz += 3;
			break;
		case PK_U32:
			sz += 5;
			break;
		case PK_STR:
		case PK_BIN:
			if (prop_bytes(pr, id)->len > 65535u)
				goto out;
			sz += 3 + prop_bytes(pr, id)->len;
			break;
		default:
			goto out;
		}
	}
	if (pr->n_sub_ids) {
		const uint32_t *ids = pr->sub_ids != NULL ? pr->sub_ids : &pr->sub_id;
		size_t i;

		if (!(allowed & H(SUBSCRIPTION_ID)))
			goto out;
		if (pr->n_sub_ids > 1 && (ctx != MQTT_PUBLISH || pr->sub_ids == NULL))
			goto out;
		for (i = 0; i < pr->n_sub_ids; i++) {
			if (ids[i] == 0 || ids[i] > MOAT_MQTT_MAX_REMAINING)
				goto out;
			sz += 1 + moat_varint_size(ids[i]);
			if (sz > MOAT_MQTT_MAX_REMAINING)
				goto out;
		}
	}
	if (pr->user.len) {
		if (pr->user.len > MOAT_MQTT_MAX_REMAINING)
			goto out;
		if ((rc = user_walk(&pr->user, &usz, NULL)) != MOAT_OK)
			goto out;
		rc = MOAT_E_INVAL;
		sz += usz;
	}
	if (sz > MOAT_MQTT_MAX_REMAINING)
		goto out;
	*size = sz;
	rc = MOAT_OK;
out:
	return rc;
}

uint8_t *mqtt_props_write(uint8_t *w, const struct mqtt_props *pr)
{
	uint64_t bits = pr->present & ~MULTI_PROPS;
	size_t usz;

	while (bits) {
		unsigned id = lowest_bit(bits);

		bits &= bits - 1;
		w = wr_u8(w, (uint8_t)id);
		switch (id) {
		case MQTT_PROP_PAYLOAD_FORMAT:
			w = wr_u8(w, pr->payload_format);
			break;
		case MQTT_PROP_MESSAGE_EXPIRY:
			w = wr_u32(w, pr->message_expiry);
			break;
		case MQTT_PROP_SESSION_EXPIRY:
			w = wr_u32(w, pr->session_expiry);
			break;
		case MQTT_PROP_SERVER_KEEPALIVE:
			w = wr_u16(w, pr->server_keepalive);
			break;
		case MQTT_PROP_REQUEST_PROBLEM_INFO:
			w = wr_u8(w, pr->request_problem_info);
			break;
		case MQTT_PROP_WILL_DELAY:
			w = wr_u32(w, pr->will_delay);
			break;
		case MQTT_PROP_REQUEST_RESPONSE_INFO:
			w = wr_u8(w, pr->request_response_info);
			break;
		case MQTT_PROP_RECEIVE_MAXIMUM:
			w = wr_u16(w, pr->receive_maximum);
			break;
		case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
			w = wr_u16(w, pr->topic_alias_max);
			break;
		case MQTT_PROP_TOPIC_ALIAS:
			w = wr_u16(w, pr->topic_alias);
			break;
		case MQTT_PROP_MAXIMUM_QOS:
			w = wr_u8(w, pr->maximum_qos);
			break;
		case MQTT_PROP_RETAIN_AVAILABLE:
			w = wr_u8(w, pr->retain_available);
			break;
		case MQTT_PROP_MAXIMUM_PACKET_SIZE:
			w = wr_u32(w, pr->max_packet_size);
			break;
		case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
			w = wr_u8(w, pr->wildcard_sub_available);
			break;
		case MQTT_PROP_SUB_ID_AVAILABLE:
			w = wr_u8(w, pr->sub_id_available);
			break;
		case MQTT_PROP_SHARED_SUB_AVAILABLE:
			w = wr_u8(w, pr->shared_sub_available);
			break;
		default:
			w = wr_bin(w, prop_bytes(pr, id));
			break;
		}
	}
	if (pr->n_sub_ids) {
		const uint32_t *ids = pr->sub_ids != NULL ? pr->sub_ids : &pr->sub_id;
		size_t i;

		for (i = 0; i < pr->n_sub_ids; i++) {
			w = wr_u8(w, MQTT_PROP_SUBSCRIPTION_ID);
			w = wr_varint(w, ids[i]);
		}
	}
	if (pr->user.len && user_walk(&pr->user, &usz, w) == MOAT_OK)
		w += usz;
	return w;
}

moat_err mqtt_user_prop_add(struct moat_buf *raw, const void *key, size_t klen, const void *val,
			    size_t vlen)
{
	uint8_t *w;
	size_t n;
	moat_err rc = MOAT_E_INVAL;

	if (klen > 65535u || vlen > 65535u)
		goto out;
	/* The decoder would reject it, so never build it. */
	if (!mqtt_utf8_valid(key, klen) || !mqtt_utf8_valid(val, vlen))
		goto out;
	n = 5 + klen + vlen;
	if ((rc = moat_buf_reserve(raw, n)) != MOAT_OK)
		goto out;
	w = moat_buf_tail(raw);
	w = wr_u8(w, MQTT_PROP_USER_PROPERTY);
	w = wr_u16(w, (uint16_t)klen);
	w = wr_raw(w, key, klen);
	w = wr_u16(w, (uint16_t)vlen);
	(void)wr_raw(w, val, vlen);
	moat_buf_commit(raw, n);
out:
	return rc;
}

void mqtt_user_iter_init(struct mqtt_user_iter *it, const struct mqtt_props *props)
{
	moat_rd_init(&it->rd, props->user.p, props->user.len);
}

bool mqtt_user_iter_next(struct mqtt_user_iter *it, struct mqtt_bytes *key, struct mqtt_bytes *val)
{
	struct mqtt_cur c;
	bool found = false;

	if (it->rd.pos >= it->rd.len)
		goto out;
	c.p = it->rd.p + it->rd.pos;
	c.end = it->rd.p + it->rd.len;
	while (!found && c.p < c.end) {
		unsigned id = *c.p++;

		if (id == MQTT_PROP_USER_PROPERTY) {
			if (cur_bin(&c, key) != MOAT_OK || cur_bin(&c, val) != MOAT_OK)
				break;
			found = true;
		} else if (prop_skip(&c, id) != MOAT_OK) {
			break;
		}
	}
	/* A broken region ends the walk for good. */
	it->rd.pos = found ? (size_t)(c.p - it->rd.p) : it->rd.len;
out:
	return found;
}
