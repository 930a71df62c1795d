/* PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1/2 acknowledgement flows. */
#include <string.h>

#include "mqtt/internal.h"

static void send_ack(struct moat_conn *c, uint8_t type, uint16_t pid, uint8_t code)
{
	struct mqtt_packet r;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.u.ack.packet_id = pid;
	r.u.ack.code = c->version == MQTT_V5 ? code : 0;
	(void)moat_conn_send(c, &r);
}

void moat_handle_puback(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;
	struct moat_delivery *d = moat_session_find_inflight(s, p->u.ack.packet_id);

	/* An ack for an unknown id is ignored: it may follow a resend. */
	if (d == NULL || d->state != DELIVERY_WAIT_PUBACK)
		return;
	moat_session_complete(s, d);
	moat_session_pump(s);
}

void moat_handle_pubrec(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;
	struct moat_delivery *d = moat_session_find_inflight(s, p->u.ack.packet_id);

	if (d == NULL || d->state == DELIVERY_WAIT_PUBACK) {
		send_ack(c, MQTT_PUBREL, p->u.ack.packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
		return;
	}
	if (p->u.ack.code >= 0x80) {
		/* The receiver refused it: the flow ends here (MQTT-4.3.3). */
		moat_session_complete(s, d);
		moat_session_pump(s);
		return;
	}
	d->state = DELIVERY_WAIT_PUBCOMP;
	moat_persist_delivery_state(s, d);
	/* The message itself is no longer needed once PUBREC arrived. */
	send_ack(c, MQTT_PUBREL, d->pid, MQTT_RC_SUCCESS);
}

void moat_handle_pubcomp(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;
	struct moat_delivery *d = moat_session_find_inflight(s, p->u.ack.packet_id);

	if (d == NULL || d->state != DELIVERY_WAIT_PUBCOMP)
		return;
	moat_session_complete(s, d);
	moat_session_pump(s);
}

void moat_handle_pubrel(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;
	uint16_t i, pid = p->u.ack.packet_id;

	for (i = 0; i < s->n_qos2_in; i++) {
		if (s->qos2_in[i] == pid) {
			s->qos2_in[i] = s->qos2_in[--s->n_qos2_in];
			moat_persist_qos2(s, pid, false);
			send_ack(c, MQTT_PUBCOMP, pid, MQTT_RC_SUCCESS);
			return;
		}
	}
	send_ack(c, MQTT_PUBCOMP, pid, MQTT_RC_PACKET_ID_NOT_FOUND);
}
