/*
 * The publish pipeline: what a PUBLISH from a client goes through on its
 * connection's worker, in this order (handle_publish.c):
 *
 *   1. admission  the packet is valid for this connection: topic alias,
 *                 topic name, QoS 2 duplicate and Receive Maximum, payload
 *                 format indicator
 *   2. policy     the identity may publish to the topic (its compiled ACL)
 *   3. guard      stages registered by the guard (limits, detection): each
 *                 may let the message through or refuse it with an MQTT 5
 *                 reason code, optionally closing the connection
 *   4. taps       stages that observe every accepted message (telemetry
 *                 ingest): they see it, never change or refuse it
 *   5. routing    retained message, persistence, matching, delivery to
 *                 every worker's sessions, the acknowledgement
 *
 * Contract of every registered stage (guard and tap alike):
 * - it runs on a worker thread and never blocks: no I/O, no locks held for
 *   more than a few instructions, no waiting on another thread;
 * - it writes state only through store batches (moat_persist_batch for the
 *   message being routed; a batch of its own submitted without waiting);
 * - it costs nothing measurable when unused: with no stage registered the
 *   pipeline pays one test of a counter per PUBLISH;
 * - its argument is shared by every worker: the stage makes its own state
 *   safe for concurrent calls (per-worker slots indexed by w->idx are the
 *   cheap way).
 * Stages are registered before moat_broker_run and never change afterwards,
 * so workers read the table without a lock.
 */
#ifndef MOAT_MQTT_PIPELINE_H
#define MOAT_MQTT_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/limits.h"

struct moat_worker;
struct moat_msg;

/* What a stage sees of a PUBLISH. msg is NULL for guards (the message is
 * made only once they all let it through); taps get the message as routed. */
struct moat_pub_view {
	struct moat_worker *w;
	const char *identity; /* certificate identity; "" on open listeners */
	const char *client_id;
	const char *addr; /* the peer's address */
	const char *topic;
	size_t topic_len;
	const uint8_t *payload;
	size_t payload_len;
	uint8_t qos;
	bool retain;
	const struct moat_msg *msg;
};

/* A guard's answer. */
struct moat_pub_verdict {
	uint8_t reason;	 /* MQTT 5 reason code when refused (e.g. 0x96, 0x97) */
	bool disconnect; /* refuse by closing the connection with reason */
	const char *why; /* for the log and the security event */
};

/* true: let it through; false: refused as *v says. */
typedef bool (*moat_pub_guard_fn)(void *arg, const struct moat_pub_view *pv,
				  struct moat_pub_verdict *v);
typedef void (*moat_pub_tap_fn)(void *arg, const struct moat_pub_view *pv);

struct moat_pipeline {
	struct {
		const char *name;
		moat_pub_guard_fn fn;
		void *arg;
	} guards[MOAT_PIPELINE_MAX_STAGES];
	size_t n_guards;
	struct {
		const char *name;
		moat_pub_tap_fn fn;
		void *arg;
	} taps[MOAT_PIPELINE_MAX_STAGES];
	size_t n_taps;
};

/* Register a stage (before the workers start). MOAT_E_LIMIT past
 * MOAT_PIPELINE_MAX_STAGES, MOAT_E_INVAL for a NULL function or name. */
moat_err moat_pipeline_add_guard(struct moat_pipeline *p, const char *name, moat_pub_guard_fn fn,
				 void *arg);
moat_err moat_pipeline_add_tap(struct moat_pipeline *p, const char *name, moat_pub_tap_fn fn,
			       void *arg);

/* Run the guards in order; the first refusal wins and fills *v. */
bool moat_pipeline_guard(const struct moat_pipeline *p, const struct moat_pub_view *pv,
			 struct moat_pub_verdict *v);
/* Show an accepted message to every tap. */
void moat_pipeline_tap(const struct moat_pipeline *p, const struct moat_pub_view *pv);

#endif
