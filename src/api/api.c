#define _GNU_SOURCE
/*
 * Request dispatch for the management API: route lookup, authentication,
 * the permission of the route, the MFA-enrolment gate, CSRF, the JSON body,
 * then the resource's handler. Also the helpers every handler uses:
 * problem+json answers, strict body validation, pagination, times, audit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "api/api_events.h"
#include "api/internal.h"
#include "core/log.h"
#include "core/reactor.h"
#include "pki/ca.h"
#include "tls/tls.h"
#include "auth/schema.h"

#define B MOAT_HTTP_BODY_DEFAULT

static const struct api_route_def routes[] = {
    {MOAT_HTTP_GET, "/healthz", P_NONE, 0, 0, api_healthz},
    {MOAT_HTTP_GET, "/metrics", P_METRICS_READ, 0, 0, api_metrics},
    {MOAT_HTTP_POST, "/api/v1/setup", P_NONE, 0, B, api_setup},
    {MOAT_HTTP_POST, "/api/v1/auth/login", P_NONE, 0, B, api_login},
    {MOAT_HTTP_POST, "/api/v1/auth/logout", P_SELF, RF_MFA_EXEMPT, B, api_logout},
    {MOAT_HTTP_GET, "/api/v1/me", P_SELF, RF_MFA_EXEMPT, 0, api_me},
    {MOAT_HTTP_POST, "/api/v1/me/password", P_SELF, RF_MFA_EXEMPT, B, api_me_password},
    {MOAT_HTTP_POST, "/api/v1/me/totp", P_SELF, RF_MFA_EXEMPT, B, api_me_totp},
    {MOAT_HTTP_POST, "/api/v1/me/totp/confirm", P_SELF, RF_MFA_EXEMPT, B, api_me_totp_confirm},
    {MOAT_HTTP_GET, "/api/v1/sessions", P_SELF, 0, 0, api_sessions_list},
    {MOAT_HTTP_DELETE, "/api/v1/sessions/{id}", P_SELF, 0, 0, api_sessions_delete},
    {MOAT_HTTP_GET, "/api/v1/users", P_USERS_READ, 0, 0, api_users_list},
    {MOAT_HTTP_POST, "/api/v1/users", P_USERS_WRITE, 0, B, api_users_create},
    {MOAT_HTTP_GET, "/api/v1/users/{name}", P_USERS_READ, 0, 0, api_users_get},
    {MOAT_HTTP_PATCH, "/api/v1/users/{name}", P_USERS_WRITE, 0, B, api_users_patch},
    {MOAT_HTTP_POST, "/api/v1/users/{name}/reset-mfa", P_USERS_WRITE, 0, B, api_users_reset_mfa},
    {MOAT_HTTP_GET, "/api/v1/tokens", P_TOKENS_READ, 0, 0, api_tokens_list},
    {MOAT_HTTP_POST, "/api/v1/tokens", P_TOKENS_WRITE, 0, B, api_tokens_create},
    {MOAT_HTTP_DELETE, "/api/v1/tokens/{id}", P_TOKENS_WRITE, 0, 0, api_tokens_delete},
    {MOAT_HTTP_GET, "/api/v1/audit", P_AUDIT_READ, 0, 0, api_audit_list},
    {MOAT_HTTP_GET, "/api/v1/audit/verify", P_AUDIT_READ, 0, 0, api_audit_verify},
    {MOAT_HTTP_GET, "/api/v1/events/ws", P_AUDIT_READ, 0, 0, api_events_ws},
    /* EST (RFC 7030) and the CRL: the enrollment token is checked by the
     * handler (P_NONE here means "no operator authentication"). */
    {MOAT_HTTP_GET, "/.well-known/est/cacerts", P_NONE, 0, 0, api_est_cacerts},
    {MOAT_HTTP_POST, "/.well-known/est/simpleenroll", P_NONE, RF_RAW_BODY, MOAT_CSR_BODY_MAX,
     api_est_enroll},
    {MOAT_HTTP_POST, "/.well-known/est/simplereenroll", P_NONE, RF_RAW_BODY, MOAT_CSR_BODY_MAX,
     api_est_reenroll},
    {MOAT_HTTP_GET, "/.well-known/est/csrattrs", P_NONE, 0, 0, api_est_csrattrs},
    {MOAT_HTTP_GET, "/crl", P_NONE, 0, 0, api_crl},
    {MOAT_HTTP_GET, "/api/v1/manufacturer-cas", P_DEVICES_READ, 0, 0, api_mcas_list},
    {MOAT_HTTP_POST, "/api/v1/manufacturer-cas", P_POLICIES_WRITE, 0, B, api_mcas_create},
    {MOAT_HTTP_DELETE, "/api/v1/manufacturer-cas/{name}", P_POLICIES_WRITE, 0, 0, api_mcas_delete},
    {MOAT_HTTP_GET, "/api/v1/enroll-tokens", P_DEVICES_READ, 0, 0, api_etokens_list},
    {MOAT_HTTP_POST, "/api/v1/enroll-tokens", P_DEVICES_WRITE, 0, B, api_etokens_create},
    {MOAT_HTTP_GET, "/api/v1/certificates", P_DEVICES_READ, 0, 0, api_certs_list},
    {MOAT_HTTP_POST, "/api/v1/certificates/{serial}/revoke", P_DEVICES_WRITE, 0, B,
     api_certs_revoke},
    {MOAT_HTTP_POST, "/api/v1/devices/{id}/decommission", P_DEVICES_WRITE, 0, B,
     api_devices_decommission},
    {MOAT_HTTP_GET, "/api/v1/devices", P_DEVICES_READ, 0, 0, api_devices_list},
    {MOAT_HTTP_POST, "/api/v1/devices", P_DEVICES_WRITE, 0, B, api_devices_create},
    {MOAT_HTTP_GET, "/api/v1/devices/{id}", P_DEVICES_READ, 0, 0, api_devices_get},
    {MOAT_HTTP_POST, "/api/v1/devices/{id}/state", P_DEVICES_WRITE, 0, B, api_devices_state},
    {MOAT_HTTP_POST, "/api/v1/devices/{id}/groups", P_DEVICES_WRITE, 0, B, api_devices_group_add},
    {MOAT_HTTP_DELETE, "/api/v1/devices/{id}/groups/{group}", P_DEVICES_WRITE, 0, 0,
     api_devices_group_remove},
    {MOAT_HTTP_POST, "/api/v1/devices/{id}/policies", P_DEVICES_WRITE, 0, B,
     api_devices_policy_attach},
    {MOAT_HTTP_DELETE, "/api/v1/devices/{id}/policies/{policy}", P_DEVICES_WRITE, 0, 0,
     api_devices_policy_detach},
    {MOAT_HTTP_GET, "/api/v1/groups", P_DEVICES_READ, 0, 0, api_groups_list},
    {MOAT_HTTP_POST, "/api/v1/groups", P_DEVICES_WRITE, 0, B, api_groups_create},
    {MOAT_HTTP_GET, "/api/v1/groups/{name}", P_DEVICES_READ, 0, 0, api_groups_get},
    {MOAT_HTTP_DELETE, "/api/v1/groups/{name}", P_DEVICES_WRITE, 0, 0, api_groups_delete},
    {MOAT_HTTP_POST, "/api/v1/groups/{name}/policies", P_DEVICES_WRITE, 0, B,
     api_groups_policy_attach},
    {MOAT_HTTP_DELETE, "/api/v1/groups/{name}/policies/{policy}", P_DEVICES_WRITE, 0, 0,
     api_groups_policy_detach},
    {MOAT_HTTP_GET, "/api/v1/policies", P_DEVICES_READ, 0, 0, api_policies_list},
    {MOAT_HTTP_GET, "/api/v1/policies/{name}", P_DEVICES_READ, 0, 0, api_policies_get},
    {MOAT_HTTP_PUT, "/api/v1/policies/{name}", P_POLICIES_WRITE, 0, API_POLICY_BODY_MAX,
     api_policies_put},
    {MOAT_HTTP_DELETE, "/api/v1/policies/{name}", P_POLICIES_WRITE, 0, 0, api_policies_delete},
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static struct moat_http_route http_routes[N_ROUTES];
static pthread_once_t http_routes_once = PTHREAD_ONCE_INIT;

static void http_routes_init(void)
{
	size_t i;

	for (i = 0; i < N_ROUTES; i++) {
		http_routes[i].method = routes[i].method;
		http_routes[i].pattern = routes[i].pattern;
		http_routes[i].perm = "";
		http_routes[i].body_max = routes[i].body_max;
		http_routes[i].handler = NULL;
	}
}

const struct moat_http_route *moat_api_routes(size_t *n)
{
	pthread_once(&http_routes_once, http_routes_init);
	*n = N_ROUTES;
	return http_routes;
}

const char *const api_role_names[ROLE__COUNT] = {
    [ROLE_ADMIN] = "admin",   [ROLE_OPERATOR] = "operator", [ROLE_AUDITOR] = "auditor",
    [ROLE_VIEWER] = "viewer", [ROLE_METRICS] = "metrics",
};

bool api_role_parse(const char *s, enum api_role *out)
{
	size_t i;

	for (i = 0; i < ROLE__COUNT; i++) {
		if (strcmp(s, api_role_names[i]) == 0) {
			*out = (enum api_role)i;
			return true;
		}
	}
	return false;
}

/* The permission matrix of docs/api.md. */
unsigned api_role_perms(enum api_role r)
{
	switch (r) {
	case ROLE_ADMIN:
		return P_SELF | P_USERS_READ | P_USERS_WRITE | P_SESSIONS_ADMIN | P_TOKENS_READ |
		       P_TOKENS_WRITE | P_AUDIT_READ | P_METRICS_READ | P_DEVICES_READ |
		       P_DEVICES_WRITE | P_POLICIES_WRITE;
	case ROLE_OPERATOR:
		return P_SELF | P_USERS_READ | P_TOKENS_READ | P_TOKENS_WRITE | P_METRICS_READ |
		       P_DEVICES_READ | P_DEVICES_WRITE;
	case ROLE_AUDITOR:
		return P_SELF | P_USERS_READ | P_TOKENS_READ | P_AUDIT_READ | P_METRICS_READ |
		       P_DEVICES_READ;
	case ROLE_VIEWER:
		return P_SELF | P_USERS_READ | P_DEVICES_READ;
	case ROLE_METRICS:
		return P_METRICS_READ;
	case ROLE__COUNT:
	default:
		return 0;
	}
}

static const char *problem_title(const char *type)
{
	static const struct {
		const char *type, *title;
	} t[] = {
	    {"bad-request", "Bad request"},
	    {"invalid-json", "The body is not valid JSON"},
	    {"validation", "Invalid input"},
	    {"unauthorized", "Authentication required"},
	    {"invalid-credentials", "Invalid credentials"},
	    {"mfa-required", "A TOTP code is required"},
	    {"mfa-enrolment-required", "Enrol TOTP first"},
	    {"csrf", "Missing or wrong CSRF token"},
	    {"forbidden", "Not allowed"},
	    {"not-found", "Not found"},
	    {"method-not-allowed", "Method not allowed"},
	    {"conflict", "Conflict"},
	    {"payload-too-large", "Request body too large"},
	    {"unsupported-media-type", "Unsupported media type"},
	    {"throttled", "Too many attempts"},
	    {"setup-unavailable", "Setup is not available"},
	    {"internal", "Internal error"},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(t[i].type, type) == 0)
			return t[i].title;
	return "Error";
}

void api_json(struct api_call *c, int status, json_t *obj)
{
	char *s;

	c->answered = true;
	if (obj == NULL) {
		(void)moat_http_resp_body(c->resp, 500, "application/problem+json", "{}", 2);
		return;
	}
	s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (s == NULL) {
		(void)moat_http_resp_body(c->resp, 500, "application/problem+json", "{}", 2);
		return;
	}
	moat_http_resp_take(c->resp, status, "application/json", s, strlen(s));
}

void api_problem(struct api_call *c, int status, const char *type, const char *detail,
		 const char *field)
{
	char tbuf[128];
	json_t *o = json_object();
	char *s;

	c->answered = true;
	snprintf(tbuf, sizeof(tbuf), "https://moat.dev/problems/%s", type);
	json_object_set_new(o, "type", json_string(tbuf));
	json_object_set_new(o, "title", json_string(problem_title(type)));
	json_object_set_new(o, "status", json_integer(status));
	if (detail)
		json_object_set_new(o, "detail", json_string(detail));
	if (field)
		json_object_set_new(o, "field", json_string(field));
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (s == NULL) {
		(void)moat_http_resp_body(c->resp, status, "application/problem+json", "{}", 2);
		return;
	}
	moat_http_resp_take(c->resp, status, "application/problem+json", s, strlen(s));
}

void api_no_content(struct api_call *c)
{
	c->answered = true;
	moat_http_resp_take(c->resp, 204, NULL, NULL, 0);
}

void api_internal(struct api_call *c, moat_err rc)
{
	log_error("api_error", "path=%s error=%s", c->req->path, moat_strerror(rc));
	if (rc == MOAT_E_FULL || rc == MOAT_E_BUSY || rc == MOAT_E_LIMIT)
		api_problem(c, 503, "internal", "storage is unavailable; try again later", NULL);
	else
		api_problem(c, 500, "internal", "the change was not made", NULL);
}

/* C0 controls and DEL (names, labels and secrets are printable text). */
static bool has_control(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
			return true;
	return false;
}

bool api_validate(struct api_call *c, const struct api_field *fields, size_t n)
{
	const char *key;
	json_t *v;
	size_t i;
	char msg[160];

	json_object_foreach(c->body, key, v)
	{
		bool known = false;
		for (i = 0; i < n && !known; i++)
			known = strcmp(fields[i].name, key) == 0;
		if (!known) {
			snprintf(msg, sizeof(msg), "unknown field '%.64s'", key);
			api_problem(c, 422, "validation", msg, key);
			return false;
		}
	}
	for (i = 0; i < n; i++) {
		const struct api_field *f = &fields[i];
		v = json_object_get(c->body, f->name);
		if (v == NULL) {
			if (f->required) {
				snprintf(msg, sizeof(msg), "'%s' is required", f->name);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			continue;
		}
		switch (f->type) {
		case F_STRING: {
			size_t len;
			if (!json_is_string(v)) {
				snprintf(msg, sizeof(msg), "'%s' must be a string", f->name);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			len = json_string_length(v);
			if (len < f->min || len > f->max || strlen(json_string_value(v)) != len) {
				snprintf(msg, sizeof(msg),
					 "'%s' must be %zu to %zu bytes (no NUL characters)",
					 f->name, f->min, f->max);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			if (has_control(json_string_value(v), len)) {
				snprintf(msg, sizeof(msg),
					 "'%s' must not contain control characters", f->name);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			break;
		}
		case F_BOOL:
			if (!json_is_boolean(v)) {
				snprintf(msg, sizeof(msg), "'%s' must be true or false", f->name);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			break;
		case F_ARRAY:
			if (!json_is_array(v) || json_array_size(v) < f->min ||
			    json_array_size(v) > f->max) {
				snprintf(msg, sizeof(msg),
					 "'%s' must be a list of %zu to %zu items", f->name, f->min,
					 f->max);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			break;
		case F_INT:
			if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)f->min ||
			    json_integer_value(v) > (json_int_t)f->max) {
				snprintf(msg, sizeof(msg),
					 "'%s' must be an integer from %zu to %zu", f->name, f->min,
					 f->max);
				api_problem(c, 422, "validation", msg, f->name);
				return false;
			}
			break;
		default:
			break;
		}
	}
	return true;
}

const char *api_str(struct api_call *c, const char *name)
{
	json_t *v = c->body ? json_object_get(c->body, name) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

bool api_bool(struct api_call *c, const char *name, bool dflt)
{
	json_t *v = c->body ? json_object_get(c->body, name) : NULL;

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

long long api_int(struct api_call *c, const char *name, long long dflt)
{
	json_t *v = c->body ? json_object_get(c->body, name) : NULL;

	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

json_t *api_time(int64_t ms)
{
	char buf[96];
	struct tm tm;
	time_t t;

	if (ms <= 0)
		return json_null();
	t = (time_t)(ms / 1000);
	if (gmtime_r(&t, &tm) == NULL)
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
	return json_string(buf);
}

static bool digits(const char *s, size_t n, int *out)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* RFC 3339 in UTC: YYYY-MM-DDTHH:MM:SS[.fff]Z */
bool api_parse_time(const char *s, int64_t *ms)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, frac = 0;
	size_t len = strlen(s);
	time_t t;

	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':')
		return false;
	if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
	    !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
		return false;
	if (s[19] == '.') {
		size_t k = 20, nd = 0;
		int scale = 100;
		while (k < len && s[k] >= '0' && s[k] <= '9') {
			if (nd < 3)
				frac += (s[k] - '0') * scale;
			scale /= 10;
			nd++;
			k++;
		}
		if (nd == 0 || k != len - 1)
			return false;
	} else if (len != 20) {
		return false;
	}
	if (s[len - 1] != 'Z' && s[len - 1] != 'z')
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*ms = (int64_t)t * 1000 + frac;
	return true;
}

bool api_page(struct api_call *c, size_t *limit, char *cursor, size_t cursorlen,
	      const char *const *extra_keys, size_t n_extra)
{
	const char *keys[12] = {"limit", "cursor"};
	char buf[32], bad[80];
	size_t i, nk = 2;
	moat_err rc;

	for (i = 0; i < n_extra && nk < 12; i++)
		keys[nk++] = extra_keys[i];
	if (!moat_http_query_only(c->req->query, keys, nk, bad, sizeof(bad))) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown query parameter '%s'", bad);
		api_problem(c, 400, "bad-request", msg, bad);
		return false;
	}
	*limit = 50;
	rc = moat_http_query_get(c->req->query, "limit", buf, sizeof(buf));
	if (rc == MOAT_OK) {
		char *end;
		unsigned long v = strtoul(buf, &end, 10);
		if (buf[0] < '0' || buf[0] > '9' || *end != '\0' || v < 1 || v > 200) {
			api_problem(c, 400, "bad-request", "limit must be from 1 to 200", "limit");
			return false;
		}
		*limit = v;
	} else if (rc != MOAT_E_NOTFOUND) {
		api_problem(c, 400, "bad-request", "bad limit", "limit");
		return false;
	}
	cursor[0] = '\0';
	rc = moat_http_query_get(c->req->query, "cursor", cursor, cursorlen);
	if (rc != MOAT_OK && rc != MOAT_E_NOTFOUND) {
		api_problem(c, 400, "bad-request", "bad cursor", "cursor");
		return false;
	}
	if (rc == MOAT_E_NOTFOUND)
		cursor[0] = '\0';
	return true;
}

void api_page_answer(struct api_call *c, json_t *items, size_t limit, const char *cursor_field)
{
	json_t *next = json_null();

	/* The query asked for limit + 1 rows: a last one means more pages. */
	if (json_array_size(items) > limit) {
		json_t *v;
		json_array_remove(items, limit);
		v = json_object_get(json_array_get(items, limit - 1), cursor_field);
		if (json_is_integer(v)) {
			char buf[32];
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
			next = json_string(buf);
		} else if (json_is_string(v)) {
			next = json_string(json_string_value(v));
		}
	}
	api_json(c, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

bool api_is_moat_ca(const struct moat_api *api, const char *fp)
{
	size_t i;

	for (i = 0; fp != NULL && fp[0] != '\0' && i < api->n_ca_fp; i++)
		if (strcmp(fp, api->ca_fp[i]) == 0)
			return true;
	return false;
}

bool api_name_valid(const char *s)
{
	return moat_device_id_valid(s, strlen(s));
}

void api_registry_changed(struct moat_api *api)
{
	api->reg_gen++; /* the cached CRL is stale */
	if (api->o.registry_changed)
		api->o.registry_changed(api->o.registry_arg, NULL);
}

moat_err api_audit(struct api_call *c, struct moat_store_batch **b, const char *action,
		   const char *target, const char *outcome, json_t *detail)
{
	struct moat_audit_event ev;
	struct moat_store_batch *own = NULL;
	char *d = NULL;
	moat_err rc;

	if (detail) {
		d = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(detail);
	}
	ev.actor = c->who.actor[0] ? c->who.actor : "anonymous";
	ev.action = action;
	ev.target = target ? target : "";
	ev.outcome = outcome;
	ev.peer = c->req->peer ? c->req->peer : "";
	ev.detail = d;
	rc = moat_audit_log_write(&c->api->audit, b ? b : &own, &ev);
	free(d);
	return rc;
}

void api_refuse(struct api_call *c, int status, const char *type, const char *msg,
		const char *field, const char *action, const char *target, const char *reason,
		json_t *detail)
{
	json_t *d = detail ? detail : json_object();

	if (strcmp(reason, "role") == 0 || strcmp(reason, "token") == 0 ||
	    strcmp(reason, "mfa") == 0)
		c->api->denied++; /* moat_auth_denied_total: refused for who the caller is */
	api_problem(c, status, type, msg, field);
	if (d != NULL) {
		json_object_set_new(
		    d, "method", json_string(llhttp_method_name((llhttp_method_t)c->req->method)));
		json_object_set_new(d, "path", json_string(c->req->path));
		json_object_set_new(d, "reason", json_string(reason));
	}
	(void)api_audit(c, NULL, action, target, "denied", d);
}

/* --- dispatch --- */

static const struct api_route_def *find_route(const struct moat_http_req *req,
					      struct moat_http_params *params, bool *known,
					      char *allow, size_t allowlen)
{
	size_t n;
	const struct moat_http_route *hr = moat_api_routes(&n);
	int i = moat_http_route_find(hr, n, req->method, req->path, req->path_len, params, known,
				     allow, allowlen);

	return i < 0 ? NULL : &routes[i];
}

size_t moat_api_body_limit(void *arg, int method, const char *path, size_t path_len)
{
	size_t n;
	const struct moat_http_route *hr = moat_api_routes(&n);
	struct moat_http_params params;
	bool known;
	int i = moat_http_route_find(hr, n, method, path, path_len, &params, &known, NULL, 0);

	(void)arg;
	/* Unknown routes get a small allowance so the 404 can be answered
	 * without reading a big body. */
	return i < 0 ? 1024 : routes[i].body_max;
}

static bool state_changing(int method)
{
	return method != MOAT_HTTP_GET && method != MOAT_HTTP_HEAD && method != MOAT_HTTP_OPTIONS;
}

/* The object key in force at byte `pos` of a JSON text: the last string
 * token before pos that is followed by ':' (the key being parsed when
 * jansson stopped). Raw bytes between the quotes, at most outlen - 1. */
static bool json_key_at(const char *s, size_t len, size_t pos, char *out, size_t outlen)
{
	size_t i = 0;
	bool found = false;

	while (i < len && i <= pos) {
		size_t start, j;
		if (s[i] != '"') {
			i++;
			continue;
		}
		start = ++i;
		while (i < len && s[i] != '"')
			i += s[i] == '\\' ? 2 : 1;
		if (i >= len)
			break;
		j = i + 1;
		while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n'))
			j++;
		if ((j < len && s[j] == ':') || i >= pos) {
			size_t n = i - start < outlen - 1 ? i - start : outlen - 1;
			memcpy(out, s + start, n);
			out[n] = '\0';
			found = true;
		}
		i++;
	}
	return found;
}

static bool parse_body(struct api_call *c, const struct api_route_def *r)
{
	const char *ct;
	json_error_t jerr;
	json_t *j;

	if (r->body_max == 0 || (r->flags & RF_RAW_BODY))
		return true;
	if (c->req->body_len == 0) {
		c->body = json_object();
		return c->body != NULL;
	}
	ct = moat_http_header(c->req, "content-type");
	if (ct == NULL || moat_http_header_count(c->req, "content-type") != 1 ||
	    (strncasecmp(ct, "application/json", 16) != 0 || (ct[16] != '\0' && ct[16] != ';'))) {
		api_problem(c, 415, "unsupported-media-type", "send Content-Type: application/json",
			    NULL);
		return false;
	}
	j = json_loadb((const char *)c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		char msg[200], key[65];
		bool dup = strstr(jerr.text, "duplicate object key") != NULL;
		/* Valid JSON that jansson refuses for our rules (a key given
		 * twice, an integer beyond 64 bits) is a validation error of the
		 * field, like any other. */
		if ((dup || strstr(jerr.text, "too big") != NULL) &&
		    json_key_at((const char *)c->req->body, c->req->body_len,
				jerr.position > 0 ? (size_t)jerr.position : 0, key, sizeof(key))) {
			snprintf(msg, sizeof(msg),
				 dup ? "'%s' is given more than once" : "'%s' is out of range",
				 key);
			api_problem(c, 422, "validation", msg, key);
			return false;
		}
		snprintf(msg, sizeof(msg), "line %d column %d: %s", jerr.line, jerr.column,
			 jerr.text);
		api_problem(c, 400, "invalid-json", msg, NULL);
		return false;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		api_problem(c, 400, "invalid-json", "the body must be a JSON object", NULL);
		return false;
	}
	c->body = j;
	return true;
}

static void audit_denied(struct api_call *c, const char *why)
{
	json_t *d = json_pack("{s:s, s:s, s:s}", "method",
			      llhttp_method_name((llhttp_method_t)c->req->method), "path",
			      c->req->path, "reason", why);
	(void)api_audit(c, NULL, "api.denied", c->req->path, "denied", d);
}

void moat_api_handle(void *arg, const struct moat_http_req *req, struct moat_http_resp *resp)
{
	struct moat_api *api = arg;
	struct api_call c;
	const struct api_route_def *r;
	char allow[128];
	bool known = false;

	memset(&c, 0, sizeof(c));
	c.api = api;
	c.req = req;
	c.resp = resp;
	c.now = moat_wall_ms();
	snprintf(c.who.actor, sizeof(c.who.actor), "anonymous");
	r = find_route(req, &c.params, &known, allow, sizeof(allow));
	if (r == NULL) {
		if (known) {
			moat_http_resp_header(resp, "Allow", allow);
			api_problem(&c, 405, "method-not-allowed", NULL, NULL);
		} else {
			api_problem(&c, 404, "not-found", NULL, NULL);
		}
		goto out;
	}
	if (r->perm != P_NONE) {
		if (!api_authenticate(&c))
			goto out;
		if (c.who.kind == AUTH_NONE) {
			api_problem(&c, 401, "unauthorized",
				    "log in (session cookie) or send Authorization: Bearer <token>",
				    NULL);
			goto out;
		}
		if ((c.who.perms & r->perm) != r->perm) {
			api->denied++;
			api_problem(&c, 403, "forbidden", "your role does not allow this", NULL);
			if (state_changing(req->method) || r->perm == P_AUDIT_READ)
				audit_denied(&c, "role");
			goto out;
		}
		if (c.who.kind == AUTH_SESSION && c.who.role == ROLE_ADMIN && !c.who.mfa_enrolled &&
		    !(r->flags & RF_MFA_EXEMPT)) {
			api_problem(&c, 403, "mfa-enrolment-required",
				    "administrators must enrol TOTP (POST /api/v1/me/totp) first",
				    NULL);
			if (state_changing(req->method) || r->perm == P_AUDIT_READ)
				audit_denied(&c, "mfa-enrolment");
			goto out;
		}
		if (c.who.kind == AUTH_SESSION && state_changing(req->method)) {
			const char *tok = moat_http_header(req, "x-csrf-token");
			size_t n = strlen(c.who.csrf);
			if (tok == NULL || strlen(tok) != n ||
			    sodium_memcmp(tok, c.who.csrf, n) != 0) {
				api->csrf_failures++;
				api_problem(&c, 403, "csrf",
					    "send the csrf_token from login as X-CSRF-Token", NULL);
				audit_denied(&c, "csrf");
				goto out;
			}
		}
	}
	if (!parse_body(&c, r))
		goto out;
	r->fn(&c);
	if (!c.answered)
		api_problem(&c, 500, "internal", NULL, NULL);
out:
	if (c.body)
		json_decref(c.body);
}

moat_err moat_api_new(const struct moat_api_opts *opts, struct moat_api **out, char *err,
		      size_t errlen)
{
	struct moat_api *api = calloc(1, sizeof(*api));
	moat_err rc;

	*out = NULL;
	if (api == NULL) {
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	if (sodium_init() < 0) {
		free(api);
		snprintf(err, errlen, "libsodium failed to initialise");
		return MOAT_E_CRYPTO;
	}
	api->o = *opts;
	api_json_wipe_init();
	snprintf(api->dir, sizeof(api->dir), "%s", opts->dir);
	pthread_mutex_init(&api->sec_lock, NULL);
	api->throttle = moat_login_throttle_new(MOAT_THROTTLE_KEYS_DEFAULT);
	if (api->throttle == NULL) {
		moat_api_free(api);
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	{
		/* The Moat CA's fingerprint: EST re-enrollment accepts only
		 * client certificates this CA anchors. */
		char path[MOAT_MAX_PATH];
		FILE *f;
		X509 *x = NULL;
		if ((size_t)snprintf(path, sizeof(path), "%s/ca.crt", opts->dir) < sizeof(path) &&
		    (f = fopen(path, "r")) != NULL) {
			while (api->n_ca_fp < 4 &&
			       (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
				moat_tls_cert_fingerprint(x, api->ca_fp[api->n_ca_fp],
							  sizeof(api->ca_fp[0]));
				api->n_ca_fp++;
				X509_free(x);
			}
			fclose(f);
			ERR_clear_error();
		}
	}
	/* Checkpoints are signed by the key process: this process never
	 * holds audit.key. */
	rc = moat_audit_log_open(&api->audit, opts->store, opts->dir,
				 opts->ca != NULL ? moat_ca_audit_sign : NULL, opts->ca, err,
				 errlen);
	if (rc != MOAT_OK) {
		moat_api_free(api);
		return rc;
	}
	api->audit_open = true;
	/* Needs the key process and the audit log, so here, not in a store
	 * migration. */
	rc = api_totp_migrate(api, err, errlen);
	if (rc != MOAT_OK) {
		moat_api_free(api);
		return rc;
	}
	api->sec_window_start = moat_now_ms();
	*out = api;
	return MOAT_OK;
}

void moat_api_free(struct moat_api *api)
{
	if (api == NULL)
		return;
	if (api->audit_open) {
		api_secev_flush(api, true);
		moat_audit_log_close(&api->audit);
	}
	moat_login_throttle_free(api->throttle);
	free(api->crl_der);
	pthread_mutex_destroy(&api->sec_lock);
	free(api);
}

void moat_api_tick(void *arg, uint64_t now_ms)
{
	struct moat_api *api = arg;

	api_secev_flush(api, false);
	api_events_tick(api, now_ms);
	if (now_ms - api->last_due_ms >= 1000) {
		api->last_due_ms = now_ms;
		api_est_revoke_due(api);
	}
	if (now_ms - api->last_sweep_ms >= 60000) {
		struct moat_store_batch *b = NULL;
		struct moat_val v[2];
		int64_t wall = moat_wall_ms();
		api->last_sweep_ms = now_ms;
		v[0] = moat_val_int(wall - (int64_t)MOAT_API_SESSION_IDLE_MS);
		v[1] = moat_val_int(wall - (int64_t)MOAT_API_SESSION_ABSOLUTE_MS);
		if (moat_store_batch_new(&b) == MOAT_OK) {
			if (moat_store_batch_add(b, AUTH_STMT(SESS_EXPIRE), v, 2) == MOAT_OK)
				(void)moat_store_write(api->o.store, b);
			else
				moat_store_batch_free(b);
		}
	}
}
