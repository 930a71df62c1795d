/*
 * Broker lifecycle: load and check the data directory, build TLS contexts,
 * start the workers, and handle signals (SIGTERM/SIGINT stop, SIGHUP reload)
 * on the main thread, which does nothing else.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sodium.h>

#include "core/log.h"
#include "core/proc.h"
#include "mqtt/broker.h"
#include "store/store.h"
#include "tls/tls.h"
#include "registry/schema.h"

static moat_err check_private(const char *path, mode_t mask, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return MOAT_E_IO;
	}
	if (st.st_mode & mask) {
		snprintf(err, errlen,
			 "%s is accessible by group or others (mode %03o); fix: chmod %s %s", path,
			 (unsigned)(st.st_mode & 0777), S_ISDIR(st.st_mode) ? "700" : "600", path);
		return MOAT_E_PERM;
	}
	return MOAT_OK;
}

static moat_err build_listeners(const struct moat_conf *conf, struct moat_listener *out, char *err,
				size_t errlen)
{
	size_t i;
	struct moat_tls_paths paths = {conf->tls_cert, conf->tls_key, conf->tls_ca};

	for (i = 0; i < conf->n_listeners; i++) {
		out[i].conf = conf->listeners[i];
		out[i].ssl_ctx = NULL;
		if (!out[i].conf.tls)
			continue;
		out[i].ssl_ctx =
		    moat_tls_server_ctx(&paths, out[i].conf.require_client_cert, err, errlen);
		if (out[i].ssl_ctx == NULL) {
			while (i-- > 0)
				SSL_CTX_free(out[i].ssl_ctx);
			return MOAT_E_TLS;
		}
		/* An HTTPS listener without required client certificates still
		 * asks for one (listing only our CA, so browsers prompt only for a
		 * certificate this CA issued): EST re-enrollment authenticates a
		 * device with its current certificate. */
	}
	return MOAT_OK;
}

static moat_err load_conf(struct moat_broker *b, struct moat_conf *conf, char *err, size_t errlen)
{
	moat_err rc;

	rc = moat_conf_load(b->conf_path, b->dir, conf, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	return check_private(conf->tls_key, 077, err, errlen);
}

static moat_err open_store(struct moat_broker *b, char *err, size_t errlen)
{
	struct moat_store_opts o;
	char path[MOAT_MAX_PATH];
	int n = snprintf(path, sizeof(path), "%s/moat.db", b->dir);

	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	memset(&o, 0, sizeof(o));
	o.path = path;
	o.durability =
	    b->conf.durability == MOAT_DURABILITY_RELAXED ? MOAT_STORE_RELAXED : MOAT_STORE_STRICT;
	return moat_store_open(&o, &b->store, err, errlen);
}

moat_err moat_broker_start(struct moat_broker *b, const char *dir, char *err, size_t errlen)
{
	moat_err rc;
	unsigned i;
	long ncpu;

	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->cmap_lock, NULL);
	pthread_mutex_init(&b->reload_lock, NULL);
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot initialise (no entropy source?)");
		return MOAT_E_CRYPTO;
	}
	randombytes_buf(b->cmap_key, sizeof(b->cmap_key));
	pthread_mutex_init(&b->share_lock, NULL);
	pthread_mutex_init(&b->ctx_lock, NULL);
	snprintf(b->dir, sizeof(b->dir), "%s", dir);
	if ((size_t)snprintf(b->conf_path, sizeof(b->conf_path), "%s/moat.conf", dir) >=
	    sizeof(b->conf_path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	if ((rc = check_private(dir, 077, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = load_conf(b, &b->conf, err, errlen)) != MOAT_OK)
		return rc;
	atomic_store(&b->unknown_allow, b->conf.unknown_allow);
	moat_log_set_level((enum moat_log_level)b->conf.log_level);
	if ((rc = build_listeners(&b->conf, b->listeners, err, errlen)) != MOAT_OK)
		return rc;
	b->n_listeners = b->conf.n_listeners;
	for (i = 0; i < b->n_listeners; i++)
		if (!b->listeners[i].conf.tls)
			log_warn("plaintext_listener",
				 "listener=%s bind=%s port=%u note=\"tls = off: traffic on this "
				 "loopback listener is not encrypted\"",
				 b->listeners[i].conf.name, b->listeners[i].conf.bind,
				 b->listeners[i].conf.port);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	b->n_workers = b->conf.workers ? b->conf.workers : (ncpu > 0 ? (unsigned)ncpu : 1);
	if (b->n_workers > MOAT_MAX_WORKERS)
		b->n_workers = MOAT_MAX_WORKERS;
	b->shared = moat_subtrie_new();
	b->workers = calloc(b->n_workers, sizeof(*b->workers));
	if (b->shared == NULL || b->workers == NULL) {
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	b->started = moat_now_ms();
	for (i = 0; i < b->n_workers; i++) {
		if ((rc = moat_worker_init(&b->workers[i], b, i)) != MOAT_OK) {
			snprintf(err, errlen, "worker %u: cannot start (%s); see the log above", i,
				 moat_strerror(rc));
			b->n_workers = i + 1;
			return rc;
		}
	}
	if ((rc = open_store(b, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = moat_regtab_new(&b->reg)) != MOAT_OK) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	if ((rc = moat_regtab_load_all(b->reg, b->store, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = moat_broker_https_trust(b, err, errlen)) != MOAT_OK)
		return rc;
	log_info("registry_loaded", "identities=%zu unknown_devices=%s", moat_regtab_count(b->reg),
		 b->conf.unknown_allow ? "allow" : "refuse");
	if ((rc = moat_persist_restore(b, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = moat_persist_restore_sessions(b, err, errlen)) != MOAT_OK)
		return rc;
	if ((rc = moat_persist_restore_messages(b, err, errlen)) != MOAT_OK)
		return rc;
	/* Restored sessions get their identity's ACL as of now: what changed
	 * while they were offline (or while we were down) applies before any
	 * message reaches them. The workers do not run yet. */
	for (i = 0; i < b->n_workers; i++) {
		b->workers[i].now = moat_now_ms();
		moat_worker_registry(&b->workers[i], NULL);
	}
	return MOAT_OK;
}

static moat_err registry_reload_locked(struct moat_broker *b, bool retrust, char *err,
				       size_t errlen);

moat_err moat_broker_reload(struct moat_broker *b, char *err, size_t errlen)
{
	struct moat_conf *nc = calloc(1, sizeof(*nc));
	struct moat_listener nl[MOAT_MAX_LISTENERS];
	char key[MOAT_MAX_LISTENER_NAME + 48];
	moat_err rc = MOAT_E_NOMEM;
	size_t i, j;

	if (nc == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((rc = load_conf(b, nc, err, errlen)) != MOAT_OK)
		goto out;
	/* All or nothing: a key this process cannot change refuses the whole
	 * reload, so the running configuration is never half old, half new. */
	if (moat_conf_needs_restart(&b->conf, nc, key, sizeof(key))) {
		rc = MOAT_E_CONFIG;
		snprintf(err, errlen,
			 "%s changed: it needs a restart; nothing was reloaded, the running "
			 "configuration is kept",
			 key);
		goto out;
	}
	if ((rc = build_listeners(nc, nl, err, errlen)) != MOAT_OK)
		goto out;
	/* Swap TLS contexts of listeners that still exist; live connections
	 * keep the context they were made with (SSL objects hold a ref). */
	pthread_mutex_lock(&b->ctx_lock);
	for (i = 0; i < b->n_listeners; i++) {
		for (j = 0; j < nc->n_listeners; j++) {
			if (strcmp(b->listeners[i].conf.name, nl[j].conf.name) != 0)
				continue;
			if (b->listeners[i].ssl_ctx && nl[j].ssl_ctx) {
				SSL_CTX_free(b->listeners[i].ssl_ctx);
				b->listeners[i].ssl_ctx = nl[j].ssl_ctx;
				nl[j].ssl_ctx = NULL;
			}
		}
	}
	pthread_mutex_unlock(&b->ctx_lock);
	for (j = 0; j < nc->n_listeners; j++)
		SSL_CTX_free(nl[j].ssl_ctx);
	/* Limits: each worker gets its own copy through its mailbox. New
	 * connections see them; live ones keep what their CONNACK promised. */
	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		struct moat_limits *lim = malloc(sizeof(*lim));
		if (it == NULL || lim == NULL) {
			free(it);
			free(lim);
			continue;
		}
		*lim = nc->lim;
		it->kind = MAIL_RELOAD;
		it->lim = lim;
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
	b->conf.lim = nc->lim;
	b->conf.log_level = nc->log_level;
	moat_log_set_level((enum moat_log_level)nc->log_level);
	/* unknown_devices is read by every admission (an atomic copy); the
	 * registry reload below re-admits live connections with it, so a
	 * switch to refuse disconnects unregistered identities at once. */
	b->conf.unknown_allow = nc->unknown_allow;
	atomic_store(&b->unknown_allow, nc->unknown_allow);
	/* Registrations made offline (moat cert issue) take effect too; the
	 * HTTPS contexts were rebuilt above without manufacturer CAs. */
	pthread_mutex_lock(&b->reload_lock);
	rc = registry_reload_locked(b, true, err, errlen);
	pthread_mutex_unlock(&b->reload_lock);
	if (rc != MOAT_OK)
		goto out;
	rc = MOAT_OK;
out:
	free(nc);
	return rc;
}

moat_err moat_broker_run(struct moat_broker *b)
{
	uint64_t next_chore;
	unsigned i, k;
	int sig, e;
	size_t l;

	/* The caller blocked the signals (moat_proc_block_signals) before any
	 * thread started; the workers inherit the mask. */
	for (i = 0; i < b->n_workers; i++) {
		e = pthread_create(&b->workers[i].thread, NULL, moat_worker_main, &b->workers[i]);
		if (e != 0) {
			log_error("thread_start_failed", "thread=worker-%u error=\"%s\"", i,
				  strerror(e));
			moat_broker_stop(b);
			for (k = 0; k < i; k++)
				pthread_join(b->workers[k].thread, NULL);
			return MOAT_E_NOMEM;
		}
	}
	for (l = 0; l < b->n_listeners; l++)
		log_info("listening",
			 "listener=%s protocol=%s bind=%s port=%u tls=%s client_cert=%s policy=%s",
			 b->listeners[l].conf.name,
			 b->listeners[l].conf.protocol == MOAT_PROTO_HTTPS ? "https" : "mqtt",
			 b->listeners[l].conf.bind, b->listeners[l].conf.port,
			 b->listeners[l].conf.tls ? "on" : "off",
			 !b->listeners[l].conf.tls		    ? "none"
			 : b->listeners[l].conf.require_client_cert ? "required"
								    : "optional",
			 b->listeners[l].conf.policy == MOAT_POLICY_OPEN ? "open" : "default");
	if (b->housekeeping != NULL)
		b->housekeeping(b->housekeeping_arg);
	log_notice("ready", "workers=%u dir=%s", b->n_workers, b->dir);
	next_chore = moat_now_ms() + (uint64_t)b->housekeeping_s * 1000u;
	for (;;) {
		if (b->housekeeping != NULL && b->housekeeping_s > 0) {
			uint64_t now = moat_now_ms();

			sig = moat_proc_wait_signal(next_chore > now ? next_chore - now : 0);
			if (sig == 0) {
				b->housekeeping(b->housekeeping_arg);
				next_chore = moat_now_ms() + (uint64_t)b->housekeeping_s * 1000u;
				continue;
			}
		} else {
			sig = moat_proc_wait_signal(UINT64_MAX);
		}
		if (sig == SIGHUP) {
			char err[512];
			moat_err rc = moat_broker_reload(b, err, sizeof(err));
			if (rc == MOAT_OK)
				log_notice("reload", "ok=1 unknown_devices=%s",
					   b->conf.unknown_allow ? "allow" : "refuse");
			else
				log_error("reload", "ok=0 error=\"%s\"", err);
			continue;
		}
		log_notice("stopping", "signal=%d", sig);
		break;
	}
	moat_broker_stop(b);
	for (i = 0; i < b->n_workers; i++)
		pthread_join(b->workers[i].thread, NULL);
	return MOAT_OK;
}

/* Manufacturer CAs an operator registered: HTTPS listeners that do not
 * require a client certificate also trust them, so a device can present
 * its factory certificate to EST simpleenroll (the API checks which CA
 * anchored the chain). MQTT listeners, and HTTPS listeners configured with
 * require_client_cert = on, trust the Moat CA alone. */
static moat_err mca_add_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	SSL_CTX *ctx = arg;
	BIO *bio;
	X509 *x;

	if (ncols != 3 || cols[2].type != MOAT_VAL_TEXT || cols[2].len > INT32_MAX)
		return MOAT_E_CORRUPT;
	bio = BIO_new_mem_buf(cols[2].p, (int)cols[2].len);
	x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (x == NULL)
		return MOAT_OK; /* checked when registered; never fatal here */
	(void)X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x);
	(void)SSL_CTX_add_client_CA(ctx, x);
	X509_free(x);
	return MOAT_OK;
}

static moat_err mca_digest_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	EVP_MD_CTX *md = arg;

	if (ncols != 3 || cols[1].type != MOAT_VAL_TEXT)
		return MOAT_E_CORRUPT;
	return EVP_DigestUpdate(md, cols[1].p, cols[1].len) == 1 ? MOAT_OK : MOAT_E_CRYPTO;
}

moat_err moat_broker_https_trust(struct moat_broker *b, char *err, size_t errlen)
{
	struct moat_tls_paths paths = {b->conf.tls_cert, b->conf.tls_key, b->conf.tls_ca};
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md;
	moat_err drc;
	size_t i;

	if (b->store == NULL)
		return MOAT_OK;
	/* Most registry changes do not touch manufacturer CAs: rebuild the
	 * contexts only when their set changed (or after start and SIGHUP,
	 * which cleared mca_digest_set). */
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		snprintf(err, errlen, "out of memory");
		return MOAT_E_NOMEM;
	}
	drc = moat_store_read(b->store, REG_STMT(MCA_ALL), NULL, 0, mca_digest_cb, md);
	if (drc == MOAT_OK && EVP_DigestFinal_ex(md, digest, &dlen) != 1)
		drc = MOAT_E_CRYPTO;
	EVP_MD_CTX_free(md);
	if (drc != MOAT_OK) {
		snprintf(err, errlen, "cannot read manufacturer CAs: %s", moat_strerror(drc));
		return drc;
	}
	if (b->mca_digest_set && dlen == sizeof(b->mca_digest) &&
	    memcmp(digest, b->mca_digest, dlen) == 0)
		return MOAT_OK;

	for (i = 0; i < b->n_listeners; i++) {
		struct moat_listener *l = &b->listeners[i];
		SSL_CTX *ctx;
		moat_err rc;

		if (l->conf.protocol != MOAT_PROTO_HTTPS || l->conf.require_client_cert ||
		    b->store == NULL)
			continue;
		ctx = moat_tls_server_ctx(&paths, false, err, errlen);
		if (ctx == NULL)
			return MOAT_E_TLS;
		rc = moat_store_read(b->store, REG_STMT(MCA_ALL), NULL, 0, mca_add_cb, ctx);
		if (rc != MOAT_OK) {
			SSL_CTX_free(ctx);
			snprintf(err, errlen, "cannot read manufacturer CAs: %s",
				 moat_strerror(rc));
			return rc;
		}
		pthread_mutex_lock(&b->ctx_lock);
		SSL_CTX_free(l->ssl_ctx);
		l->ssl_ctx = ctx;
		pthread_mutex_unlock(&b->ctx_lock);
	}
	if (dlen == sizeof(b->mca_digest)) {
		memcpy(b->mca_digest, digest, dlen);
		b->mca_digest_set = true;
	}
	return MOAT_OK;
}

bool moat_broker_admit(struct moat_broker *b, const char *identity, const char *serial,
		       struct moat_acl **acl, const char **why)
{
	if (b->reg == NULL) {
		*why = "the registry is not loaded";
		return false;
	}
	return moat_regtab_admit(b->reg, identity, serial,
				 atomic_load_explicit(&b->unknown_allow, memory_order_relaxed), acl,
				 why) == MOAT_ADMIT_OK;
}

void moat_regev_unref(struct moat_regev *ev)
{
	if (ev != NULL && atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) == 1) {
		moat_reg_change_clear(&ev->ch);
		free(ev);
	}
}

/* Tell every worker to re-admit the sessions of ev's identities (NULL:
 * all); ev is taken. With reload_lock held, so the workers see changes in
 * the order they were loaded. */
static void registry_announce(struct moat_broker *b, struct moat_regev *ev)
{
	unsigned i;

	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		if (it == NULL)
			continue; /* that worker re-admits at the next change */
		it->kind = MAIL_REGISTRY;
		if (ev != NULL) {
			atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
			it->regev = ev;
		}
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
	moat_regev_unref(ev);
}

/* Load everything and announce it. retrust: rebuild the HTTPS contexts'
 * manufacturer-CA trust even if that set did not change (after SIGHUP
 * rebuilt them without it). The caller holds reload_lock: the API thread
 * and the SIGHUP path both come here, and two loads must neither apply an
 * older state after a newer one nor race on the digest. */
static moat_err registry_reload_locked(struct moat_broker *b, bool retrust, char *err,
				       size_t errlen)
{
	moat_err rc;

	if (retrust)
		b->mca_digest_set = false;
	rc = moat_regtab_load_all(b->reg, b->store, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	/* The table is new either way: the workers apply it. */
	rc = moat_broker_https_trust(b, err, errlen);
	registry_announce(b, NULL);
	return rc;
}

moat_err moat_broker_registry_update(struct moat_broker *b, const struct moat_reg_change *ch,
				     char *err, size_t errlen)
{
	struct moat_regev *ev = calloc(1, sizeof(*ev));
	moat_err rc = ev != NULL ? MOAT_OK : MOAT_E_NOMEM;
	size_t i;

	for (i = 0; rc == MOAT_OK && i < ch->n; i++)
		rc = moat_reg_change_add(&ev->ch, ch->ids[i]);
	if (rc != MOAT_OK) {
		if (ev != NULL)
			moat_reg_change_clear(&ev->ch);
		free(ev);
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	atomic_init(&ev->refs, 1);
	pthread_mutex_lock(&b->reload_lock);
	rc = moat_regtab_load_ids(b->reg, b->store, (const char *const *)ev->ch.ids, ev->ch.n,
				  ch->builtin, err, errlen);
	if (rc == MOAT_OK) {
		/* The built-in group's policies also apply to identities the
		 * registry does not know (unknown_devices = allow): no list
		 * names their sessions, so every session is re-admitted. */
		if (ch->builtin && atomic_load(&b->unknown_allow)) {
			moat_regev_unref(ev);
			ev = NULL;
		}
		registry_announce(b, ev);
	} else {
		moat_regev_unref(ev);
	}
	pthread_mutex_unlock(&b->reload_lock);
	return rc;
}

moat_err moat_broker_registry_reload(struct moat_broker *b, char *err, size_t errlen)
{
	moat_err rc;

	pthread_mutex_lock(&b->reload_lock);
	rc = registry_reload_locked(b, false, err, errlen);
	pthread_mutex_unlock(&b->reload_lock);
	return rc;
}

void moat_broker_stop(struct moat_broker *b)
{
	unsigned i;

	for (i = 0; i < b->n_workers; i++) {
		struct moat_mailitem *it = calloc(1, sizeof(*it));
		if (it == NULL) {
			b->workers[i].r.stop = true;
			continue;
		}
		it->kind = MAIL_STOP;
		moat_mailbox_post(&b->workers[i].mb, &it->link, &it->link);
	}
}

static void share_free_cb(void *owner, void *value)
{
	(void)owner;
	(void)value;
}

void moat_broker_free(struct moat_broker *b)
{
	unsigned i;
	size_t l;

	/* The store first: its last completions post to the workers' mailboxes,
	 * which worker_free drains. */
	if (b->store) {
		struct moat_store_stats st;
		moat_store_stats(b->store, &st);
		log_notice("store_stats",
			   "transactions=%llu commits=%llu batches=%llu batches_failed=%llu "
			   "fsyncs=%llu errors=%llu",
			   (unsigned long long)st.transactions, (unsigned long long)st.commits,
			   (unsigned long long)st.batches, (unsigned long long)st.batches_failed,
			   (unsigned long long)st.fsyncs, (unsigned long long)st.errors);
		moat_store_close(b->store);
	}
	b->store = NULL;
	for (i = 0; i < b->n_workers && b->workers; i++)
		moat_worker_free(&b->workers[i]);
	free(b->workers);
	for (l = 0; l < b->n_listeners; l++)
		SSL_CTX_free(b->listeners[l].ssl_ctx);
	if (b->shared)
		moat_subtrie_free(b->shared, share_free_cb);
	moat_share_free_all(b);
	moat_clientmap_free(b);
	pthread_mutex_destroy(&b->cmap_lock);
	pthread_mutex_destroy(&b->reload_lock);
	pthread_mutex_destroy(&b->share_lock);
	pthread_mutex_destroy(&b->ctx_lock);
	moat_regtab_free(b->reg);
	b->reg = NULL;
	if (b->started)
		log_notice("stopped", "dir=%s", b->dir);
}
