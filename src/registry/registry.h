/*
 * The device registry: identities (devices and services), their lifecycle
 * states, group memberships and the policies attached to groups and
 * identities, stored in the store (migration 3).
 * - The registry service (service.c) is the one writer: every change
 *   commits with its audit entry and names the identities it touched.
 * - The broker's identity table (registry.c) holds what it enforces, one
 *   record per identity, reloaded for just the identities a change
 *   touched; workers compile a session's ACL from it at CONNECT and when
 *   a change touches the session's identity, so the publish path never
 *   reads the database.
 */
#ifndef MOAT_REGISTRY_H
#define MOAT_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The broker's identity table (registry.c): one immutable, refcounted
 * record per identity (state, and the policies that apply to it resolved
 * through its groups) in a hash map under a read-write lock, plus the
 * revoked certificate serials. Lookups happen at CONNECT and re-admission,
 * never per message. Loads replace records; they must be serialized by
 * the caller (the broker's reload_lock); lookups run on any thread. */
struct moat_regtab;

moat_err moat_regtab_new(struct moat_regtab **out);
void moat_regtab_free(struct moat_regtab *t);
/* Replace everything from the store (start, SIGHUP). A stored rule that no
 * longer parses fails the load (err names it) and the table is kept as it
 * was: a policy is never applied half. */
moat_err moat_regtab_load_all(struct moat_regtab *t, struct moat_store *st, char *err,
			      size_t errlen);
/* Reload the records of ids only (a change touched them): an id without a
 * row leaves the table; builtin: also the policies of group "devices" that
 * unregistered identities get under unknown_devices = allow. Costs what
 * the ids hold, not what the table holds. */
moat_err moat_regtab_load_ids(struct moat_regtab *t, struct moat_store *st, const char *const *ids,
			      size_t n, bool builtin, char *err, size_t errlen);
size_t moat_regtab_count(struct moat_regtab *t);

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
enum moat_admit moat_regtab_admit(struct moat_regtab *t, const char *identity, const char *serial,
				  bool unknown_allow, struct moat_acl **acl, const char **why);
/* Is this certificate serial (lowercase hex, as the CA writes it) revoked? */
bool moat_regtab_revoked(struct moat_regtab *t, const char *serial);
/* Is identity decommissioned (its state must be erased from the broker)? */
bool moat_regtab_decommissioned(struct moat_regtab *t, const char *identity);

/* ------------------------------------------------------------------ */
/* The registry service (service.c): every write to the registry tables.
 * Each function builds one store batch with its audit entry and commits
 * it (moat_audit_log_write): the change and its entry land together or
 * not at all. Callers validate their input first (names, lifecycle,
 * existence); the service only writes, audits and says which identities
 * the change touched, so the broker re-evaluates those and no others. */

struct moat_audit_log;

/* Who makes the change, and where it is recorded. */
struct moat_reg_ctx {
	struct moat_store *store;
	struct moat_audit_log *audit;
	const char *actor; /* "user:alice", "token:...", "cli:root" */
	const char *peer;  /* the client address, "" offline */
	int64_t now;	   /* wall ms */
};

/* The identities a committed change touched (sorted, unique). builtin: the
 * policies of the built-in group "devices" changed, which under
 * unknown_devices = allow also apply to identities the registry does not
 * know. A change that touched nobody has n == 0 and builtin false. */
struct moat_reg_change {
	char **ids;
	size_t n, cap;
	bool builtin;
};
void moat_reg_change_clear(struct moat_reg_change *ch);
/* Add an identity (kept sorted and unique). */
moat_err moat_reg_change_add(struct moat_reg_change *ch, const char *id);

/* Register id (kind, state "registered" or "active", groups): replaces a
 * decommissioned row when replaces (a new device: docs/registry.md).
 * Audit: device.register. */
moat_err moat_reg_register(const struct moat_reg_ctx *x, const char *id, const char *kind,
			   enum moat_id_state state, const char *const *groups, size_t n_groups,
			   bool replaces, struct moat_reg_change *ch);
/* Register n new devices (ids valid, distinct and not in the registry:
 * the caller checks) in state, each a member of group (which exists), in
 * ONE transaction with ONE audit entry: device.import, detail count,
 * kind, state, groups, first and last id (`moat device import`). At most
 * MOAT_REG_IMPORT_MAX_IDS. */
moat_err moat_reg_register_many(const struct moat_reg_ctx *x, const char *const *ids, size_t n,
				enum moat_id_state state, const char *group,
				struct moat_reg_change *ch);
/* A lifecycle transition other than decommissioning. Audit: device.state. */
moat_err moat_reg_set_state(const struct moat_reg_ctx *x, const char *id, enum moat_id_state from,
			    enum moat_id_state to, struct moat_reg_change *ch);
/* What decommissioning removed (counted in the same call). */
struct moat_reg_decom {
	int64_t certs, tokens, sessions, retained;
};
/* Decommission id: state, certificates revoked, enrollment tokens burnt.
 * Audit: device.decommission with the counts. */
moat_err moat_reg_decommission(const struct moat_reg_ctx *x, const char *id,
			       struct moat_reg_decom *counts, struct moat_reg_change *ch);
/* Revoke one certificate (serial as the CA writes it); reason NULL is
 * "unspecified". Audit: certificate.revoke. */
moat_err moat_reg_cert_revoke(const struct moat_reg_ctx *x, const char *serial, const char *reason,
			      struct moat_reg_change *ch);
/* A development certificate issued offline (`moat cert issue`): register
 * id as an active identity of kind (NULL: "device") in group (NULL:
 * "devices", which must exist) when do_register, and record the
 * certificate. Audit: certificate.issue. */
struct moat_reg_cert {
	const char *serial, *fingerprint;
	int64_t not_before, not_after;
};
moat_err moat_reg_cert_issue(const struct moat_reg_ctx *x, const char *id, bool do_register,
			     const char *kind, const char *group, const struct moat_reg_cert *cert,
			     struct moat_reg_change *ch);
/* Memberships. Audit: device.group_add / device.group_remove. */
moat_err moat_reg_group_add(const struct moat_reg_ctx *x, const char *id, const char *group,
			    struct moat_reg_change *ch);
moat_err moat_reg_group_remove(const struct moat_reg_ctx *x, const char *id, const char *group,
			       struct moat_reg_change *ch);
/* Policies attached to one identity. Audit: device.policy_attach/detach. */
moat_err moat_reg_attach(const struct moat_reg_ctx *x, const char *id, const char *policy,
			 struct moat_reg_change *ch);
moat_err moat_reg_detach(const struct moat_reg_ctx *x, const char *id, const char *policy,
			 struct moat_reg_change *ch);
/* Groups. Audit: group.create (touches nobody), group.delete (its members;
 * the entry counts them and names its policies). */
moat_err moat_reg_group_create(const struct moat_reg_ctx *x, const char *name, const char *desc);
moat_err moat_reg_group_delete(const struct moat_reg_ctx *x, const char *name,
			       struct moat_reg_change *ch);
/* Policies attached to a group (its members). Audit: group.policy_attach /
 * group.policy_detach. */
moat_err moat_reg_group_attach(const struct moat_reg_ctx *x, const char *group, const char *policy,
			       struct moat_reg_change *ch);
moat_err moat_reg_group_detach(const struct moat_reg_ctx *x, const char *group, const char *policy,
			       struct moat_reg_change *ch);
/* Create or replace a policy: rules is the canonical text, one rule per
 * line (already parsed by the caller). Touches every identity it reaches.
 * Audit: policy.put (the rules while they fit, else their number). */
moat_err moat_reg_policy_put(const struct moat_reg_ctx *x, const char *name, const char *desc,
			     const char *rules, bool created, struct moat_reg_change *ch);
/* Delete a policy (its attachments go with it). Audit: policy.delete. */
moat_err moat_reg_policy_delete(const struct moat_reg_ctx *x, const char *name,
				struct moat_reg_change *ch);

/* Enrollment tokens and manufacturer CAs: they change no identity's
 * access, so there is no change to report. */

/* A new enrollment token: id (public), the SHA-256 of its secret, for one
 * identity or a group (the other NULL), uses, valid for hours from now.
 * Audited as enroll_token.create. */
moat_err moat_reg_etoken_create(const struct moat_reg_ctx *x, const char *id, const uint8_t *hash,
				size_t hash_len, const char *identity, const char *group,
				int64_t uses, int64_t hours);
/* A manufacturer CA: its PEM, fingerprint, and scope: device-id patterns
 * (one a line) or a group (the other NULL). MOAT_E_EXISTS when the name or
 * the certificate is registered already. Audited as
 * manufacturer_ca.create. */
moat_err moat_reg_mca_create(const struct moat_reg_ctx *x, const char *name, const char *pem,
			     const char *fingerprint, const char *patterns, const char *group);
/* Audited as manufacturer_ca.delete. */
moat_err moat_reg_mca_delete(const struct moat_reg_ctx *x, const char *name);

/* EST (src/api/api_est.c): the certificate the CA signed for an enrolling
 * device, and what enrolling changes in the registry. The broker reloads
 * the registry after each (as before), so there is no change to report. */
struct moat_reg_enrollment {
	const char *id;
	bool register_now;  /* a batch token registers the device (active, in group) */
	const char *group;  /* with register_now */
	bool activate;	    /* the device was registered: it becomes active */
	const char *serial; /* the new certificate */
	const char *fingerprint;
	int64_t not_before, not_after; /* wall ms */
	const char *etoken_id;	       /* the token used (one use taken), or NULL */
};
struct json_t;
/* Audited as est.enroll with detail (stolen; the API's view of the
 * request: token or factory CA). */
moat_err moat_reg_est_enroll(const struct moat_reg_ctx *x, const struct moat_reg_enrollment *e,
			     struct json_t *detail);
/* A new certificate for id replacing old_serial, which is revoked after
 * grace_s. Audited as est.reenroll. */
moat_err moat_reg_est_reenroll(const struct moat_reg_ctx *x, const char *id, const char *serial,
			       const char *fingerprint, int64_t not_before, int64_t not_after,
			       const char *old_serial, int64_t grace_s);
/* Revoke the certificates whose grace after re-enrollment ended by x->now;
 * *n: how many (0: nothing written). Audited as certificate.revoke. */
moat_err moat_reg_revoke_due(const struct moat_reg_ctx *x, int64_t *n);

#endif
