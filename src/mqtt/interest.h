/*
 * A worker's interest filter: which topics it may hold subscribers for,
 * readable by the other workers without a lock.
 *
 * Routing posts a published message to every other worker that may route
 * it (route.c); each post costs that worker a wake-up, the dearest thing a
 * message costs at fleet rates (bench/README.md). A worker whose
 * subscriptions cannot match the topic is skipped.
 *
 * It is a counting Bloom filter (two counters per key) over keys derived
 * from topic filters:
 * - a filter with a wildcard within its first MOAT_INTEREST_LEVELS levels
 *   keys on the levels before the wildcard ("d/+/t" -> "d" + any);
 * - a longer filter without one keys on its first MOAT_INTEREST_LEVELS
 *   levels plus any;
 * - a shorter filter without wildcards keys on itself, exactly.
 * A topic probes every prefix of up to MOAT_INTEREST_LEVELS levels (plus
 * any) and, when short, itself exactly; each key that a matching filter can
 * have is among them, so a match is never missed. Collisions only make a
 * worker look interested when it is not.
 *
 * The owning worker adds and removes (one writer); readers load with
 * acquire. A subscription is counted before its SUBACK is written, so a
 * message published after the subscriber saw its SUBACK finds it.
 */
#ifndef MOAT_MQTT_INTEREST_H
#define MOAT_MQTT_INTEREST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

struct moat_interest {
	uint64_t seed;
	_Atomic uint32_t slot[1u << MOAT_INTEREST_SLOTS_LOG2];
};

/* Seed from the kernel's randomness (keys an outsider cannot aim at). */
void moat_interest_init(struct moat_interest *in);
/* A (non-shared) topic filter subscribed (+1) or unsubscribed (-1). */
void moat_interest_add(struct moat_interest *in, const char *filter, size_t len);
void moat_interest_remove(struct moat_interest *in, const char *filter, size_t len);
/* May a subscription of this worker match topic? (Another thread.) */
bool moat_interest_may_match(const struct moat_interest *in, const char *topic, size_t len);

#endif
