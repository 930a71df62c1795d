/*
 * Bytes to struct mqtt_packet: framing, one decoder per packet type, the
 * SUBSCRIBE/UNSUBSCRIBE iterator, UTF-8 validation and reason-code tables.
 *
 * Every rule of the spec that can be checked on one packet alone is checked
 * here, so handlers never see a packet the spec calls malformed. Rules left
 * to others, by design:
 *  - topic name/filter syntax (wildcards, levels, length): mqtt/topic.h, so
 *    the broker can answer per filter (SUBACK 0x8F) instead of disconnecting;
 *  - a Subscription Identifier in a PUBLISH sent by a client (only a server
 *    may send one): the decoder does not know the direction, so the broker
 *    must reject props.n_sub_ids != 0 on PUBLISH from clients;
 *  - anything that needs session state (aliases, receive maximum, auth).
 *
 * Error choice: a violation of the encoding (lengths, reserved bits, invalid
 * UTF-8, unknown property) is MOAT_E_MALFORMED; a well-formed packet breaking
 * a rule (packet id 0, duplicate or misplaced property, zero where the spec
 * forbids it, invalid reason code) is MOAT_E_PROTOCOL; more than
 * MOAT_MAX_USER_PROPERTIES user properties is MOAT_E_LIMIT (reason 0x97).
 */
#include <string.h>

#include "mqtt/codec/internal.h"

moat_err mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, uint8_t *first_byte,
		    size_t *hdr_len, size_t *body_len)
{
	uint32_t rl = 0;
	size_t i, hdr;
	uint8_t d = 0;
	moat_err rc = MOAT_E_AGAIN;

	for (i = 1; i <= 4; i++) {
		if (i >= len)
			goto out;
		d = buf[i];
		rl |= (uint32_t)(d & 0x7fu) << (7 * (i - 1));
		if (!(d & 0x80u))
			break;
	}
	if (i > 4 || (i > 1 && d == 0)) {
		/* A fifth length byte, or a non-minimal length (1.5.5). */
		rc = MOAT_E_MALFORMED;
		goto out;
	}
	hdr = i + 1;
	/* Decided on the header alone, before any of the body is buffered. */
	if (max_packet < hdr || rl > max_packet - hdr) {
		rc = MOAT_E_TOO_LARGE;
		goto out;
	}
	if (len - hdr < rl)
		goto out;
	*first_byte = buf[0];
	*hdr_len = hdr;
	*body_len = rl;
	rc = MOAT_OK;
out:
	return rc;
}

/*
 * MQTT 1.5.4: well-formed UTF-8 (shortest form, no surrogates, at most
 * U+10FFFF) and no U+0000. Eight bytes at a time while they are ASCII and
 * non-zero, which is nearly every topic and client id.
 */
bool mqtt_utf8_valid(const uint8_t *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	const uint8_t *end;
	bool ok = true;

	if (n == 0)
		goto out; /* p may be NULL: no arithmetic on it */
	end = p + n;
	ok = false;
	while (p < end) {
		uint8_t c = *p;

		if ((size_t)(end - p) >= 8) {
			uint64_t v;

			memcpy(&v, p, 8);
			/* With no high bit set, v - ones borrows into a high bit
			 * exactly when some byte is 0. */
			if (((v | (v - ones)) & highs) == 0) {
				p += 8;
				continue;
			}
		}
		if (c >= 0x01 && c < 0x80) {
			p++;
		} else if (c >= 0xc2 && c < 0xe0) {
			if (end - p < 2 || (p[1] & 0xc0) != 0x80)
				goto out;
			p += 2;
		} else if (c >= 0xe0 && c < 0xf0) {
			uint8_t lo = 0x80, hi = 0xbf;

			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* U+D800..U+DFFF */
			if (end - p < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
				goto out;
			p += 3;
		} else if (c >= 0xf0 && c < 0xf5) {
			uint8_t lo = 0x80, hi = 0xbf;

			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* beyond U+10FFFF */
			if (end - p < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 ||
			    (p[3] & 0xc0) != 0x80)
				goto out;
			p += 4;
		} else {
			/* U+0000, a stray continuation, C0/C1 or F5..FF. */
			goto out;
		}
	}
	ok = true;
out:
	return ok;
}

static const uint8_t codes_connack5[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
					 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97,
					 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f};
static const uint8_t codes_puback5[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t codes_pubrel5[] = {0x00, 0x92};
static const uint8_t codes_suback5[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
					0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2};
static const uint8_t codes_unsuback5[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91};
static const uint8_t codes_disconnect5[] = {
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2};
static const uint8_t codes_auth5[] = {0x00, 0x18, 0x19};
static const uint8_t codes_connack3[] = {0, 1, 2, 3, 4, 5};
static const uint8_t codes_suback3[] = {0x00, 0x01, 0x02, 0x80};

bool mqtt_code_valid(uint8_t type, uint8_t version, uint8_t code)
{
	const uint8_t *set = NULL;
	size_t n = 0;
	bool ok = false;

	if (version == MQTT_V5) {
		switch (type) {
		case MQTT_CONNACK:
			set = codes_connack5, n = sizeof(codes_connack5);
			break;
		case MQTT_PUBACK:
		case MQTT_PUBREC:
			set = codes_puback5, n = sizeof(codes_puback5);
			break;
		case MQTT_PUBREL:
		case MQTT_PUBCOMP:
			set = codes_pubrel5, n = sizeof(codes_pubrel5);
			break;
		case MQTT_SUBACK:
			set = codes_suback5, n = sizeof(codes_suback5);
			break;
		case MQTT_UNSUBACK:
			set = codes_unsuback5, n = sizeof(codes_unsuback5);
			break;
		case MQTT_DISCONNECT:
			set = codes_disconnect5, n = sizeof(codes_disconnect5);
			break;
		case MQTT_AUTH:
			set = codes_auth5, n = sizeof(codes_auth5);
			break;
		default:
			break;
		}
	} else if (type == MQTT_CONNACK) {
		set = codes_connack3, n = sizeof(codes_connack3);
	} else if (type == MQTT_SUBACK) {
		set = codes_suback3, n = sizeof(codes_suback3);
	} else {
		/* Other v3 packets carry no code: only the implicit success. */
		ok = code == 0;
		goto out;
	}
	ok = n != 0 && memchr(set, code, n) != NULL;
out:
	return ok;
}

static moat_err dec_connect(struct mqtt_cur *c, struct mqtt_packet *out)
{
	struct mqtt_connect *k = &out->u.connect;
	struct mqtt_bytes name;
	uint8_t level, flags;
	moat_err rc;

	if ((rc = cur_bin(c, &name)) != MOAT_OK || (rc = cur_u8(c, &level)) != MOAT_OK)
		goto out;
	/* Kept even on error so the broker can answer in the client's version. */
	k->version = level;
	if (name.len == 4 && memcmp(name.p, "MQTT", 4) == 0) {
		if (level != MQTT_V311 && level != MQTT_V5) {
			rc = MOAT_E_VERSION;
			goto out;
		}
	} else if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0) {
		/* MQTT 3.1: answered with "unacceptable protocol version". */
		rc = MOAT_E_VERSION;
		goto out;
	} else {
		rc = MOAT_E_PROTOCOL;
		goto out;
	}
	if ((rc = cur_u8(c, &flags)) != MOAT_OK)
		goto out;
	rc = MOAT_E_MALFORMED;
	if (flags & 0x01) /* reserved, MQTT-3.1.2-3 */
		goto out;
	k->clean_start = (flags & 0x02) != 0;
	k->will = (flags & 0x04) != 0;
	k->will_qos = (uint8_t)((flags >> 3) & 3u);
	k->will_retain = (flags & 0x20) != 0;
	k->has_password = (flags & 0x40) != 0;
	k->has_username = (flags & 0x80) != 0;
	if (k->will_qos == 3)
		goto out;
	if (!k->will && (k->will_qos || k->will_retain))
		goto out;
	if (level == MQTT_V311 && k->has_password && !k->has_username)
		goto out; /* MQTT-3.1.2-22 */
	if ((rc = cur_u16(c, &k->keepalive)) != MOAT_OK)
		goto out;
	if (level == MQTT_V5 && (rc = mqtt_props_decode(c, MQTT_CONNECT, &out->props)) != MOAT_OK)
		goto out;
	if ((rc = cur_str(c, &k->client_id)) != MOAT_OK)
		goto out;
	if (k->will) {
		if (level == MQTT_V5 &&
		    (rc = mqtt_props_decode(c, MQTT_PCTX_WILL, &k->will_props)) != MOAT_OK)
			goto out;
		if ((rc = cur_str(c, &k->will_topic)) != MOAT_OK ||
		    (rc = cur_bin(c, &k->will_payload)) != MOAT_OK)
			goto out;
	}
	if (k->has_username && (rc = cur_str(c, &k->username)) != MOAT_OK)
		goto out;
	if (k->has_password && (rc = cur_bin(c, &k->password)) != MOAT_OK)
		goto out;
	rc = MOAT_E_MALFORMED;
	if (cur_left(c))
		goto out;
	rc = MOAT_E_PROTOCOL;
	/* 3.1.2.11.10: Authentication Data without a method. */
	if ((out->props.present & MQTT_HAS(MQTT_PROP_AUTH_DATA)) &&
	    !(out->props.present & MQTT_HAS(MQTT_PROP_AUTH_METHOD)))
		goto out;
	rc = MOAT_OK;
out:
	return rc;
}

static moat_err dec_connack(struct mqtt_cur *c, uint8_t version, struct mqtt_packet *out)
{
	uint8_t flags;
	moat_err rc;

	if ((rc = cur_u8(c, &flags)) != MOAT_OK ||
	    (rc = cur_u8(c, &out->u.connack.code)) != MOAT_OK)
		goto out;
	rc = MOAT_E_MALFORMED;
	if (flags & 0xfe)
		goto out;
	out->u.connack.session_present = flags & 1;
	if (version == MQTT_V5 && (rc = mqtt_props_decode(c, MQTT_CONNACK, &out->props)) != MOAT_OK)
		goto out;
	rc = MOAT_E_MALFORMED;
	if (cur_left(c))
		goto out;
	rc = MOAT_E_PROTOCOL;
	if (!mqtt_code_valid(MQTT_CONNACK, version, out->u.connack.code))
		goto out;
	/* MQTT-3.2.2-4 / 3.2.2-6: a refused connection has no session. */
	if (out->u.connack.code != 0 && out->u.connack.session_present)
		goto out;
	rc = MOAT_OK;
out:
	return rc;
}

static moat_err dec_publish(struct mqtt_cur *c, uint8_t version, uint8_t flags,
			    struct mqtt_packet *out)
{
	struct mqtt_publish *pb = &out->u.publish;
	moat_err rc = MOAT_E_MALFORMED;

	pb->retain = flags & 1;
	pb->qos = (uint8_t)((flags >> 1) & 3u);
	pb->dup = (flags & 8) != 0;
	if (pb->qos == 3)
		goto out; /* MQTT-3.3.1-4 */
	if (pb->dup && pb->qos == 0)
		goto out; /* MQTT-3.3.1-2 */
	if ((rc = cur_str(c, &pb->topic)) != MOAT_OK)
		goto out;
	if (pb->qos) {
		if ((rc = cur_u16(c, &pb->packet_id)) != MOAT_OK)
			goto out;
		rc = MOAT_E_PROTOCOL;
		if (pb->packet_id == 0)
			goto out;
	}
	if (version == MQTT_V5 && (rc = mqtt_props_decode(c, MQTT_PUBLISH, &out->props)) != MOAT_OK)
		goto out;
	/* An empty topic only stands for a Topic Alias (v5 3.3.2.1). */
	rc = MOAT_E_PROTOCOL;
	if (pb->topic.len == 0 && !(out->props.present & MQTT_HAS(MQTT_PROP_TOPIC_ALIAS)))
		goto out;
	pb->payload.p = c->p;
	pb->payload.len = cur_left(c);
	c->p = c->end;
	rc = MOAT_OK;
out:
	return rc;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static moat_err dec_ack(struct mqtt_cur *c, uint8_t version, uint8_t type, struct mqtt_packet *out)
{
	moat_err rc;

	if ((rc = cur_u16(c, &out->u.ack.packet_id)) != MOAT_OK)
		goto out;
	/* v5 short forms: remaining length 2 means success and no properties,
	 * 3 means no properties. */
	if (version == MQTT_V5 && cur_left(c)) {
		if ((rc = cur_u8(c, &out->u.ack.code)) != MOAT_OK)
			goto out;
		if (cur_left(c) && (rc = mqtt_props_decode(c, type, &out->props)) != MOAT_OK)
			goto out;
	}
	rc = MOAT_E_MALFORMED;
	if (cur_left(c))
		goto out;
	rc = MOAT_E_PROTOCOL;
	if (out->u.ack.packet_id == 0 || !mqtt_code_valid(type, version, out->u.ack.code))
		goto out;
	rc = MOAT_OK;
out:
	return rc;
}

static bool is_shared(const struct mqtt_bytes *f)
{
	return f->len >= 7 && memcmp(f->p, "$share/", 7) == 0;
}

/* SUBSCRIBE and UNSUBSCRIBE: validate every entry, keep them raw. */
static moat_err dec_subs(struct mqtt_cur *c, uint8_t version, uint8_t type, struct mqtt_packet *out)
{
	struct mqtt_sub_list *s = &out->u.subs;
	moat_err rc;

	if ((rc = cur_u16(c, &s->packet_id)) != MOAT_OK)
		goto out;
	rc = MOAT_E_PROTOCOL;
	if (s->packet_id == 0)
		goto out;
	if (version == MQTT_V5 && (rc = mqtt_props_decode(c, type, &out->props)) != MOAT_OK)
		goto out;
	s->raw.p = c->p;
	s->raw.len = cur_left(c);
	while (cur_left(c)) {
		struct mqtt_bytes f;
		uint8_t o;

		if ((rc = cur_str(c, &f)) != MOAT_OK)
			goto out;
		if (type == MQTT_SUBSCRIBE) {
			if ((rc = cur_u8(c, &o)) != MOAT_OK)
				goto out;
			rc = MOAT_E_MALFORMED;
			/* Reserved bits: 2-7 in v3 (MQTT-3.8.3-4), 6-7 in v5. */
			if (o & (version == MQTT_V5 ? 0xc0 : 0xfc))
				goto out;
			if ((o & 3) == 3 || ((o >> 4) & 3) == 3)
				goto out;
			rc = MOAT_E_PROTOCOL;
			if ((o & 0x04) && is_shared(&f))
				goto out; /* No Local on a shared subscription */
		}
		s->count++;
	}
	/* MQTT-3.8.3-3 / 3.10.3-2: at least one entry. */
	rc = MOAT_E_PROTOCOL;
	if (s->count == 0)
		goto out;
	rc = MOAT_OK;
out:
	return rc;
}

/* SUBACK and UNSUBACK (v3 UNSUBACK has no payload). */
static moat_err dec_codes(struct mqtt_cur *c, uint8_t version, uint8_t type,
			  struct mqtt_packet *out)
{
	struct mqtt_codes *k = &out->u.codes;
	size_t i;
	moat_err rc;

	if ((rc = cur_u16(c, &k->packet_id)) != MOAT_OK)
		goto out;
	rc = MOAT_E_PROTOCOL;
	if (k->packet_id == 0)
		goto out;
	if (version == MQTT_V5 && (rc = mqtt_props_decode(c, type, &out->props)) != MOAT_OK)
		goto out;
	k->codes.p = c->p;
	k->codes.len = cur_left(c);
	c->p = c->end;
	if (version != MQTT_V5 && type == MQTT_UNSUBACK) {
		rc = k->codes.len ? MOAT_E_MALFORMED : MOAT_OK;
		goto out;
	}
	/* One code per filter, and a SUBSCRIBE has at least one. */
	rc = MOAT_E_PROTOCOL;
	if (k->codes.len == 0)
		goto out;
	for (i = 0; i < k->codes.len; i++) {
		if (!mqtt_code_valid(type, version, k->codes.p[i]))
			goto out;
	}
	rc = MOAT_OK;
out:
	return rc;
}

/* DISCONNECT and AUTH. */
static moat_err dec_reason(struct mqtt_cur *c, uint8_t version, uint8_t type,
			   struct mqtt_packet *out)
{
	moat_err rc = MOAT_E_MALFORMED;

	if (version != MQTT_V5) {
		/* v3 DISCONNECT is empty; AUTH (type 15) is reserved in v3. */
		if (type == MQTT_AUTH || cur_left(c))
			goto out;
		rc = MOAT_OK;
		goto out;
	}
	/* Remaining length 0: success, no properties. DISCONNECT may also stop
	 * after the code (3.14.2.2); AUTH may not (3.15.2). */
	if (cur_left(c)) {
		if ((rc = cur_u8(c, &out->u.reason.code)) != MOAT_OK)
			goto out;
		if ((type == MQTT_AUTH || cur_left(c)) &&
		    (rc = mqtt_props_decode(c, type, &out->props)) != MOAT_OK)
			goto out;
	}
	rc = MOAT_E_MALFORMED;
	if (cur_left(c))
		goto out;
	rc = MOAT_E_PROTOCOL;
	if (!mqtt_code_valid(type, version, out->u.reason.code))
		goto out;
	rc = MOAT_OK;
out:
	return rc;
}

/* Fixed-header flags (2.1.3); PUBLISH is checked by its decoder. */
static const uint8_t required_flags[16] = {
    [MQTT_PUBREL] = 2,
    [MQTT_SUBSCRIBE] = 2,
    [MQTT_UNSUBSCRIBE] = 2,
};

moat_err mqtt_decode(uint8_t version, uint8_t first_byte, const uint8_t *body, size_t body_len,
		     struct mqtt_packet *out)
{
	static const uint8_t empty[1];
	const uint8_t type = (uint8_t)(first_byte >> 4), flags = first_byte & 0x0fu;
	struct mqtt_cur c;
	moat_err rc = MOAT_E_INVAL;

	if (body == NULL) {
		if (body_len)
			goto out;
		body = empty;
	}
	if (type != MQTT_CONNECT && version != MQTT_V311 && version != MQTT_V5)
		goto out;
	c.p = body;
	c.end = body + body_len;
	/* Only what this type uses is cleared: PUBLISH is the hot path. */
	memset(&out->props, 0, sizeof(out->props));
	out->type = type;
	rc = MOAT_E_MALFORMED;
	if (type != MQTT_PUBLISH && flags != required_flags[type])
		goto out;
	switch (type) {
	case MQTT_CONNECT:
		memset(&out->u.connect, 0, sizeof(out->u.connect));
		rc = dec_connect(&c, out);
		break;
	case MQTT_CONNACK:
		memset(&out->u.connack, 0, sizeof(out->u.connack));
		rc = dec_connack(&c, version, out);
		break;
	case MQTT_PUBLISH:
		memset(&out->u.publish, 0, sizeof(out->u.publish));
		rc = dec_publish(&c, version, flags, out);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		memset(&out->u.ack, 0, sizeof(out->u.ack));
		rc = dec_ack(&c, version, type, out);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		memset(&out->u.subs, 0, sizeof(out->u.subs));
		rc = dec_subs(&c, version, type, out);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		memset(&out->u.codes, 0, sizeof(out->u.codes));
		rc = dec_codes(&c, version, type, out);
		break;
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		rc = body_len ? MOAT_E_MALFORMED : MOAT_OK;
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		memset(&out->u.reason, 0, sizeof(out->u.reason));
		rc = dec_reason(&c, version, type, out);
		break;
	default:
		/* Type 0 is reserved. */
		rc = MOAT_E_MALFORMED;
		break;
	}
out:
	return rc;
}

void mqtt_sub_iter_init(struct mqtt_sub_iter *it, uint8_t version, const struct mqtt_packet *p)
{
	moat_rd_init(&it->rd, p->u.subs.raw.p, p->u.subs.raw.len);
	it->type = p->type;
	it->version = version;
}

bool mqtt_sub_iter_next(struct mqtt_sub_iter *it, struct mqtt_sub_entry *e)
{
	struct mqtt_cur c;
	uint8_t o = 0;
	bool ok = false;

	if (it->rd.pos >= it->rd.len)
		goto out;
	c.p = it->rd.p + it->rd.pos;
	c.end = it->rd.p + it->rd.len;
	if (cur_bin(&c, &e->filter) != MOAT_OK)
		goto stop;
	if (it->type == MQTT_SUBSCRIBE && cur_u8(&c, &o) != MOAT_OK)
		goto stop;
	e->qos = o & 3u;
	e->no_local = it->version == MQTT_V5 && (o & 0x04);
	e->retain_as_published = it->version == MQTT_V5 && (o & 0x08);
	e->retain_handling = it->version == MQTT_V5 ? (uint8_t)((o >> 4) & 3u) : 0;
	it->rd.pos = (size_t)(c.p - it->rd.p);
	ok = true;
	goto out;
stop:
	/* Only a hand-built region can be broken; end the walk for good. */
	it->rd.pos = it->rd.len;
out:
	return ok;
}

moat_err mqtt_sub_list_add(struct moat_buf *raw, uint8_t type, uint8_t version,
			   const struct mqtt_sub_entry *e)
{
	const bool sub = type == MQTT_SUBSCRIBE;
	size_t n = 2 + e->filter.len + (sub ? 1u : 0u);
	uint8_t o = e->qos, *w;
	moat_err rc = MOAT_E_INVAL;

	if ((!sub && type != MQTT_UNSUBSCRIBE) || (version != MQTT_V311 && version != MQTT_V5))
		goto out;
	if (e->filter.len > 65535u || !mqtt_utf8_valid(e->filter.p, e->filter.len))
		goto out;
	if (sub) {
		if (e->qos > 2 || e->retain_handling > 2)
			goto out;
		if (version == MQTT_V5)
			o = (uint8_t)(o | (e->no_local ? 0x04u : 0u) |
				      (e->retain_as_published ? 0x08u : 0u) |
				      (uint8_t)(e->retain_handling << 4));
	}
	if ((rc = moat_buf_reserve(raw, n)) != MOAT_OK)
		goto out;
	w = moat_buf_tail(raw);
	w = wr_bin(w, &e->filter);
	if (sub)
		(void)wr_u8(w, o);
	moat_buf_commit(raw, n);
out:
	return rc;
}

uint8_t mqtt_err_reason(moat_err e)
{
	switch (e) {
	case MOAT_OK:
		return MQTT_RC_SUCCESS;
	case MOAT_E_MALFORMED:
		return MQTT_RC_MALFORMED;
	case MOAT_E_PROTOCOL:
		return MQTT_RC_PROTOCOL_ERROR;
	case MOAT_E_VERSION:
		return MQTT_RC_UNSUPPORTED_VERSION;
	case MOAT_E_TOO_LARGE:
		return MQTT_RC_PACKET_TOO_LARGE;
	case MOAT_E_LIMIT:
		/* "An implementation or administrative imposed limit has been
		 * exceeded": e.g. too many user properties. */
		return MQTT_RC_QUOTA_EXCEEDED;
	case MOAT_E_DENIED:
		return MQTT_RC_NOT_AUTHORIZED;
	default:
		return MQTT_RC_UNSPECIFIED;
	}
}

const char *mqtt_type_name(uint8_t type)
{
	static const char *const names[16] = {
	    "RESERVED", "CONNECT",  "CONNACK",	  "PUBLISH", "PUBACK",	    "PUBREC",
	    "PUBREL",	"PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
	    "PINGREQ",	"PINGRESP", "DISCONNECT", "AUTH",
	};

	return type < 16 ? names[type] : "UNKNOWN";
}
