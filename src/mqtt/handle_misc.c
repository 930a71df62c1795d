/* PINGREQ, DISCONNECT and AUTH. */
#include <string.h>

#include "core/log.h"
#include "mqtt/internal.h"

void moat_handle_pingreq(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct mqtt_packet r;

	(void)p;
	memset(&r, 0, sizeof(r));
	r.type = MQTT_PINGRESP;
	(void)moat_conn_send(c, &r);
}

void moat_handle_disconnect(struct moat_conn *c, const struct mqtt_packet *p)
{
	struct moat_session *s = c->s;

	if (c->version == MQTT_V5 && (p->props.present & MQTT_HAS(MQTT_PROP_SESSION_EXPIRY))) {
		/* MQTT-3.14.2-2: cannot turn a zero expiry into a non-zero one. */
		if (s->expiry_interval == 0 && p->props.session_expiry != 0) {
			moat_conn_disconnect(c, MQTT_RC_PROTOCOL_ERROR,
					     "session expiry set on DISCONNECT after 0");
			return;
		}
		s->expiry_interval = p->props.session_expiry < MOAT_MAX_SESSION_EXPIRY
					 ? p->props.session_expiry
					 : MOAT_MAX_SESSION_EXPIRY;
	}
	/* 0x04 "disconnect with will message" keeps the will. */
	c->graceful = !(c->version == MQTT_V5 && p->u.reason.code == MQTT_RC_DISCONNECT_WITH_WILL);
	moat_conn_close(c, "client disconnect");
}

void moat_handle_auth(struct moat_conn *c, const struct mqtt_packet *p)
{
	(void)p;
	/* No enhanced authentication method was negotiated in CONNECT (Moat
	 * authenticates with the TLS client certificate), so AUTH is a
	 * protocol error (MQTT-4.12.0-1). */
	moat_conn_disconnect(c, MQTT_RC_PROTOCOL_ERROR, "AUTH without authentication method");
}
