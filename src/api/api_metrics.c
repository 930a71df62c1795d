/* GET /healthz (no authentication, says nothing but "ok") and GET /metrics
 * (Prometheus text format 0.0.4: broker, HTTP, storage, auth, audit). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "http/server.h"

void api_healthz(struct api_call *c)
{
	api_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

struct mbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void mput(struct mbuf *m, const char *name, const char *help, const char *type,
		 const char *labels, double v)
{
	char line[512];
	int n;

	if (help)
		n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name,
			     help, name, type, name, labels ? labels : "", v);
	else
		n = snprintf(line, sizeof(line), "%s%s %.17g\n", name, labels ? labels : "", v);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	if (m->len + (size_t)n > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 8192;
		char *np;
		while (ncap < m->len + (size_t)n)
			ncap *= 2;
		np = realloc(m->p, ncap);
		if (np == NULL) {
			m->oom = true;
			return;
		}
		m->p = np;
		m->cap = ncap;
	}
	memcpy(m->p + m->len, line, (size_t)n);
	m->len += (size_t)n;
}

void api_metrics(struct api_call *c)
{
	struct moat_api *api = c->api;
	struct moat_api_metric bm[64];
	struct moat_store_stats ss;
	struct mbuf m = {NULL, 0, 0, false};
	size_t i, n = 0;

	if (api->o.metrics)
		n = api->o.metrics(api->o.metrics_arg, bm, sizeof(bm) / sizeof(bm[0]));
	for (i = 0; i < n; i++)
		mput(&m, bm[i].name, bm[i].help, bm[i].type, NULL, bm[i].value);
	if (api->o.http_stats && api->o.http_stats(api->o.http_stats_arg)) {
		const struct moat_http_stats *h = api->o.http_stats(api->o.http_stats_arg);
		static const char *const cls[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
		mput(&m, "moat_http_connections_total", "HTTPS connections accepted", "counter",
		     NULL, (double)h->connections);
		mput(&m, "moat_http_connections_refused_total",
		     "HTTPS connections refused by the total or per-address cap", "counter", NULL,
		     (double)h->refused);
		mput(&m, "moat_http_connections_open", "HTTPS connections open", "gauge", NULL,
		     (double)h->open);
		mput(&m, "moat_http_connections_idle", "HTTPS connections between requests",
		     "gauge", NULL, (double)h->idle);
		mput(&m, "moat_http_idle_buffer_bytes",
		     "bytes of buffers held by idle HTTPS connections", "gauge", NULL,
		     (double)h->idle_bytes);
		mput(&m, "moat_http_connection_buffer_bytes_max",
		     "the most buffer bytes one HTTPS connection has held", "gauge", NULL,
		     (double)h->conn_bytes_max);
		mput(&m, "moat_http_tls_failures_total", "failed TLS handshakes", "counter", NULL,
		     (double)h->tls_failures);
		mput(&m, "moat_http_timeouts_total", "connections closed by a timeout", "counter",
		     NULL, (double)h->timeouts);
		mput(&m, "moat_http_requests_total", "requests answered", "counter", NULL,
		     (double)h->requests);
		mput(&m, "moat_http_bad_requests_total", "requests refused by the parser",
		     "counter", NULL, (double)h->bad_requests);
		for (i = 1; i <= 5; i++) {
			char lab[32];
			snprintf(lab, sizeof(lab), "{class=\"%s\"}", cls[i]);
			mput(&m, "moat_http_responses_total",
			     i == 1 ? "responses by status class" : NULL, "counter", lab,
			     (double)h->by_class[i]);
		}
	}
	moat_store_stats(api->o.store, &ss);
	mput(&m, "moat_store_commits_total", "store transactions committed", "counter", NULL,
	     (double)ss.commits);
	mput(&m, "moat_store_batches_total", "store batches completed", "counter", NULL,
	     (double)ss.batches);
	mput(&m, "moat_store_batches_failed_total", "store batches that failed", "counter", NULL,
	     (double)ss.batches_failed);
	mput(&m, "moat_store_fsyncs_total", "fsync calls of the store", "counter", NULL,
	     (double)ss.fsyncs);
	mput(&m, "moat_store_errors_total", "storage errors", "counter", NULL, (double)ss.errors);
	mput(&m, "moat_auth_logins_total", "login attempts by result", "counter", "{result=\"ok\"}",
	     (double)api->logins_ok);
	mput(&m, "moat_auth_logins_total", NULL, "counter", "{result=\"failed\"}",
	     (double)api->logins_failed);
	mput(&m, "moat_auth_logins_total", NULL, "counter", "{result=\"throttled\"}",
	     (double)api->logins_throttled);
	mput(&m, "moat_auth_denied_total", "requests refused for the caller's role", "counter",
	     NULL, (double)api->denied);
	mput(&m, "moat_auth_csrf_failures_total",
	     "state-changing requests without a valid CSRF "
	     "token",
	     "counter", NULL, (double)api->csrf_failures);
	mput(&m, "moat_audit_entries_total", "audit entries appended since start", "counter", NULL,
	     (double)api->audit.appended);
	mput(&m, "moat_audit_write_failures_total", "audit entries that could not be written",
	     "counter", NULL, (double)api->audit.failures);
	mput(&m, "moat_audit_head_seq", "sequence number of the newest audit entry", "gauge", NULL,
	     (double)api->audit.seq);
	mput(&m, "moat_audit_sealed_seq", "last audit entry covered by a signed checkpoint",
	     "gauge", NULL, (double)api->audit.sealed_seq);
	if (m.oom || m.p == NULL) {
		free(m.p);
		api_internal(c, MOAT_E_NOMEM);
		return;
	}
	c->answered = true;
	moat_http_resp_take(c->resp, 200, "text/plain; version=0.0.4; charset=utf-8", m.p, m.len);
}
