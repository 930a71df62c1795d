/*
 * struct mqtt_packet to bytes. Two passes: plan() validates the packet and
 * computes every length, then the whole packet is reserved at once and
 * written with unchecked stores. So mqtt_encoded_size() is exactly what
 * mqtt_encode() appends, and a failed encode leaves `out` untouched.
 *
 * The encoder refuses (MOAT_E_INVAL) what our own decoder would reject:
 * packet id 0 where one is needed, QoS 3, DUP on QoS 0, invalid reason codes,
 * properties not allowed in the packet, strings over 65535 bytes. For v3 it
 * silently drops what v3 cannot carry (properties, reason codes of acks and
 * DISCONNECT); v5 SUBACK failure codes (>= 0x80) become v3's 0x80.
 */
#include "mqtt/codec/internal.h"

struct enc_plan {
	size_t body;	   /* remaining length */
	size_t props;	   /* v5 property bytes, length varint excluded */
	size_t will_props; /* same, for the Will Properties */
	bool with_props;   /* v5: write the property length and properties */
	uint8_t first;	   /* fixed header byte */
};

static size_t props_len(size_t n)
{
	return moat_varint_size((uint32_t)n) + n;
}

static bool str_ok(const struct mqtt_bytes *b)
{
	return b->len <= 65535u;
}

static moat_err plan_connect(uint8_t version, const struct mqtt_packet *p, struct enc_plan *pl)
{
	const struct mqtt_connect *k = &p->u.connect;
	size_t b;
	moat_err rc = MOAT_E_INVAL;

	if (k->will_qos > 2 || (version == MQTT_V311 && k->has_password && !k->has_username))
		goto out;
	if (!str_ok(&k->client_id) || !str_ok(&k->will_topic) || !str_ok(&k->will_payload) ||
	    !str_ok(&k->username) || !str_ok(&k->password))
		goto out;
	if (version == MQTT_V5 && (p->props.present & MQTT_HAS(MQTT_PROP_AUTH_DATA)) &&
	    !(p->props.present & MQTT_HAS(MQTT_PROP_AUTH_METHOD)))
		goto out;
	/* name, level, flags, keepalive, client id */
	b = 6 + 1 + 1 + 2 + 2 + k->client_id.len;
	if (version == MQTT_V5)
		b += props_len(pl->props);
	if (k->will) {
		if (version == MQTT_V5) {
			rc = mqtt_props_size(MQTT_PCTX_WILL, &k->will_props, &pl->will_props);
			if (rc != MOAT_OK)
				goto out;
			rc = MOAT_E_INVAL;
			b += props_len(pl->will_props);
		}
		b += 2 + k->will_topic.len + 2 + k->will_payload.len;
	}
	if (k->has_username)
		b += 2 + k->username.len;
	if (k->has_password)
		b += 2 + k->password.len;
	pl->body = b;
	rc = MOAT_OK;
out:
	return rc;
}

static moat_err plan_publish(uint8_t version, const struct mqtt_packet *p, struct enc_plan *pl)
{
	const struct mqtt_publish *pb = &p->u.publish;
	moat_err rc = MOAT_E_INVAL;

	if (pb->qos > 2 || (pb->dup && pb->qos == 0) || (pb->qos && pb->packet_id == 0))
		goto out;
	if (!str_ok(&pb->topic) || pb->payload.len > MOAT_MQTT_MAX_REMAINING)
		goto out;
	if (pb->topic.len == 0 &&
	    (version != MQTT_V5 || !(p->props.present & MQTT_HAS(MQTT_PROP_TOPIC_ALIAS))))
		goto out;
	pl->first = (uint8_t)(pl->first | (pb->dup ? 0x08u : 0u) | (unsigned)(pb->qos << 1) |
			      (pb->retain ? 0x01u : 0u));
	pl->body = 2 + pb->topic.len + (pb->qos ? 2u : 0u) + pb->payload.len;
	if (version == MQTT_V5)
		pl->body += props_len(pl->props);
	rc = MOAT_OK;
out:
	return rc;
}

static moat_err plan_codes(uint8_t version, const struct mqtt_packet *p, struct enc_plan *pl)
{
	const struct mqtt_codes *k = &p->u.codes;
	size_t i;
	moat_err rc = MOAT_E_INVAL;

	if (k->packet_id == 0)
		goto out;
	pl->body = 2;
	if (version != MQTT_V5 && p->type == MQTT_UNSUBACK) {
		rc = MOAT_OK;
		goto out;
	}
	if (k->codes.len == 0 || k->codes.len > MOAT_MQTT_MAX_REMAINING)
		goto out;
	for (i = 0; i < k->codes.len; i++) {
		uint8_t c = k->codes.p[i];

		if (version != MQTT_V5 && c >= 0x80)
			c = 0x80;
		if (!mqtt_code_valid(p->type, version, c))
			goto out;
	}
	pl->body += k->codes.len;
	if (version == MQTT_V5)
		pl->body += props_len(pl->props);
	rc = MOAT_OK;
out:
	return rc;
}

static moat_err plan(uint8_t version, const struct mqtt_packet *p, struct enc_plan *pl)
{
	const uint8_t type = p->type;
	const bool v5 = version == MQTT_V5;
	moat_err rc = MOAT_E_INVAL;

	memset(pl, 0, sizeof(*pl));
	if ((version != MQTT_V311 && version != MQTT_V5) || type < MQTT_CONNECT || type > MQTT_AUTH)
		goto out;
	pl->first = (uint8_t)(type << 4);
	if (type == MQTT_PUBREL || type == MQTT_SUBSCRIBE || type == MQTT_UNSUBSCRIBE)
		pl->first |= 0x02;
	if (v5 && type != MQTT_PINGREQ && type != MQTT_PINGRESP) {
		if ((rc = mqtt_props_size(type, &p->props, &pl->props)) != MOAT_OK)
			goto out;
		rc = MOAT_E_INVAL;
	}
	switch (type) {
	case MQTT_CONNECT:
		rc = plan_connect(version, p, pl);
		break;
	case MQTT_CONNACK:
		if (!mqtt_code_valid(type, version, p->u.connack.code) ||
		    (p->u.connack.code && p->u.connack.session_present))
			break;
		pl->body = 2 + (v5 ? props_len(pl->props) : 0u);
		rc = MOAT_OK;
		break;
	case MQTT_PUBLISH:
		rc = plan_publish(version, p, pl);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		if (p->u.ack.packet_id == 0)
			break;
		pl->body = 2;
		if (v5) {
			if (!mqtt_code_valid(type, version, p->u.ack.code))
				break;
			/* Short forms (3.4.2.1): drop what is default. */
			pl->with_props = pl->props != 0;
			if (pl->with_props)
				pl->body += 1 + props_len(pl->props);
			else if (p->u.ack.code)
				pl->body += 1;
		}
		rc = MOAT_OK;
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		if (p->u.subs.packet_id == 0 || p->u.subs.raw.len == 0 ||
		    p->u.subs.raw.len > MOAT_MQTT_MAX_REMAINING)
			break;
		pl->body = 2 + p->u.subs.raw.len + (v5 ? props_len(pl->props) : 0u);
		rc = MOAT_OK;
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		rc = plan_codes(version, p, pl);
		break;
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		rc = MOAT_OK;
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		if (!v5) {
			/* v3 has no AUTH; its DISCONNECT is empty. */
			if (type == MQTT_DISCONNECT)
				rc = MOAT_OK;
			break;
		}
		if (!mqtt_code_valid(type, version, p->u.reason.code))
			break;
		/* AUTH cannot stop after the code (3.15.2), DISCONNECT can. */
		pl->with_props = pl->props != 0 || (type == MQTT_AUTH && p->u.reason.code);
		if (pl->with_props)
			pl->body = 1 + props_len(pl->props);
		else if (p->u.reason.code)
			pl->body = 1;
		rc = MOAT_OK;
		break;
	default:
		break;
	}
	if (rc == MOAT_OK && pl->body > MOAT_MQTT_MAX_REMAINING)
		rc = MOAT_E_INVAL;
out:
	return rc;
}

size_t mqtt_encoded_size(uint8_t version, const struct mqtt_packet *p)
{
	struct enc_plan pl;
	size_t n = 0;

	if (plan(version, p, &pl) == MOAT_OK)
		n = 1 + moat_varint_size((uint32_t)pl.body) + pl.body;
	return n;
}

static uint8_t *put_props(uint8_t *w, size_t n, const struct mqtt_props *pr)
{
	w = wr_varint(w, (uint32_t)n);
	return mqtt_props_write(w, pr);
}

static uint8_t *write_connect(uint8_t *w, uint8_t version, const struct mqtt_packet *p,
			      const struct enc_plan *pl)
{
	static const struct mqtt_bytes name = {(const uint8_t *)"MQTT", 4};
	const struct mqtt_connect *k = &p->u.connect;
	unsigned flags = 0;

	if (k->clean_start)
		flags |= 0x02;
	if (k->will)
		flags |= 0x04u | (unsigned)(k->will_qos << 3) | (k->will_retain ? 0x20u : 0u);
	if (k->has_password)
		flags |= 0x40;
	if (k->has_username)
		flags |= 0x80;
	w = wr_bin(w, &name);
	w = wr_u8(w, version);
	w = wr_u8(w, (uint8_t)flags);
	w = wr_u16(w, k->keepalive);
	if (version == MQTT_V5)
		w = put_props(w, pl->props, &p->props);
	w = wr_bin(w, &k->client_id);
	if (k->will) {
		if (version == MQTT_V5)
			w = put_props(w, pl->will_props, &k->will_props);
		w = wr_bin(w, &k->will_topic);
		w = wr_bin(w, &k->will_payload);
	}
	if (k->has_username)
		w = wr_bin(w, &k->username);
	if (k->has_password)
		w = wr_bin(w, &k->password);
	return w;
}

static uint8_t *write_body(uint8_t *w, uint8_t version, const struct mqtt_packet *p,
			   const struct enc_plan *pl)
{
	const bool v5 = version == MQTT_V5;
	size_t i;

	switch (p->type) {
	case MQTT_CONNECT:
		w = write_connect(w, version, p, pl);
		break;
	case MQTT_CONNACK:
		w = wr_u8(w, p->u.connack.session_present ? 1u : 0u);
		w = wr_u8(w, p->u.connack.code);
		if (v5)
			w = put_props(w, pl->props, &p->props);
		break;
	case MQTT_PUBLISH:
		w = wr_bin(w, &p->u.publish.topic);
		if (p->u.publish.qos)
			w = wr_u16(w, p->u.publish.packet_id);
		if (v5)
			w = put_props(w, pl->props, &p->props);
		w = wr_raw(w, p->u.publish.payload.p, p->u.publish.payload.len);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		w = wr_u16(w, p->u.ack.packet_id);
		if (v5 && (pl->with_props || p->u.ack.code))
			w = wr_u8(w, p->u.ack.code);
		if (pl->with_props)
			w = put_props(w, pl->props, &p->props);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		w = wr_u16(w, p->u.subs.packet_id);
		if (v5)
			w = put_props(w, pl->props, &p->props);
		w = wr_raw(w, p->u.subs.raw.p, p->u.subs.raw.len);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		w = wr_u16(w, p->u.codes.packet_id);
		if (!v5 && p->type == MQTT_UNSUBACK)
			break;
		if (v5) {
			w = put_props(w, pl->props, &p->props);
			w = wr_raw(w, p->u.codes.codes.p, p->u.codes.codes.len);
			break;
		}
		for (i = 0; i < p->u.codes.codes.len; i++) {
			uint8_t c = p->u.codes.codes.p[i];
			*w++ = c >= 0x80 ? 0x80 : c;
		}
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		if (v5 && (pl->with_props || p->u.reason.code))
			w = wr_u8(w, p->u.reason.code);
		if (pl->with_props)
			w = put_props(w, pl->props, &p->props);
		break;
	default:
		break;
	}
	return w;
}

moat_err mqtt_encode(struct moat_buf *out, uint8_t version, const struct mqtt_packet *p)
{
	struct enc_plan pl;
	size_t total;
	uint8_t *start, *w;
	moat_err rc;

	if ((rc = plan(version, p, &pl)) != MOAT_OK)
		goto out;
	total = 1 + moat_varint_size((uint32_t)pl.body) + pl.body;
	if ((rc = moat_buf_reserve(out, total)) != MOAT_OK)
		goto out;
	start = w = moat_buf_tail(out);
	w = wr_u8(w, pl.first);
	w = wr_varint(w, (uint32_t)pl.body);
	w = write_body(w, version, p, &pl);
	/* The plan and the writer disagreeing is a bug; never commit it. */
	if ((size_t)(w - start) != total) {
		rc = MOAT_E_INTERNAL;
		goto out;
	}
	moat_buf_commit(out, total);
out:
	return rc;
}
