/*
 * Packet dispatch: which packets are legal in which connection state, then
 * one handler per packet type (handle_*.c).
 */
#include "mqtt/internal.h"

void moat_handle_packet(struct moat_conn *c, const struct mqtt_packet *p)
{
	if (c->state == CONN_WAIT_CONNECT) {
		if (p->type != MQTT_CONNECT) {
			/* MQTT-3.1.0-1: the first packet must be CONNECT. */
			moat_conn_close(c, "first packet is not CONNECT");
			return;
		}
		moat_handle_connect(c, p);
		return;
	}
	switch (p->type) {
	case MQTT_PUBLISH:
		moat_handle_publish(c, p);
		break;
	case MQTT_PUBACK:
		moat_handle_puback(c, p);
		break;
	case MQTT_PUBREC:
		moat_handle_pubrec(c, p);
		break;
	case MQTT_PUBREL:
		moat_handle_pubrel(c, p);
		break;
	case MQTT_PUBCOMP:
		moat_handle_pubcomp(c, p);
		break;
	case MQTT_SUBSCRIBE:
		moat_handle_subscribe(c, p);
		break;
	case MQTT_UNSUBSCRIBE:
		moat_handle_unsubscribe(c, p);
		break;
	case MQTT_PINGREQ:
		moat_handle_pingreq(c, p);
		break;
	case MQTT_DISCONNECT:
		moat_handle_disconnect(c, p);
		break;
	case MQTT_AUTH:
		moat_handle_auth(c, p);
		break;
	default:
		/* CONNECT twice, or a server-to-client packet. */
		moat_conn_disconnect(c, MQTT_RC_PROTOCOL_ERROR, "unexpected packet");
		break;
	}
}
