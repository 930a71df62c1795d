/* Shared by the API's files: the call context, roles, helpers. */
#ifndef MOAT_API_INTERNAL_H
#define MOAT_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include <jansson.h>

#include "api/api.h"
#include "audit/audit_store.h"
#include "auth/secret.h"
#include "auth/throttle.h"

enum api_role {
	ROLE_ADMIN = 0,
	ROLE_OPERATOR,
	ROLE_AUDITOR,
	ROLE_VIEWER,
	ROLE_METRICS, /* API tokens only */
	ROLE__COUNT
};

/* Permissions (docs/api.md "Roles"). */
enum api_perm {
	P_NONE = 0, /* no authentication */
	P_SELF = 1u << 0,
	P_USERS_READ = 1u << 1,
	P_USERS_WRITE = 1u << 2,
	P_SESSIONS_ADMIN = 1u << 3,
	P_TOKENS_READ = 1u << 4,
	P_TOKENS_WRITE = 1u << 5,
	P_AUDIT_READ = 1u << 6,
	P_METRICS_READ = 1u << 7,
	P_DEVICES_READ = 1u << 8,    /* identities, groups, policies */
	P_DEVICES_WRITE = 1u << 9,   /* identities, groups, memberships, attachments */
	P_POLICIES_WRITE = 1u << 10, /* policy rules: what access a policy grants */
};

/* Route flags. */
enum {
	RF_MFA_EXEMPT = 1u << 0, /* reachable by an admin who has not enrolled TOTP */
	RF_RAW_BODY = 1u << 1,	 /* the body is not JSON (EST: base64 PKCS#10) */
};

enum api_auth_kind { AUTH_NONE = 0, AUTH_SESSION, AUTH_TOKEN };

struct api_principal {
	enum api_auth_kind kind;
	enum api_role role;
	unsigned perms;
	char name[80];	/* user name, or the token id */
	char actor[96]; /* "user:alice", "token:ab12...", "anonymous" */
	bool mfa_enrolled;
	/* sessions */
	char sid[24];
	uint8_t sess_hash[MOAT_SECRET_HASH_LEN];
	char csrf[64];
	char creator[80]; /* tokens: who made it */
};

#define API_SECEV_MAX 256u

struct api_secev {
	char action[48];
	char subject[96];
	char peer[64];
	char detail[160]; /* the first occurrence's detail; refusals: the reason */
	uint64_t count;
	/* An unauthenticated refusal of the API (api_refusal_event): summed
	 * per (action, subject, reason), written as {count, first_peer,
	 * reason, username, window_ms} with the subject as the user name. */
	bool refusal;
};

struct moat_api {
	struct moat_api_opts o;
	char dir[MOAT_MAX_PATH];
	struct moat_audit_log audit;
	bool audit_open;
	struct moat_login_throttle *throttle;
	uint64_t last_sweep_ms;
	uint64_t last_due_ms; /* last check for re-enrolled certificates to revoke */
	/* SHA-256 of each Moat CA certificate in ca.crt (during a rotation the
	 * old and the new CA): the anchors EST re-enrollment accepts. */
	char ca_fp[4][65];
	size_t n_ca_fp;
	/* counters for /metrics */
	uint64_t logins_ok, logins_failed, logins_throttled, denied, csrf_failures;
	/* security events from the workers */
	pthread_mutex_t sec_lock;
	struct api_secev sec[API_SECEV_MAX];
	size_t n_sec;
	uint64_t sec_dropped;
	uint64_t sec_window_start;
	/* The signed CRL (api_est.c), owned by the management thread: signed
	 * once per registry generation (api_registry_changed bumps reg_gen on
	 * every revocation, decommissioning and other change the broker
	 * enforces) and at most MOAT_CRL_CACHE_MAX_S old, so an anonymous
	 * GET /crl never makes the key process sign. */
	uint64_t reg_gen;
	uint64_t crl_gen;
	uint8_t *crl_der;
	size_t crl_len;
	int64_t crl_made_ms; /* wall clock */
};

struct api_call {
	struct moat_api *api;
	const struct moat_http_req *req;
	struct moat_http_resp *resp;
	struct moat_http_params params;
	struct api_principal who;
	json_t *body; /* the parsed JSON object, or NULL */
	int64_t now;  /* wall ms */
	bool answered;
};

typedef void (*api_handler)(struct api_call *c);

struct api_route_def {
	int method;
	const char *pattern;
	unsigned perm;
	unsigned flags;
	size_t body_max;
	api_handler fn;
};

/* api.c */
extern const char *const api_role_names[ROLE__COUNT];
bool api_role_parse(const char *s, enum api_role *out);
unsigned api_role_perms(enum api_role r);
void api_problem(struct api_call *c, int status, const char *type, const char *detail,
		 const char *field);
void api_json(struct api_call *c, int status, json_t *obj); /* steals obj */
void api_no_content(struct api_call *c);
void api_internal(struct api_call *c, moat_err rc);
/* Validate the body: every key must be in fields[]; required ones present
 * with the right JSON type. Answers 422 and returns false on failure. */
enum api_ftype { F_STRING, F_BOOL, F_INT, F_ARRAY };
struct api_field {
	const char *name;
	enum api_ftype type;
	bool required;
	size_t min, max; /* strings: length in bytes; ints: value; arrays: items (the
			    handler checks the items) */
};
bool api_validate(struct api_call *c, const struct api_field *fields, size_t n);
const char *api_str(struct api_call *c, const char *name); /* NULL if absent */
bool api_bool(struct api_call *c, const char *name, bool dflt);
long long api_int(struct api_call *c, const char *name, long long dflt);
/* Audit (in its own transaction, or with b's changes). */
moat_err api_audit(struct api_call *c, struct moat_store_batch **b, const char *action,
		   const char *target, const char *outcome,
		   json_t *detail /* stolen, may be NULL */);
/* A refusal decided inside a handler: answered like api_problem and
 * audited like a route-level denial, (caller, action, target, denied) with
 * {method, path, reason} and the extra keys of detail (stolen, may be
 * NULL). reason is a short word (role, token, self, last-admin, ...). */
void api_refuse(struct api_call *c, int status, const char *type, const char *msg,
		const char *field, const char *action, const char *target, const char *reason,
		json_t *detail);
/* Time as RFC 3339 with milliseconds, or JSON null for 0/negative. */
json_t *api_time(int64_t ms);
bool api_parse_time(const char *s, int64_t *ms);
/* Pagination: limit (1..200, default 50) and the cursor string. */
bool api_page(struct api_call *c, size_t *limit, char *cursor, size_t cursorlen,
	      const char *const *extra_keys, size_t n_extra);
bool api_name_valid(const char *s); /* user names: device-id rules */
/* Answer a page: items holds up to limit + 1 rows; the cursor of the next
 * page is cursor_field of the last row kept (null on the last page). Steals
 * items. */
void api_page_answer(struct api_call *c, json_t *items, size_t limit, const char *cursor_field);

/* resources */
void api_healthz(struct api_call *c);
void api_metrics(struct api_call *c);
void api_setup(struct api_call *c);
void api_login(struct api_call *c);
void api_logout(struct api_call *c);
void api_me(struct api_call *c);
void api_me_password(struct api_call *c);
void api_me_totp(struct api_call *c);
void api_me_totp_confirm(struct api_call *c);
void api_sessions_list(struct api_call *c);
void api_sessions_delete(struct api_call *c);
void api_users_list(struct api_call *c);
void api_users_create(struct api_call *c);
void api_users_get(struct api_call *c);
void api_users_patch(struct api_call *c);
void api_users_reset_mfa(struct api_call *c);
void api_tokens_list(struct api_call *c);
void api_tokens_create(struct api_call *c);
void api_tokens_delete(struct api_call *c);
void api_audit_list(struct api_call *c);
void api_audit_verify(struct api_call *c);
void api_est_cacerts(struct api_call *c);
void api_est_enroll(struct api_call *c);
void api_est_csrattrs(struct api_call *c);
void api_est_reenroll(struct api_call *c);
bool api_is_moat_ca(const struct moat_api *api, const char *fp);
void api_est_revoke_due(struct moat_api *api);
void api_mcas_list(struct api_call *c);
void api_mcas_create(struct api_call *c);
void api_mcas_delete(struct api_call *c);
void api_crl(struct api_call *c);
void api_etokens_list(struct api_call *c);
void api_etokens_create(struct api_call *c);
void api_certs_list(struct api_call *c);
void api_certs_revoke(struct api_call *c);
void api_devices_decommission(struct api_call *c);
/* api_devices.c, api_groups.c, api_policies.c: the device registry */
void api_devices_list(struct api_call *c);
void api_devices_create(struct api_call *c);
void api_devices_get(struct api_call *c);
void api_devices_state(struct api_call *c);
void api_devices_group_add(struct api_call *c);
void api_devices_group_remove(struct api_call *c);
void api_devices_policy_attach(struct api_call *c);
void api_devices_policy_detach(struct api_call *c);
void api_groups_list(struct api_call *c);
void api_groups_create(struct api_call *c);
void api_groups_get(struct api_call *c);
void api_groups_delete(struct api_call *c);
void api_groups_policy_attach(struct api_call *c);
void api_groups_policy_detach(struct api_call *c);
void api_policies_list(struct api_call *c);
void api_policies_get(struct api_call *c);
void api_policies_put(struct api_call *c);
void api_policies_delete(struct api_call *c);
/* api_registry.c: what the registry's resources share. */
/* The group every device joins unless registered into others; the schema
 * creates it with device-default attached. It is never deleted. */
#define API_BUILTIN_GROUP "devices"
/* Descriptions of groups and policies, in bytes: a line for humans. */
#define API_DESC_MAX 256u
/* Rows of ID_GET/ID_LIST, GROUP_GET/GROUP_LIST, POLICY_GET/POLICY_LIST as
 * JSON objects appended to the array arg. An identity's groups and
 * policies, a group's policies are empty until *_fill reads them (after
 * the row: reads never nest). */
moat_err api_reg_identity_cb(void *arg, const struct moat_val *cols, size_t ncols);
moat_err api_reg_group_cb(void *arg, const struct moat_val *cols, size_t ncols);
moat_err api_reg_policy_cb(void *arg, const struct moat_val *cols, size_t ncols);
moat_err api_reg_identity_fill(struct api_call *c, json_t *o);
moat_err api_reg_group_fill(struct api_call *c, json_t *o);
/* One object, filled in; MOAT_E_NOTFOUND when there is none. */
moat_err api_reg_identity_load(struct api_call *c, const char *id, json_t **out);
moat_err api_reg_group_load(struct api_call *c, const char *name, json_t **out);
moat_err api_reg_policy_load(struct api_call *c, const char *name, json_t **out);
bool api_reg_names_has(json_t *arr, const char *name);
/* The object the path's first parameter names, or false with 404 (what:
 * "group") or an internal error answered. */
bool api_reg_path_load(struct api_call *c,
		       moat_err (*load)(struct api_call *, const char *, json_t **),
		       const char *what, json_t **out);
void api_reg_answer(struct api_call *c, int status, json_t *o); /* steals o */
/* Names follow the device-id rules; false with 422 naming field. */
bool api_reg_name_ok(struct api_call *c, const char *what, const char *field, const char *s);
/* A group or policy the body names exists; false with 422 naming field. */
bool api_reg_group_exists(struct api_call *c, const char *name, const char *field);
bool api_reg_policy_exists(struct api_call *c, const char *name, const char *field);
/* The registry service's context for this call (actor, peer, time). */
struct moat_reg_ctx;
struct moat_reg_change;
void api_reg_ctx(struct api_call *c, struct moat_reg_ctx *x);
/* After a registry service call: on failure an internal error is
 * answered and false returned; on success the change is announced to the
 * broker (it re-evaluates the identities ch names). ch is cleared. */
bool api_reg_done(struct api_call *c, moat_err rc, struct moat_reg_change *ch);
/* An optional query parameter ("" when absent); false with 400. */
bool api_reg_query_opt(struct api_call *c, const char *key, char *out, size_t len);
/* Answer a page: the rows of st (params v asking for limit + 1), each
 * filled in when fill is not NULL. */
void api_reg_list(struct api_call *c, struct moat_stmt st, const struct moat_val *v, size_t n,
		  moat_store_row_cb cb, moat_err (*fill)(struct api_call *, json_t *), size_t limit,
		  const char *cursor_field);
/* A PUT of a policy carries up to MOAT_POLICY_MAX_RULES rules of up to
 * MOAT_RULE_TEXT_MAX bytes each, more than MOAT_HTTP_BODY_DEFAULT; JSON
 * escaping at most doubles a rule (control characters are refused). */
#define API_POLICY_BODY_MAX (64u * 1024u)

/* Something the broker enforces changed outside the registry service
 * (enrollment, manufacturer CAs): it reloads the whole registry. Call
 * after the write committed. */
void api_registry_changed(struct moat_api *api);

/* api_auth.c: authenticate a request (cookie or bearer); false if the
 * credentials were present but bad (answered 401). */
bool api_authenticate(struct api_call *c);
void api_secev_flush(struct moat_api *api, bool force);
/* A refusal nobody authenticated (a refused setup, a throttled login):
 * audited as (anonymous, action, user name, denied) with the reason,
 * summed per window like the broker's events so a flood cannot fill the
 * log (docs/audit.md). user is the name tried; one that is not a valid
 * user name is recorded as "<invalid user name>" (it may be a password). */
void api_refusal_event(struct api_call *c, const char *action, const char *user,
		       const char *reason);

/* An operator row (OP_GET). */
struct api_operator {
	char name[80];
	enum api_role role;
	char pw_hash[160];
	/* The seeds as stored: sealed by the key process (api_auth.c opens
	 * them only where a code is checked); totp_len > 0 means enrolled. */
	uint8_t totp[MOAT_TOTP_STORED_MAX];
	size_t totp_len;
	uint8_t totp_pending[MOAT_TOTP_STORED_MAX];
	size_t totp_pending_len;
	int64_t totp_last_step;
	bool disabled;
	int64_t created, updated;
};
moat_err api_operator_get(struct moat_api *api, const char *name, struct api_operator *op);
/* Wipe an operator record (its password hash and sealed seeds) when it
 * goes out of scope: declare it API_OPERATOR_WIPED. */
void api_operator_wipe(struct api_operator *op);
#define API_OPERATOR_WIPED __attribute__((cleanup(api_operator_wipe)))
/* Make jansson wipe every block it frees (parsed request bodies with
 * passwords and codes, answers with tokens and recovery codes, the
 * serialised text): called once by moat_api_new. */
void api_json_wipe_init(void);
json_t *api_operator_json(const struct api_operator *op);
/* At start, after the audit log is open: seal every TOTP seed a Moat from
 * before sealing stored in plaintext (one audit entry per operator). */
moat_err api_totp_migrate(struct moat_api *api, char *err, size_t errlen);

#endif
