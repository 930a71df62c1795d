/* GET /api/v1/events/ws: the audit log as a live WebSocket stream. */
#ifndef MOAT_API_EVENTS_H
#define MOAT_API_EVENTS_H

#include <stdint.h>

struct api_call;
struct moat_api;

/* The route's handler (authentication and audit:read are the dispatcher's). */
void api_events_ws(struct api_call *c);
/* Once a second on the management thread: new audit entries to every
 * subscriber whose credential still grants audit:read. */
void api_events_tick(struct moat_api *api, uint64_t now_ms);

#endif
