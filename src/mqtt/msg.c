/*
 * Messages: one allocation holding topic, payload and the v5 properties that
 * travel with a message, shared by reference among all its receivers.
 */
#include <stdlib.h>
#include <string.h>

#include "mqtt/internal.h"

struct moat_msg *moat_msg_new(const char *topic, size_t tlen, const uint8_t *payload, size_t plen,
			      const struct mqtt_props *props, uint8_t qos, bool retain,
			      uint64_t origin, uint64_t now)
{
	struct moat_msg *m;
	size_t extra = tlen + 1 + plen, off = 0;
	uint64_t present = props ? props->present : 0;

	if (tlen > 65535u || plen > UINT32_MAX)
		return NULL;
	if (present & MQTT_HAS(MQTT_PROP_CONTENT_TYPE))
		extra += props->content_type.len;
	if (present & MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC))
		extra += props->response_topic.len;
	if (present & MQTT_HAS(MQTT_PROP_CORRELATION_DATA))
		extra += props->correlation_data.len;
	if (props && props->n_user)
		extra += props->user.len;
	m = malloc(sizeof(*m) + extra);
	if (m == NULL)
		return NULL;
	memset(m, 0, sizeof(*m));
	atomic_init(&m->refs, 1);
	m->qos = qos;
	m->retain = retain;
	m->origin = origin;
	m->topic = (char *)m->data;
	memcpy(m->topic, topic, tlen);
	m->topic[tlen] = '\0';
	m->topic_len = (uint16_t)tlen;
	off = tlen + 1;
	m->payload = m->data + off;
	if (plen)
		memcpy(m->payload, payload, plen);
	m->payload_len = (uint32_t)plen;
	off += plen;
	if (present & MQTT_HAS(MQTT_PROP_PAYLOAD_FORMAT)) {
		m->has_payload_format = true;
		m->payload_format = props->payload_format;
	}
	if ((present & MQTT_HAS(MQTT_PROP_MESSAGE_EXPIRY)) && props->message_expiry > 0) {
		m->expiry_interval = props->message_expiry;
		/* The same clock the receivers compare with, so the interval they
		 * see never exceeds the published one. */
		if (now)
			m->expiry_at = now + (uint64_t)props->message_expiry * 1000u;
	}
	if (present & MQTT_HAS(MQTT_PROP_CONTENT_TYPE)) {
		m->content_type = m->data + off;
		memcpy(m->content_type, props->content_type.p, props->content_type.len);
		m->content_type_len = (uint16_t)props->content_type.len;
		off += props->content_type.len;
	}
	if (present & MQTT_HAS(MQTT_PROP_RESPONSE_TOPIC)) {
		m->response_topic = m->data + off;
		memcpy(m->response_topic, props->response_topic.p, props->response_topic.len);
		m->response_topic_len = (uint16_t)props->response_topic.len;
		off += props->response_topic.len;
	}
	if (present & MQTT_HAS(MQTT_PROP_CORRELATION_DATA)) {
		m->correlation = m->data + off;
		memcpy(m->correlation, props->correlation_data.p, props->correlation_data.len);
		m->correlation_len = (uint16_t)props->correlation_data.len;
		off += props->correlation_data.len;
	}
	if (props && props->n_user) {
		m->user = m->data + off;
		memcpy(m->user, props->user.p, props->user.len);
		m->user_len = (uint32_t)props->user.len;
		m->n_user = (uint16_t)props->n_user;
	}
	return m;
}

void moat_msg_unref(struct moat_msg *m)
{
	if (m == NULL)
		return;
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

bool moat_msg_expired(const struct moat_msg *m, uint64_t now)
{
	return m->expiry_at != 0 && now >= m->expiry_at;
}
