/*
 * moat-regbench: what one registry change costs the broker, before and
 * after per-identity events (issue 9).
 *
 * It builds a store with --ids registered identities (every one in the
 * group "devices" and in one of --groups groups, each group with its own
 * policy) and, in memory, a broker worker holding --sessions offline
 * sessions of the first identities, each admitted with its ACL. Then, for
 * --rounds rounds, it quarantines (or releases) one device through the
 * registry service and applies the change twice:
 *
 *   before  what main did until 2f04d8d: load the whole snapshot
 *           (legacy.c, the old code) and re-admit every session of the
 *           worker from it;
 *   after   what the broker does now: reload that identity's record
 *           (moat_regtab_load_ids) and re-admit its sessions only
 *           (moat_worker_registry with the change's identities).
 *
 * The broker side is driven directly (no TLS, no sockets): the sessions
 * are real struct moat_session objects on a real worker structure, in the
 * client-id map, without subscriptions or queued messages, so the figures
 * are the registry and re-admission cost alone. Wall and process CPU time,
 * medians over the rounds; a measurement, not a test.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "audit/audit_store.h"
#include "core/log.h"
#include "mqtt/internal.h"
#include "regbench.h"
#include "registry/schema.h"

struct times {
	double wall, cpu; /* ms */
};

static double ms_of(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

struct clock2 {
	struct timespec w, c;
};

static void clock_start(struct clock2 *k)
{
	clock_gettime(CLOCK_MONOTONIC, &k->w);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &k->c);
}

static struct times clock_stop(const struct clock2 *k)
{
	struct timespec w, c;
	struct times t;

	clock_gettime(CLOCK_MONOTONIC, &w);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
	t.wall = ms_of(&k->w, &w);
	t.cpu = ms_of(&k->c, &c);
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static struct times median(struct times *t, size_t n)
{
	double *w = calloc(n, sizeof(*w)), *c = calloc(n, sizeof(*c));
	struct times m = {0, 0};
	size_t i;

	if (w == NULL || c == NULL || n == 0)
		goto out;
	for (i = 0; i < n; i++) {
		w[i] = t[i].wall;
		c[i] = t[i].cpu;
	}
	qsort(w, n, sizeof(*w), cmp_double);
	qsort(c, n, sizeof(*c), cmp_double);
	m.wall = w[n / 2];
	m.cpu = c[n / 2];
out:
	free(w);
	free(c);
	return m;
}

static void die(const char *what, moat_err rc, const char *err)
{
	fprintf(stderr, "moat-regbench: %s: %s%s%s\n", what, moat_strerror(rc),
		err && *err ? ": " : "", err ? err : "");
	exit(1);
}

static void id_of(char *buf, size_t len, unsigned long i)
{
	snprintf(buf, len, "dev-%07lu", i);
}

/* The fleet, written with the store's statements in large batches (a
 * registration through the service would also sign an audit entry each:
 * set-up only, not what is measured). */
static void populate(struct moat_store *st, unsigned long ids, unsigned long groups)
{
	static const char rules[] = "allow publish g/${group}/#\nallow subscribe c/${device}/#";
	struct moat_store_batch *b = NULL;
	struct moat_val v[4];
	char id[32], g[32], p[32];
	unsigned long i;
	moat_err rc;

	if ((rc = moat_store_batch_new(&b)) != MOAT_OK)
		die("batch", rc, NULL);
	for (i = 0; i < groups; i++) {
		snprintf(g, sizeof(g), "grp-%04lu", i);
		snprintf(p, sizeof(p), "pol-%04lu", i);
		v[0] = moat_val_text(g, strlen(g));
		v[1] = moat_val_text("", 0);
		v[2] = moat_val_int(1);
		(void)moat_store_batch_add(b, REG_STMT(GROUP_INSERT), v, 3);
		v[0] = moat_val_text(p, strlen(p));
		v[1] = moat_val_text("", 0);
		v[2] = moat_val_text(rules, strlen(rules));
		v[3] = moat_val_int(1);
		(void)moat_store_batch_add(b, REG_STMT(POLICY_PUT), v, 4);
		v[1] = moat_val_text(g, strlen(g));
		(void)moat_store_batch_add(b, REG_STMT(ATTACH_GROUP), v, 2);
	}
	for (i = 0; i < ids; i++) {
		id_of(id, sizeof(id), i);
		snprintf(g, sizeof(g), "grp-%04lu", groups ? i % groups : 0);
		v[0] = moat_val_text(id, strlen(id));
		v[1] = moat_val_text("device", 6);
		v[2] = moat_val_text("active", 6);
		v[3] = moat_val_int(1);
		rc = moat_store_batch_add(b, REG_STMT(ID_INSERT), v, 4);
		v[1] = moat_val_text("devices", 7);
		if (rc == MOAT_OK)
			rc = moat_store_batch_add(b, REG_STMT(MEMBER_ADD), v, 2);
		v[1] = moat_val_text(g, strlen(g));
		if (rc == MOAT_OK && groups)
			rc = moat_store_batch_add(b, REG_STMT(MEMBER_ADD), v, 2);
		if (rc != MOAT_OK)
			die("batch", rc, NULL);
		if ((i + 1) % 2000 == 0 || i + 1 == ids) {
			if ((rc = moat_store_write(st, b)) != MOAT_OK)
				die("populate", rc, NULL);
			b = NULL;
			if (i + 1 < ids && (rc = moat_store_batch_new(&b)) != MOAT_OK)
				die("batch", rc, NULL);
		}
	}
	if (b != NULL && (rc = moat_store_write(st, b)) != MOAT_OK)
		die("populate", rc, NULL);
}

/* main's moat_worker_registry (2f04d8d), on the old snapshot: every
 * session checked and re-admitted. */
static void legacy_readmit_all(struct moat_worker *w, struct legacy_snap *snap)
{
	struct moat_session *s;

	for (s = w->sessions; s != NULL; s = s->next) {
		struct moat_acl *acl = NULL;
		const char *why = "";

		if (s->acl_all || legacy_snap_decommissioned(snap, s->identity))
			continue;
		if (legacy_snap_admit(snap, s->identity, NULL, false, &acl, &why) !=
		    MOAT_ADMIT_OK) {
			moat_session_set_acl(s, NULL, false);
		} else {
			moat_session_set_acl(s, acl, false);
			moat_acl_unref(acl);
			moat_policy_prune(s, s->acl);
		}
		(void)moat_session_drop_denied(s);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: moat-regbench [--ids N] [--sessions M] [--groups G] "
			"[--rounds R]\n"
			"The cost of one registry change (quarantine one device) with N "
			"registered identities and M sessions, before and after per-identity "
			"events.\n");
}

static unsigned long num_arg(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > 10000000ul) {
		usage();
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	unsigned long ids = 100000, sessions = 10000, groups = 100, rounds = 5, i;
	char dir[256], path[320], err[512], id[32];
	const char *tmp = getenv("TMPDIR");
	struct moat_store_opts o;
	struct moat_store *st = NULL;
	struct moat_audit_log alog;
	struct moat_audit_file_signer signer;
	struct moat_broker *b;
	struct moat_worker *w;
	struct moat_reg_ctx x;
	struct times *t_write, *t_old_load, *t_old_adm, *t_new_load, *t_new_adm;
	struct clock2 k;
	struct times setup, full;
	moat_err rc;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--ids") == 0 && a + 1 < argc)
			ids = num_arg(argv[++a]);
		else if (strcmp(argv[a], "--sessions") == 0 && a + 1 < argc)
			sessions = num_arg(argv[++a]);
		else if (strcmp(argv[a], "--groups") == 0 && a + 1 < argc)
			groups = num_arg(argv[++a]);
		else if (strcmp(argv[a], "--rounds") == 0 && a + 1 < argc)
			rounds = num_arg(argv[++a]);
		else {
			usage();
			return 2;
		}
	}
	if (sessions > ids)
		sessions = ids;
	if (sodium_init() < 0)
		die("libsodium", MOAT_E_CRYPTO, NULL);
	moat_log_set_level(MOAT_LOG_WARN);
	snprintf(dir, sizeof(dir), "%s/moat-regbench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		die("mkdtemp", MOAT_E_IO, dir);
	snprintf(path, sizeof(path), "%s/moat.db", dir);
	memset(&o, 0, sizeof(o));
	o.path = path;
	if ((rc = moat_store_open(&o, &st, err, sizeof(err))) != MOAT_OK)
		die("store", rc, err);
	if ((rc = moat_audit_key_create(dir, err, sizeof(err))) != MOAT_OK ||
	    (rc = moat_audit_file_signer_open(&signer, dir, err, sizeof(err))) != MOAT_OK ||
	    (rc = moat_audit_log_open(&alog, st, dir, moat_audit_file_sign, &signer, err,
				      sizeof(err))) != MOAT_OK)
		die("audit log", rc, err);

	clock_start(&k);
	populate(st, ids, groups);
	setup = clock_stop(&k);

	/* A broker with one worker, as far as the registry needs one. */
	b = calloc(1, sizeof(*b));
	w = calloc(1, sizeof(*w));
	if (b == NULL || w == NULL)
		die("broker", MOAT_E_NOMEM, NULL);
	pthread_mutex_init(&b->cmap_lock, NULL);
	randombytes_buf(b->cmap_key, sizeof(b->cmap_key));
	b->workers = w;
	b->n_workers = 1;
	w->b = b;
	w->retained = moat_rettree_new();
	if (w->retained == NULL || moat_regtab_new(&b->reg) != MOAT_OK)
		die("broker", MOAT_E_NOMEM, NULL);
	clock_start(&k);
	if ((rc = moat_regtab_load_all(b->reg, st, err, sizeof(err))) != MOAT_OK)
		die("registry", rc, err);
	full = clock_stop(&k);
	for (i = 0; i < sessions; i++) {
		struct moat_session *s;
		struct moat_acl *acl = NULL;
		const char *why;

		id_of(id, sizeof(id), i);
		s = moat_session_new(w, id, strlen(id));
		if (s == NULL)
			die("session", MOAT_E_NOMEM, NULL);
		memcpy(s->identity, id, strlen(id) + 1);
		moat_clientmap_rebind(b, id, strlen(id), 0, s->id);
		if (!moat_broker_admit(b, id, NULL, &acl, &why))
			die("admit", MOAT_E_DENIED, why);
		moat_session_set_acl(s, acl, false);
		moat_acl_unref(acl);
	}

	t_write = calloc(rounds, sizeof(*t_write));
	t_old_load = calloc(rounds, sizeof(*t_old_load));
	t_old_adm = calloc(rounds, sizeof(*t_old_adm));
	t_new_load = calloc(rounds, sizeof(*t_new_load));
	t_new_adm = calloc(rounds, sizeof(*t_new_adm));
	if (!t_write || !t_old_load || !t_old_adm || !t_new_load || !t_new_adm)
		die("times", MOAT_E_NOMEM, NULL);
	memset(&x, 0, sizeof(x));
	x.store = st;
	x.audit = &alog;
	x.actor = "bench";
	x.peer = "";
	id_of(id, sizeof(id), sessions / 2); /* a device with a session */
	for (i = 0; i < rounds; i++) {
		struct moat_regev ev;
		struct legacy_snap *snap = NULL;
		bool q = i % 2 == 0;

		memset(&ev, 0, sizeof(ev));
		atomic_init(&ev.refs, 1);
		x.now = (int64_t)time(NULL) * 1000;
		clock_start(&k);
		rc = moat_reg_set_state(&x, id, q ? MOAT_ID_ACTIVE : MOAT_ID_QUARANTINED,
					q ? MOAT_ID_QUARANTINED : MOAT_ID_ACTIVE, &ev.ch);
		t_write[i] = clock_stop(&k);
		if (rc != MOAT_OK)
			die("set state", rc, NULL);

		/* before: the whole registry, every session */
		clock_start(&k);
		if ((rc = legacy_snap_load(st, &snap, err, sizeof(err))) != MOAT_OK)
			die("legacy load", rc, err);
		t_old_load[i] = clock_stop(&k);
		clock_start(&k);
		legacy_readmit_all(w, snap);
		t_old_adm[i] = clock_stop(&k);
		legacy_snap_unref(snap);

		/* after: that identity, its sessions */
		clock_start(&k);
		rc = moat_regtab_load_ids(b->reg, st, (const char *const *)ev.ch.ids, ev.ch.n,
					  ev.ch.builtin, err, sizeof(err));
		t_new_load[i] = clock_stop(&k);
		if (rc != MOAT_OK)
			die("load ids", rc, err);
		clock_start(&k);
		moat_worker_registry(w, &ev);
		t_new_adm[i] = clock_stop(&k);
		moat_reg_change_clear(&ev.ch);
	}

	{
		struct times wr = median(t_write, rounds), ol = median(t_old_load, rounds),
			     oa = median(t_old_adm, rounds), nl = median(t_new_load, rounds),
			     na = median(t_new_adm, rounds);

		printf("\nmoat-regbench: one state change (quarantine/release one device), "
		       "%lu identities, %lu groups, %lu sessions on one worker, median of %lu "
		       "rounds (set-up %.0f ms)\n\n",
		       ids, groups, sessions, rounds, setup.wall);
		printf("| step | before: full reload (wall ms) | before (CPU ms) | after: per "
		       "identity (wall ms) | after (CPU ms) |\n");
		printf("|---|---:|---:|---:|---:|\n");
		printf("| write: batch + audit entry (service) | %.3f | %.3f | %.3f | %.3f |\n",
		       wr.wall, wr.cpu, wr.wall, wr.cpu);
		printf("| load the registry | %.3f | %.3f | %.3f | %.3f |\n", ol.wall, ol.cpu,
		       nl.wall, nl.cpu);
		printf("| re-admit sessions (one worker) | %.3f | %.3f | %.3f | %.3f |\n", oa.wall,
		       oa.cpu, na.wall, na.cpu);
		printf("| **apply the change** | **%.3f** | **%.3f** | **%.3f** | **%.3f** |\n\n",
		       ol.wall + oa.wall, ol.cpu + oa.cpu, nl.wall + na.wall, nl.cpu + na.cpu);
		printf("(start and SIGHUP still load everything: the identity table's full load "
		       "took %.1f ms wall, %.1f ms CPU, once.)\n\n",
		       full.wall, full.cpu);
	}

	while (w->sessions != NULL)
		moat_session_free(w->sessions);
	moat_clientmap_free(b);
	free(w->by_id);
	moat_rettree_free(w->retained, NULL);
	moat_regtab_free(b->reg);
	pthread_mutex_destroy(&b->cmap_lock);
	free(w);
	free(b);
	free(t_write);
	free(t_old_load);
	free(t_old_adm);
	free(t_new_load);
	free(t_new_adm);
	moat_audit_log_close(&alog);
	moat_audit_file_signer_close(&signer);
	moat_store_close(st);
	{
		static const char *const files[] = {"moat.db", "moat.db-wal", "moat.db-shm",
						    "audit.key", "audit.pub"};
		size_t f;
		for (f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
			snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
			unlink(path);
		}
		rmdir(dir);
	}
	return 0;
}
