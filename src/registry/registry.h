/*
 * The device registry as the broker enforces it: an immutable, refcounted
 * snapshot of identities (devices and services), their lifecycle states,
 * group memberships and the policies attached to groups and identities,
 * loaded from the store (migration 3). The management API changes the
 * tables, loads a new snapshot and swaps it in; workers compile a session's
 * ACL from the snapshot at CONNECT and again when a new one arrives, so the
 * publish path never reads the database.
 */
#ifndef MOAT_REGISTRY_H
#define MOAT_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "registry/acl.h"
#include "store/store.h"

enum moat_id_state {
	MOAT_ID_REGISTERED = 0, /* may enroll; may not connect yet */
	MOAT_ID_ACTIVE,
	MOAT_ID_DISABLED,	/* may not connect */
	MOAT_ID_QUARANTINED,	/* connects; may only publish under $moat/q/<id>/ */
	MOAT_ID_DECOMMISSIONED, /* terminal */
	MOAT_ID__COUNT
};

const char *moat_id_state_name(enum moat_id_state s);
bool moat_id_state_parse(const char *s, enum moat_id_state *out);
/* The documented lifecycle (docs/registry.md): registered -> active ->
 * disabled | quarantined -> active ...; anything but decommissioned ->
 * decommissioned (terminal). */
bool moat_id_transition_ok(enum moat_id_state from, enum moat_id_state to);

/* Identity kinds. */
bool moat_id_kind_valid(const char *kind); /* "device" | "service" */

struct moat_regsnap;

/* Load every identity, membership, attachment and policy. A stored rule
 * that no longer parses makes the load fail (err names it): a policy is
 * never applied half. */
moat_err moat_regsnap_load(struct moat_store *st, struct moat_regsnap **out, char *err,
			   size_t errlen);
void moat_regsnap_ref(struct moat_regsnap *s);
void moat_regsnap_unref(struct moat_regsnap *s);
size_t moat_regsnap_count(const struct moat_regsnap *s);

enum moat_admit {
	MOAT_ADMIT_OK = 0,
	MOAT_ADMIT_UNKNOWN,	 /* not in the registry */
	MOAT_ADMIT_NOT_ENROLLED, /* registered, not active yet */
	MOAT_ADMIT_DISABLED,
	MOAT_ADMIT_DECOMMISSIONED,
	MOAT_ADMIT_REVOKED, /* the certificate presented is revoked */
	MOAT_ADMIT_ERROR,   /* out of memory, policy too large */
};

/* May identity connect, and with which ACL? unknown_allow: an identity the
 * registry does not know is treated as a member of the group "devices"
 * (`[broker] unknown_devices = allow`, for development and migration). On
 * MOAT_ADMIT_OK *acl holds a new reference. why: a sentence for the
 * client and the log. */
enum moat_admit moat_regsnap_admit(const struct moat_regsnap *s, const char *identity,
				   const char *serial, bool unknown_allow, struct moat_acl **acl,
				   const char **why);
/* Is this certificate serial (lowercase hex, as the CA writes it) revoked? */
bool moat_regsnap_revoked(const struct moat_regsnap *s, const char *serial);
/* Is identity decommissioned (its state must be erased from the broker)? */
bool moat_regsnap_decommissioned(const struct moat_regsnap *s, const char *identity);

#endif
