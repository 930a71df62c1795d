/*
 * The management API (docs/api.md, docs/openapi.yaml): JSON resources under
 * /api/v1 behind authentication (session cookies with CSRF tokens, or
 * bearer API tokens), role-based permissions and the audit log. It runs on
 * the HTTPS server's thread (src/http/server.h).
 */
#ifndef MOAT_API_H
#define MOAT_API_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "http/http.h"
#include "store/store.h"

struct moat_api;
struct moat_http_stats;
struct moat_ca;
struct moat_reg_change;

/* Numbers from elsewhere that /metrics reports; filled by the caller's
 * callback on the API thread. */
struct moat_api_metric {
	const char *name; /* moat_..., Prometheus syntax */
	const char *help;
	const char *type; /* counter|gauge */
	double value;
};
typedef size_t (*moat_api_metrics_cb)(void *arg, struct moat_api_metric *out, size_t max);

struct moat_api_opts {
	struct moat_store *store;
	const char *dir; /* data directory: audit.pub, ca.crt */
	moat_api_metrics_cb metrics;
	void *metrics_arg;
	const struct moat_http_stats *(*http_stats)(void *arg);
	void *http_stats_arg;
	/* Called on the API thread after a committed change to identities,
	 * memberships, attachments or policies; may be NULL. */
	struct moat_ca *ca;  /* the key process (signing, CRL); NULL: EST unavailable */
	unsigned cert_days;  /* lifetime of enrolled certificates (0: the default) */
	const char *crl_url; /* the CRL distribution point they name; NULL: none */
	/* ch: the identities a registry service call touched; NULL: reload
	 * everything (enrollment, manufacturer CAs). */
	void (*registry_changed)(void *arg, const struct moat_reg_change *ch);
	void *registry_arg;
	/* Erase what the broker holds of a decommissioned identity (sessions,
	 * queues, retained messages) and return when it is gone; called with
	 * registry_arg after the decommission committed. May be NULL. */
	moat_err (*erase_identity)(void *arg, const char *id, unsigned *sessions);
};

moat_err moat_api_new(const struct moat_api_opts *opts, struct moat_api **out, char *err,
		      size_t errlen);
/* Seals the audit log with a final checkpoint. */
void moat_api_free(struct moat_api *api);

/* HTTP server callbacks (arg = the api). */
void moat_api_handle(void *arg, const struct moat_http_req *req, struct moat_http_resp *resp);
size_t moat_api_body_limit(void *arg, int method, const char *path, size_t path_len);
void moat_api_tick(void *arg, uint64_t now_ms);

/* Security events from the broker's workers (any thread): aggregated per
 * (action, subject) over MOAT_API_SECEV_WINDOW_MS and written to the audit
 * log by the API thread, so a flood costs one entry per window. */
void moat_api_security_event(struct moat_api *api, const char *action, const char *subject,
			     const char *peer, const char *detail);

/* The route table, for the OpenAPI agreement test. */
const struct moat_http_route *moat_api_routes(size_t *n);

#endif
