/*
 * The storage layer (src/store/): open and migrations, refusal of newer,
 * garbage and foreign files, statement round trips, expiry, group commit
 * from several threads, savepoint isolation, strict and relaxed
 * durability, the integrity check, and fault injection on every write path
 * (SQLite's real error paths, through the store's VFS hook): writes, syncs
 * and truncates failing with "disk full" or "I/O error" during migrations,
 * commits and checkpoints, plus a lock held by another connection. After
 * each fault: the completion reports it, a reader sees nothing partial,
 * the database checks clean and the next batch succeeds.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/limits.h"
#include "core/log.h"
#include "store/store.h"
#include "audit/schema.h"
#include "auth/schema.h"
#include "mqtt/schema.h"
#include "registry/schema.h"

static char dir[256];
static char dbpath[320];

/* ---- fixtures ---------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	const char *t = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/moat-test-store-XXXXXX", t != NULL && *t ? t : "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(dbpath, sizeof(dbpath), "%s/moat.db", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char p[400];

	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
	return rmdir(dir);
}

/* ---- fault hook -------------------------------------------------------- */

struct fault {
	pthread_mutex_t m;
	bool armed;
	enum moat_store_io op;
	enum moat_store_fault kind;
	long skip;  /* matching calls to let through first */
	long count; /* then fail this many (-1: until disarmed) */
	long fired;
	long seen[3];
};

static struct fault fault = {.m = PTHREAD_MUTEX_INITIALIZER};

static enum moat_store_fault fault_cb(void *arg, enum moat_store_io op)
{
	struct fault *f = arg;
	enum moat_store_fault r = MOAT_STORE_FAULT_NONE;

	pthread_mutex_lock(&f->m);
	f->seen[op]++;
	if (f->armed && op == f->op) {
		if (f->skip > 0) {
			f->skip--;
		} else if (f->count != 0) {
			if (f->count > 0)
				f->count--;
			f->fired++;
			r = f->kind;
		}
	}
	pthread_mutex_unlock(&f->m);
	return r;
}

static void fault_arm(enum moat_store_io op, enum moat_store_fault kind, long skip, long count)
{
	pthread_mutex_lock(&fault.m);
	fault.armed = true;
	fault.op = op;
	fault.kind = kind;
	fault.skip = skip;
	fault.count = count;
	fault.fired = 0;
	pthread_mutex_unlock(&fault.m);
}

static long fault_disarm(void)
{
	long fired;

	pthread_mutex_lock(&fault.m);
	fault.armed = false;
	fired = fault.fired;
	pthread_mutex_unlock(&fault.m);
	return fired;
}

/* ---- helpers ----------------------------------------------------------- */

struct done {
	pthread_mutex_t m;
	pthread_cond_t c;
	int n;
	int failed;
	moat_err rc; /* the last result */
};

static void done_init(struct done *d)
{
	pthread_mutex_init(&d->m, NULL);
	pthread_cond_init(&d->c, NULL);
	d->n = 0;
	d->failed = 0;
	d->rc = MOAT_OK;
}

static void done_destroy(struct done *d)
{
	pthread_mutex_destroy(&d->m);
	pthread_cond_destroy(&d->c);
}

static void done_cb(void *arg, moat_err rc)
{
	struct done *d = arg;

	pthread_mutex_lock(&d->m);
	d->n++;
	if (rc != MOAT_OK)
		d->failed++;
	d->rc = rc;
	pthread_cond_broadcast(&d->c);
	pthread_mutex_unlock(&d->m);
}

static void done_wait(struct done *d, int n)
{
	pthread_mutex_lock(&d->m);
	while (d->n < n)
		pthread_cond_wait(&d->c, &d->m);
	pthread_mutex_unlock(&d->m);
}

static struct moat_store *open_store(enum moat_store_durability dur, uint32_t flush_ms)
{
	struct moat_store_opts o = {0};
	struct moat_store *st = NULL;
	char err[512];
	moat_err rc;

	o.path = dbpath;
	o.durability = dur;
	o.flush_ms = flush_ms;
	o.busy_ms = 100;
	o.fault_cb = fault_cb;
	o.fault_arg = &fault;
	rc = moat_store_open(&o, &st, err, sizeof(err));
	if (rc != MOAT_OK)
		fprintf(stderr, "open: %s\n", err);
	assert_int_equal(rc, MOAT_OK);
	return st;
}

static void add_session(struct moat_store_batch *b, const char *cid, int64_t expire_at)
{
	struct moat_val v[12];

	v[0] = moat_val_text(cid, strlen(cid));
	v[1] = moat_val_text("dev", 3);
	v[2] = moat_val_int(5);
	v[3] = moat_val_int(3600);
	v[4] = expire_at ? moat_val_int(expire_at) : moat_val_null();
	v[5] = moat_val_text("w/gone", 6);
	v[6] = moat_val_blob("bye", 3);
	v[7] = moat_val_null();
	v[8] = moat_val_int(1);
	v[9] = moat_val_int(0);
	v[10] = moat_val_int(5);
	v[11] = moat_val_int(0);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(SESSION_PUT), v, 12), MOAT_OK);
}

static void add_msg(struct moat_store_batch *b, int64_t id, const char *topic, int64_t expire_at)
{
	struct moat_val v[7];
	char payload[64];
	int n;

	n = snprintf(payload, sizeof(payload), "payload-%lld", (long long)id);
	v[0] = moat_val_int(id);
	v[1] = moat_val_text(topic, strlen(topic));
	v[2] = moat_val_blob(payload, (size_t)n);
	v[3] = moat_val_blob("\x01\x02", 2);
	v[4] = moat_val_int(1);
	v[5] = moat_val_int(0);
	v[6] = expire_at ? moat_val_int(expire_at) : moat_val_null();
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(MSG_PUT), v, 7), MOAT_OK);
}

static void add_delivery(struct moat_store_batch *b, const char *cid, int64_t seq, int64_t msg,
			 int64_t state)
{
	struct moat_val v[8];

	v[0] = moat_val_text(cid, strlen(cid));
	v[1] = moat_val_int(seq);
	v[2] = moat_val_int(msg);
	v[3] = moat_val_int(1);
	v[4] = moat_val_int(0);
	v[5] = moat_val_int(state);
	v[6] = moat_val_int(state ? 7 : 0);
	v[7] = moat_val_blob("", 0);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(DELIVERY_PUT), v, 8), MOAT_OK);
}

/* Submit b and wait for its completion. */
static moat_err run(struct moat_store *st, struct moat_store_batch *b)
{
	struct done d;
	moat_err rc;

	done_init(&d);
	assert_int_equal(moat_store_submit(st, b, done_cb, &d), MOAT_OK);
	done_wait(&d, 1);
	rc = d.rc;
	done_destroy(&d);
	return rc;
}

static struct moat_store_batch *batch(void)
{
	struct moat_store_batch *b = NULL;

	assert_int_equal(moat_store_batch_new(&b), MOAT_OK);
	return b;
}

/* A message, queued for two sessions: the typical atomic publish. */
static moat_err publish(struct moat_store *st, int64_t id)
{
	struct moat_store_batch *b = batch();

	add_msg(b, id, "d/dev/t", 0);
	add_delivery(b, "a", id, id, 0);
	add_delivery(b, "b", id, id, 0);
	return run(st, b);
}

/* Rows an independent connection sees (another reader of the file). */
static int64_t count_sql(const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int64_t n = -1;

	assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

static moat_err count_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	(void)cols;
	(void)ncols;
	(*(int *)arg)++;
	return MOAT_OK;
}

/* Is message id visible, to the store's reader and to another process? */
static bool visible(struct moat_store *st, int64_t id)
{
	struct moat_val p = moat_val_int(id);
	char sql[160];
	int n = 0;
	int64_t other;

	assert_int_equal(moat_store_read(st, MQTT_STMT(MSG_GET), &p, 1, count_cb, &n), MOAT_OK);
	snprintf(sql, sizeof(sql),
		 "SELECT (SELECT count(*) FROM messages WHERE id = %lld) + (SELECT count(*) "
		 "FROM deliveries WHERE msg_id = %lld)",
		 (long long)id, (long long)id);
	other = count_sql(sql);
	/* all or nothing: one message and its two deliveries */
	assert_true(other == 0 || other == 3);
	assert_int_equal(n, other == 3 ? 1 : 0);
	return n == 1;
}

static void assert_check_ok(struct moat_store *st)
{
	char err[256];
	moat_err rc;

	rc = moat_store_check(st, err, sizeof(err));
	if (rc != MOAT_OK)
		fprintf(stderr, "check: %s\n", err);
	assert_int_equal(rc, MOAT_OK);
}

static void setup_sessions(struct moat_store *st)
{
	struct moat_store_batch *b = batch();

	add_session(b, "a", 0);
	add_session(b, "b", 0);
	assert_int_equal(run(st, b), MOAT_OK);
}

/* ---- open, migrations, refusal ----------------------------------------- */

static void test_open_close(void **state)
{
	(void)state;
	struct moat_store *st;
	struct stat sb;
	char p[400];

	st = open_store(MOAT_STORE_STRICT, 0);
	assert_int_equal(count_sql("SELECT max(version) FROM schema_version"),
			 moat_store_schema_version());
	assert_int_equal(count_sql("PRAGMA application_id"), 0x4D4F4154);
	assert_int_equal(stat(dbpath, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_check_ok(st);
	moat_store_close(st);
	moat_store_close(NULL);
}

static void test_loose_mode_tightened(void **state)
{
	(void)state;
	struct moat_store *st;
	struct stat sb;
	FILE *f;

	f = fopen(dbpath, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(chmod(dbpath, 0644), 0);
	st = open_store(MOAT_STORE_STRICT, 0);
	assert_int_equal(stat(dbpath, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	moat_store_close(st);
}

static void test_reopen_idempotent(void **state)
{
	(void)state;
	struct moat_store *st;
	int64_t max_id = 0;

	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);
	assert_int_equal(publish(st, 42), MOAT_OK);
	moat_store_close(st);

	st = open_store(MOAT_STORE_RELAXED, 0);
	assert_int_equal(count_sql("SELECT max(version) FROM schema_version"),
			 moat_store_schema_version());
	assert_int_equal(count_sql("SELECT count(*) FROM module_versions"),
			 count_sql("SELECT count(*) FROM module_versions WHERE applied_at > 0"));
	assert_int_equal(moat_store_read_int(st, MQTT_STMT(MSG_MAX_ID), NULL, 0, &max_id), MOAT_OK);
	assert_int_equal(max_id, 42);
	assert_true(visible(st, 42));
	moat_store_close(st);
}

static void test_newer_version_refused(void **state)
{
	(void)state;
	struct moat_store_opts o = {.path = dbpath};
	struct moat_store *st = NULL;
	sqlite3 *db = NULL;
	char err[512], want[200];

	st = open_store(MOAT_STORE_STRICT, 0);
	moat_store_close(st);
	st = NULL;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "INSERT INTO schema_version VALUES (999, 'from the future', 0)", NULL,
			 NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_VERSION);
	assert_null(st);
	snprintf(want, sizeof(want),
		 "database schema version 999 is newer than this moat (knows up to %d); use a "
		 "newer moat or restore a backup",
		 moat_store_schema_version());
	assert_string_equal(err, want);
}

static void test_garbage_refused(void **state)
{
	(void)state;
	struct moat_store_opts o = {.path = dbpath};
	struct moat_store *st = NULL;
	unsigned char junk[8192];
	struct stat sb;
	sqlite3 *db = NULL;
	char err[512];
	size_t i;
	FILE *f;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131u + 7u);
	f = fopen(dbpath, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	fclose(f);
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_CORRUPT);
	assert_null(st);
	assert_non_null(strstr(err, "is not a usable Moat database"));
	/* and the file is left as it was */
	assert_int_equal(stat(dbpath, &sb), 0);
	assert_int_equal(sb.st_size, sizeof(junk));
	unlink(dbpath);

	/* an SQLite database of something else */
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE foo (x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_CORRUPT);
	assert_non_null(strstr(err, "not a Moat database"));
	assert_int_equal(count_sql("SELECT count(*) FROM sqlite_schema WHERE name = 'sessions'"),
			 0);
}

static int64_t count_sql_raw(const char *sql)
{
	return count_sql(sql);
}

static void test_bad_opts(void **state)
{
	(void)state;
	struct moat_store_opts o = {0};
	struct moat_store *st = NULL;
	char err[256];

	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_INVAL);
	o.path = dbpath;
	o.durability = MOAT_STORE_RELAXED;
	o.flush_ms = MOAT_STORE_FLUSH_MS_MAX + 1;
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_INVAL);
	assert_non_null(strstr(err, "flush interval"));
	o.flush_ms = 0;
	o.busy_ms = 1;
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_INVAL);
	o.busy_ms = 0;
	o.commit_window_us = MOAT_STORE_COMMIT_WINDOW_US_MAX + 1;
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_INVAL);
	assert_non_null(strstr(err, "commit window"));
	o.commit_window_us = 0;
	o.durability = (enum moat_store_durability)7;
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_E_INVAL);
	assert_null(st);
	assert_int_equal(access(dbpath, F_OK), -1); /* nothing created */
}

/* Opening fails cleanly at every write and sync of the migration, then
 * succeeds once the disk is healthy. */
static void test_fault_open(void **state)
{
	static const enum moat_store_io ops[] = {MOAT_STORE_IO_WRITE, MOAT_STORE_IO_SYNC};
	static const enum moat_store_fault kinds[] = {MOAT_STORE_FAULT_FULL, MOAT_STORE_FAULT_IO};
	struct moat_store_opts o = {.path = dbpath, .fault_cb = fault_cb, .fault_arg = &fault};
	struct moat_store *st;
	char err[512];
	size_t i, k;
	long skip, fired;
	int failures = 0;
	moat_err rc;

	for (i = 0; i < 2; i++) {
		for (k = 0; k < 2; k++) {
			for (skip = 0;; skip++) {
				teardown(state);
				setup(state);
				snprintf(dbpath, sizeof(dbpath), "%s/moat.db", dir);
				st = NULL;
				fault_arm(ops[i], kinds[k], skip, -1);
				rc = moat_store_open(&o, &st, err, sizeof(err));
				fired = fault_disarm();
				if (fired == 0) {
					assert_int_equal(rc, MOAT_OK);
					moat_store_close(st);
					break;
				}
				if (rc == MOAT_OK) {
					/* the fault hit only something SQLite may
					 * ignore (a checkpoint at close) */
					moat_store_close(st);
				} else {
					failures++;
					assert_null(st);
					assert_true(rc == MOAT_E_FULL || rc == MOAT_E_IO);
					assert_true(err[0] != '\0');
				}
				/* healthy again: opens, migrated, consistent */
				st = open_store(MOAT_STORE_STRICT, 0);
				assert_check_ok(st);
				assert_int_equal(count_sql_raw("SELECT max(version) FROM "
							       "schema_version"),
						 moat_store_schema_version());
				moat_store_close(st);
			}
		}
	}
	assert_true(failures > 4);
}

/* ---- statements -------------------------------------------------------- */

struct rows {
	int n;
	struct moat_val first[16];
	char text[4][64];
};

static moat_err rows_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct rows *r = arg;
	size_t i;

	if (r->n == 0) {
		for (i = 0; i < ncols && i < 16; i++) {
			r->first[i] = cols[i];
			/* values live only during the call: keep short texts */
			if ((cols[i].type == MOAT_VAL_TEXT || cols[i].type == MOAT_VAL_BLOB) &&
			    i < 4 && cols[i].len < 64) {
				memcpy(r->text[i], cols[i].p, cols[i].len);
				r->text[i][cols[i].len] = '\0';
				r->first[i].p = r->text[i];
			}
		}
	}
	r->n++;
	return MOAT_OK;
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct moat_store *st;
	struct moat_store_batch *b;
	struct moat_val v[8];
	struct rows r;
	uint8_t big[1000];
	int64_t n;

	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);

	b = batch();
	add_msg(b, 1, "d/dev/temp", 0);
	add_delivery(b, "a", 1, 1, 0);
	v[0] = moat_val_text("a", 1);
	v[1] = moat_val_text("$share/g/d/+/temp", 17);
	v[2] = moat_val_int(0x15);
	v[3] = moat_val_int(268435455);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(SUB_PUT), v, 4), MOAT_OK);
	v[0] = moat_val_text("d/dev/temp", 10);
	v[1] = moat_val_int(1);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(RETAINED_PUT), v, 2), MOAT_OK);
	v[0] = moat_val_text("b", 1);
	v[1] = moat_val_int(65535);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 2), MOAT_OK);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 2), MOAT_OK);
	/* misuse is refused at add time */
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 1), MOAT_E_INVAL);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(LOAD_SUBS), NULL, 0), MOAT_E_INVAL);
	assert_int_equal(
	    moat_store_batch_add(b, MOAT_STMT(&moat_mqtt_store, MQTT_STMT__COUNT), NULL, 0),
	    MOAT_E_INVAL);
	v[0] = moat_val_blob(NULL, 5);
	v[1] = moat_val_int(1);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 2), MOAT_E_INVAL);
	v[0] = moat_val_blob(big, MOAT_MAX_PACKET_SIZE_MAX + 1u);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 2), MOAT_E_TOO_LARGE);
	assert_int_equal(run(st, b), MOAT_OK);

	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_SESSIONS), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.first[0].type, MOAT_VAL_TEXT);
	assert_string_equal(r.text[0], "a");
	assert_string_equal(r.text[1], "dev");
	assert_int_equal(r.first[2].i, 5);
	assert_int_equal(r.first[4].type, MOAT_VAL_NULL);
	assert_int_equal(r.first[6].type, MOAT_VAL_BLOB);
	assert_int_equal(r.first[6].len, 3);
	assert_int_equal(r.first[7].type, MOAT_VAL_NULL);

	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_SUBS), NULL, 0, rows_cb, &r), MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[1], "$share/g/d/+/temp");
	assert_int_equal(r.first[2].i, 0x15);
	assert_int_equal(r.first[3].i, 268435455);

	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_DELIVERIES), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.first[7].type, MOAT_VAL_BLOB); /* empty blob stays a blob */
	assert_int_equal(r.first[7].len, 0);
	assert_non_null(r.first[7].p);

	memset(&r, 0, sizeof(r));
	v[0] = moat_val_int(1);
	assert_int_equal(moat_store_read(st, MQTT_STMT(MSG_GET), v, 1, rows_cb, &r), MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[1], "d/dev/temp");
	assert_string_equal(r.text[2], "payload-1");
	assert_int_equal(r.first[3].len, 2);
	assert_int_equal(r.first[6].type, MOAT_VAL_NULL);

	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_QOS2_IN), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.first[1].i, 65535);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_RETAINED), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 1);

	/* reads refuse writes and wrong arity */
	assert_int_equal(moat_store_read(st, MQTT_STMT(MSG_PUT), NULL, 0, rows_cb, &r),
			 MOAT_E_INVAL);
	assert_int_equal(moat_store_read(st, MQTT_STMT(MSG_GET), NULL, 0, rows_cb, &r),
			 MOAT_E_INVAL);
	v[0] = moat_val_int(99);
	assert_int_equal(moat_store_read_int(st, MQTT_STMT(MSG_GET), v, 1, &n), MOAT_E_NOTFOUND);

	/* upsert keeps children; delete cascades */
	b = batch();
	add_session(b, "a", 0);
	assert_int_equal(run(st, b), MOAT_OK);
	assert_int_equal(count_sql("SELECT count(*) FROM subscriptions"), 1);
	b = batch();
	v[0] = moat_val_text("a", 1);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(SESSION_DEL), v, 1), MOAT_OK);
	v[0] = moat_val_int(1);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(MSG_GC), v, 1), MOAT_OK);
	assert_int_equal(run(st, b), MOAT_OK);
	assert_int_equal(count_sql("SELECT count(*) FROM subscriptions"), 0);
	assert_int_equal(count_sql("SELECT count(*) FROM deliveries"), 0);
	/* still retained: not collected */
	assert_int_equal(count_sql("SELECT count(*) FROM messages"), 1);
	assert_check_ok(st);
	moat_store_close(st);
}

static void test_expiry(void **state)
{
	(void)state;
	struct moat_store *st;
	struct moat_store_batch *b;
	struct moat_val v[4];
	const int64_t now = 1700000000000;

	st = open_store(MOAT_STORE_STRICT, 0);
	b = batch();
	add_session(b, "gone", now - 1);
	add_session(b, "stays", now + 60000);
	add_msg(b, 1, "t/old", now - 5);   /* expired */
	add_msg(b, 2, "t/new", now + 5);   /* alive */
	add_msg(b, 3, "t/ret", now - 5);   /* expired, retained only */
	add_delivery(b, "gone", 1, 2, 0);  /* goes with its session */
	add_delivery(b, "stays", 1, 1, 0); /* queued, expired: removed */
	add_delivery(b, "stays", 2, 1, 1); /* in flight, expired: kept */
	add_delivery(b, "stays", 3, 2, 0); /* alive */
	v[0] = moat_val_text("t/ret", 5);
	v[1] = moat_val_int(3);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(RETAINED_PUT), v, 2), MOAT_OK);
	v[0] = moat_val_text("gone", 4);
	v[1] = moat_val_text("#", 1);
	v[2] = moat_val_int(1);
	v[3] = moat_val_int(0);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(SUB_PUT), v, 4), MOAT_OK);
	v[1] = moat_val_int(9);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(QOS2_IN_PUT), v, 2), MOAT_OK);
	assert_int_equal(run(st, b), MOAT_OK);

	/* the sweep is one batch */
	b = batch();
	v[0] = moat_val_int(now);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(EXPIRE_SESSIONS), v, 1), MOAT_OK);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(EXPIRE_QUEUED), v, 1), MOAT_OK);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(EXPIRE_RETAINED), v, 1), MOAT_OK);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(MSG_GC_ALL), NULL, 0), MOAT_OK);
	assert_int_equal(run(st, b), MOAT_OK);

	assert_int_equal(count_sql("SELECT count(*) FROM sessions WHERE client_id = 'gone'"), 0);
	assert_int_equal(count_sql("SELECT count(*) FROM subscriptions"), 0);
	assert_int_equal(count_sql("SELECT count(*) FROM qos2_in"), 0);
	assert_int_equal(count_sql("SELECT count(*) FROM deliveries WHERE seq IN (2, 3)"), 2);
	assert_int_equal(count_sql("SELECT count(*) FROM deliveries"), 2);
	assert_int_equal(count_sql("SELECT count(*) FROM retained"), 0);
	/* 1 kept by its in-flight delivery, 2 alive, 3 collected */
	assert_int_equal(count_sql("SELECT count(*) FROM messages"), 2);
	assert_int_equal(count_sql("SELECT count(*) FROM messages WHERE id = 3"), 0);
	/* a message id is never reused */
	b = batch();
	add_msg(b, 1, "dup", 0);
	assert_int_equal(run(st, b), MOAT_E_EXISTS);
	assert_check_ok(st);
	moat_store_close(st);
}

/* ---- group commit ------------------------------------------------------ */

#define GC_THREADS 8
#define GC_PER_THREAD 200

struct gc_arg {
	struct moat_store *st;
	int idx;
	bool wait_each;
	struct done *d;
};

static void *gc_thread(void *p)
{
	struct gc_arg *a = p;
	struct moat_store_batch *b;
	struct done own;
	int i;
	int64_t id;

	done_init(&own);
	for (i = 0; i < GC_PER_THREAD; i++) {
		id = (int64_t)a->idx * 100000 + i + 1 + (a->wait_each ? 0 : 50000);
		b = NULL;
		if (moat_store_batch_new(&b) != MOAT_OK)
			abort();
		add_msg(b, id, "d/dev/t", 0);
		add_delivery(b, "a", id, id, 0);
		add_delivery(b, "b", id, id, 0);
		if (a->wait_each) {
			if (moat_store_submit(a->st, b, done_cb, &own) != MOAT_OK)
				abort();
			done_wait(&own, i + 1);
		} else if (moat_store_submit(a->st, b, done_cb, a->d) != MOAT_OK) {
			abort();
		}
	}
	if (own.failed != 0)
		abort();
	done_destroy(&own);
	return NULL;
}

static void group_commit_run(struct moat_store *st, bool wait_each, const char *what)
{
	pthread_t t[GC_THREADS];
	struct gc_arg a[GC_THREADS];
	struct moat_store_stats s0, s1;
	struct timespec t0, t1;
	struct done d;
	double secs;
	int i;

	done_init(&d);
	moat_store_stats(st, &s0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < GC_THREADS; i++) {
		a[i] = (struct gc_arg){st, i, wait_each, &d};
		assert_int_equal(pthread_create(&t[i], NULL, gc_thread, &a[i]), 0);
	}
	for (i = 0; i < GC_THREADS; i++)
		pthread_join(t[i], NULL);
	if (!wait_each)
		done_wait(&d, GC_THREADS * GC_PER_THREAD);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	moat_store_stats(st, &s1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr,
		"group commit (%s, %d threads): batches=%llu transactions=%llu fsyncs=%llu "
		"%.0f batches/s\n",
		what, GC_THREADS, (unsigned long long)(s1.batches - s0.batches),
		(unsigned long long)(s1.transactions - s0.transactions),
		(unsigned long long)(s1.fsyncs - s0.fsyncs),
		(double)(s1.batches - s0.batches) / secs);
	assert_int_equal(d.failed, 0);
	assert_int_equal(s1.batches - s0.batches, GC_THREADS * GC_PER_THREAD);
	assert_int_equal(s1.batches_failed, s0.batches_failed);
	/* far fewer transactions than batches */
	assert_true((s1.transactions - s0.transactions) * 2 < s1.batches - s0.batches);
	done_destroy(&d);
}

static void test_group_commit(void **state)
{
	(void)state;
	struct moat_store *st;

	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);
	group_commit_run(st, true, "strict, each waits");
	group_commit_run(st, false, "strict, burst");
	assert_int_equal(count_sql("SELECT count(*) FROM messages"),
			 2 * GC_THREADS * GC_PER_THREAD);
	assert_int_equal(count_sql("SELECT count(*) FROM deliveries"),
			 4 * GC_THREADS * GC_PER_THREAD);
	assert_check_ok(st);
	moat_store_close(st);
}

/* Strict with a commit window: a batch that arrives soon after the one
 * before waits for the window, and the batches arriving within it share
 * its commit (one transaction, one fsync); the first batch after a quiet
 * spell commits at once. */
static void test_commit_window(void **state)
{
	struct moat_store_opts o = {0};
	struct moat_store_stats s0, s1;
	struct moat_store *st = NULL;
	struct moat_store_batch *b;
	struct timespec ms = {0, 1000000L};
	struct done d;
	char err[256], cid[16];
	int i;

	(void)state;
	o.path = dbpath;
	o.durability = MOAT_STORE_STRICT;
	o.commit_window_us = MOAT_STORE_COMMIT_WINDOW_US_MAX;
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_OK);
	done_init(&d);
	/* Quiet before: committed alone, at once. */
	b = batch();
	add_session(b, "w0", 0);
	assert_int_equal(moat_store_submit(st, b, done_cb, &d), MOAT_OK);
	done_wait(&d, 1);
	moat_store_stats(st, &s0);
	/* Three more, 1 ms apart: the first of them comes within the window
	 * of w0, so it waits, and the other two join it. */
	for (i = 1; i <= 3; i++) {
		b = batch();
		snprintf(cid, sizeof(cid), "w%d", i);
		add_session(b, cid, 0);
		assert_int_equal(moat_store_submit(st, b, done_cb, &d), MOAT_OK);
		nanosleep(&ms, NULL);
	}
	done_wait(&d, 4);
	moat_store_stats(st, &s1);
	assert_int_equal(d.failed, 0);
	assert_int_equal(s1.transactions - s0.transactions, 1);
	assert_int_equal(count_sql("SELECT count(*) FROM sessions"), 4);
	done_destroy(&d);
	moat_store_close(st);
}

/* One failing batch in a group does not sink its neighbours. */
static void test_savepoint_isolation(void **state)
{
	(void)state;
	struct moat_store *st;
	struct moat_store_batch *b;
	struct moat_store_stats s0, s1;
	struct done d[3];
	int i;

	/* relaxed with a long interval so the three land in one group */
	st = open_store(MOAT_STORE_RELAXED, 500);
	setup_sessions(st);
	assert_int_equal(publish(st, 7), MOAT_OK);
	moat_store_stats(st, &s0);
	for (i = 0; i < 3; i++)
		done_init(&d[i]);
	b = batch();
	add_msg(b, 8, "t", 0);
	add_delivery(b, "a", 8, 8, 0);
	assert_int_equal(moat_store_submit(st, b, done_cb, &d[0]), MOAT_OK);
	b = batch();
	add_msg(b, 9, "t", 0);	       /* this part would succeed... */
	add_delivery(b, "a", 7, 9, 0); /* ...but seq 7 of "a" exists */
	assert_int_equal(moat_store_submit(st, b, done_cb, &d[1]), MOAT_OK);
	b = batch();
	add_msg(b, 10, "t", 0);
	add_delivery(b, "nobody", 1, 10, 0); /* foreign key: no such session */
	assert_int_equal(moat_store_submit(st, b, done_cb, &d[2]), MOAT_OK);
	b = batch();
	add_msg(b, 11, "t", 0);
	assert_int_equal(run(st, b), MOAT_OK);
	for (i = 0; i < 3; i++)
		done_wait(&d[i], 1);
	moat_store_stats(st, &s1);
	assert_int_equal(d[0].rc, MOAT_OK);
	assert_int_equal(d[1].rc, MOAT_E_EXISTS);
	assert_int_equal(d[2].rc, MOAT_E_INVAL);
	assert_int_equal(s1.transactions - s0.transactions, 1);
	assert_int_equal(s1.batches_failed - s0.batches_failed, 2);
	assert_int_equal(s1.errors, s0.errors); /* not storage errors */
	assert_int_equal(count_sql("SELECT count(*) FROM messages WHERE id IN (8, 11)"), 2);
	assert_int_equal(count_sql("SELECT count(*) FROM messages WHERE id IN (9, 10)"), 0);
	for (i = 0; i < 3; i++)
		done_destroy(&d[i]);
	assert_check_ok(st);
	moat_store_close(st);
}

/* ---- durability modes -------------------------------------------------- */

static void test_strict_vs_relaxed(void **state)
{
	(void)state;
	struct moat_store *st;
	struct moat_store_stats s0, s1;
	struct timespec t0, t1;
	struct done d;
	struct moat_store_batch *b;
	double ms;
	int i;

	/* strict: every commit is synced before its completion */
	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);
	moat_store_stats(st, &s0);
	for (i = 0; i < 20; i++)
		assert_int_equal(publish(st, i + 1), MOAT_OK);
	moat_store_stats(st, &s1);
	assert_int_equal(s1.commits - s0.commits, 20);
	assert_true(s1.fsyncs - s0.fsyncs >= 20);
	fprintf(stderr, "strict: 20 sequential batches: commits=%llu fsyncs=%llu\n",
		(unsigned long long)(s1.commits - s0.commits),
		(unsigned long long)(s1.fsyncs - s0.fsyncs));
	moat_store_close(st);

	/* relaxed: no sync at commit; at most one commit per interval, each
	 * completion within about one interval */
	st = open_store(MOAT_STORE_RELAXED, 50);
	moat_store_stats(st, &s0);
	done_init(&d);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 200; i++) {
		b = batch();
		add_msg(b, 1000 + i, "t", 0);
		assert_int_equal(moat_store_submit(st, b, done_cb, &d), MOAT_OK);
		usleep(1000);
	}
	done_wait(&d, 200);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	moat_store_stats(st, &s1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	fprintf(stderr, "relaxed(50 ms): 200 batches over %.0f ms: transactions=%llu fsyncs=%llu\n",
		ms, (unsigned long long)(s1.transactions - s0.transactions),
		(unsigned long long)(s1.fsyncs - s0.fsyncs));
	assert_int_equal(d.failed, 0);
	assert_true(s1.transactions - s0.transactions <= (uint64_t)(ms / 50.0) + 2);
	/* only the header of a freshly started WAL is synced, never a commit */
	assert_true(s1.fsyncs - s0.fsyncs < s1.transactions - s0.transactions);
	assert_int_equal(count_sql("SELECT count(*) FROM messages WHERE id >= 1000"), 200);
	done_destroy(&d);
	/* close commits what is pending */
	done_init(&d);
	b = batch();
	add_msg(b, 5000, "t", 0);
	assert_int_equal(moat_store_submit(st, b, done_cb, &d), MOAT_OK);
	moat_store_close(st);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.rc, MOAT_OK);
	assert_int_equal(count_sql("SELECT count(*) FROM messages WHERE id = 5000"), 1);
	done_destroy(&d);
}

static void test_submit_after_close_and_checkpoint(void **state)
{
	(void)state;
	struct moat_store *st;
	struct done d;
	struct stat sb;
	char p[400];
	int i;

	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);
	for (i = 0; i < 50; i++)
		assert_int_equal(publish(st, i + 1), MOAT_OK);
	done_init(&d);
	assert_int_equal(moat_store_checkpoint(st, done_cb, &d), MOAT_OK);
	done_wait(&d, 1);
	assert_int_equal(d.rc, MOAT_OK);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_size, 0); /* truncated */
	assert_int_equal(moat_store_submit(st, NULL, done_cb, &d), MOAT_E_INVAL);
	done_destroy(&d);
	moat_store_close(st);
}

/* ---- faults ------------------------------------------------------------ */

/*
 * For each failing call (write, sync, truncate), each kind (full, I/O) and
 * each position (the 1st, 2nd... such call of a publish and a checkpoint),
 * transient (one call) and persistent (until cleared): the completion says
 * whether it committed, the readers agree, the database stays consistent
 * and the store works again once the fault clears.
 */
static void torture(enum moat_store_io op, enum moat_store_fault kind, long count, int *failed,
		    int *ck_failed, int *iters)
{
	struct moat_store *st;
	struct done ck;
	int64_t id = 1;
	long skip, fired;
	moat_err rc;

	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);
	for (skip = 0;; skip++) {
		(*iters)++;
		done_init(&ck);
		fault_arm(op, kind, skip, count);
		rc = publish(st, id);
		/* a checkpoint too: its writes, sync and truncate */
		assert_int_equal(moat_store_checkpoint(st, done_cb, &ck), MOAT_OK);
		done_wait(&ck, 1);
		fired = fault_disarm();
		if (ck.rc != MOAT_OK)
			(*ck_failed)++;
		if (rc != MOAT_OK) {
			(*failed)++;
			assert_true(rc ==
				    (kind == MOAT_STORE_FAULT_FULL ? MOAT_E_FULL : MOAT_E_IO));
		}
		/* committed if and only if reported so */
		assert_int_equal(visible(st, id), rc == MOAT_OK);
		assert_check_ok(st);
		/* recovered: the same message goes in now */
		if (rc != MOAT_OK)
			assert_int_equal(publish(st, id), MOAT_OK);
		assert_true(visible(st, id));
		id++;
		done_destroy(&ck);
		if (fired == 0)
			break;
		assert_true(skip < 200);
	}
	moat_store_close(st);
	/* and it reopens clean */
	st = open_store(MOAT_STORE_STRICT, 0);
	assert_check_ok(st);
	assert_int_equal(count_sql("SELECT count(*) FROM messages"), id - 1);
	moat_store_close(st);
	unlink(dbpath);
}

static void test_fault_torture(void **state)
{
	(void)state;
	static const enum moat_store_io ops[] = {MOAT_STORE_IO_WRITE, MOAT_STORE_IO_SYNC,
						 MOAT_STORE_IO_TRUNCATE};
	static const char *const names[] = {"write", "sync", "truncate"};
	static const enum moat_store_fault kinds[] = {MOAT_STORE_FAULT_FULL, MOAT_STORE_FAULT_IO};
	size_t i, k;
	int failed, ck_failed, iters;

	for (i = 0; i < 3; i++) {
		for (k = 0; k < 2; k++) {
			failed = ck_failed = iters = 0;
			torture(ops[i], kinds[k], 1, &failed, &ck_failed, &iters);
			torture(ops[i], kinds[k], -1, &failed, &ck_failed, &iters);
			fprintf(stderr,
				"fault %s/%s: %d runs, %d publishes and %d checkpoints failed\n",
				names[i], kinds[k] == MOAT_STORE_FAULT_FULL ? "full" : "io", iters,
				failed, ck_failed);
			/* writes and syncs sit on the commit path; truncates only
			 * on the checkpoint's */
			if (ops[i] != MOAT_STORE_IO_TRUNCATE)
				assert_true(failed > 0);
			assert_true(ck_failed > 0);
		}
	}
}

/* Another connection holds the write lock past the busy timeout. */
static void test_busy(void **state)
{
	(void)state;
	struct moat_store *st;
	sqlite3 *db = NULL;
	struct moat_store_stats s;

	st = open_store(MOAT_STORE_STRICT, 0);
	setup_sessions(st);
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(publish(st, 1), MOAT_E_BUSY);
	assert_false(visible(st, 1));
	moat_store_stats(st, &s);
	assert_int_equal(s.errors, 1);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(publish(st, 1), MOAT_OK);
	assert_true(visible(st, 1));
	assert_check_ok(st);
	moat_store_close(st);
}

/* ---- modules: registration, per-module migrations, old databases ------- */

static void exec_file_sql(const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	int code;

	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	code = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (code != SQLITE_OK)
		fprintf(stderr, "sql: %s\n", msg != NULL ? msg : "?");
	sqlite3_free(msg);
	sqlite3_close(db);
	assert_int_equal(code, SQLITE_OK);
}

static int64_t module_version_in_db(const char *module)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
		 "SELECT coalesce(max(version), 0) FROM module_versions WHERE module = '%s'",
		 module);
	return count_sql(sql);
}

static moat_err try_open(const struct moat_store_module *const *mods, size_t n, char *err,
			 size_t errlen, struct moat_store **out)
{
	struct moat_store_opts o = {.path = dbpath, .modules = mods, .n_modules = n};

	*out = NULL;
	return moat_store_open(&o, out, err, errlen);
}

/* A database written by the code before modules owned their tables (a dump
 * of one made by `moat init`, `moat cert issue` and broker rows): it opens,
 * is converted to per-module versions, and every row is still there and
 * readable through the owning modules' statements. */
static void test_legacy_database_converted(void **state)
{
	(void)state;
	char path[512], *sql;
	const char *slash;
	struct moat_store *st;
	struct rows r;
	struct moat_val v[3];
	FILE *f;
	long len;
	int64_t n = 0;
	size_t i;

	slash = strrchr(__FILE__, '/');
	assert_non_null(slash);
	snprintf(path, sizeof(path), "%.*s/fixtures/moat-v5.sql", (int)(slash - __FILE__),
		 __FILE__);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len > 0);
	rewind(f);
	sql = calloc(1, (size_t)len + 1);
	assert_non_null(sql);
	assert_int_equal(fread(sql, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	exec_file_sql(sql);
	free(sql);
	assert_int_equal(count_sql("SELECT max(version) FROM schema_version"), 5);

	st = open_store(MOAT_STORE_STRICT, 0);
	assert_int_equal(count_sql("SELECT max(version) FROM schema_version"),
			 moat_store_schema_version());
	assert_int_equal(module_version_in_db("mqtt"), 1);
	assert_int_equal(module_version_in_db("auth"), 1);
	assert_int_equal(module_version_in_db("audit"), 1);
	assert_int_equal(module_version_in_db("registry"), 3);
	for (i = 0; i < moat_store_n_modules; i++)
		assert_int_equal(module_version_in_db(moat_store_modules[i]->name),
				 moat_store_module_version(moat_store_modules[i]));
	assert_check_ok(st);

	/* the broker's rows */
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_SESSIONS), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[0], "dev-1");
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_DELIVERIES), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.first[2].i, 7);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, MQTT_STMT(LOAD_RETAINED), NULL, 0, rows_cb, &r),
			 MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[0], "d/dev-1/state");
	/* the registry's, the PKI's, the audit log's, the operators' */
	v[0] = moat_val_text("dev-1", 5);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, REG_STMT(ID_GET), v, 1, rows_cb, &r), MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[2], "active");
	assert_int_equal(r.first[9].type, MOAT_VAL_INT); /* its certificate's expiry */
	v[0] = moat_val_text("devices", 7);
	assert_int_equal(moat_store_read_int(st, REG_STMT(GROUP_EXISTS), v, 1, &n), MOAT_OK);
	assert_int_equal(n, 1);
	v[0] = moat_val_null();
	v[1] = moat_val_text("", 0);
	v[2] = moat_val_int(10);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, REG_STMT(CERT_LIST), v, 3, rows_cb, &r), MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[1], "dev-1");
	v[0] = moat_val_text("acme", 4);
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, REG_STMT(MCA_SCOPE), v, 1, rows_cb, &r), MOAT_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.text[0], "acme-*");
	memset(&r, 0, sizeof(r));
	assert_int_equal(moat_store_read(st, AUDIT_STMT(AUDIT_ALL), NULL, 0, rows_cb, &r), MOAT_OK);
	assert_int_equal(r.n, 1);
	v[0] = moat_val_null();
	assert_int_equal(moat_store_read_int(st, AUTH_STMT(OP_COUNT), v, 1, &n), MOAT_OK);
	assert_int_equal(n, 0);
	moat_store_close(st);

	/* converted once: reopening changes nothing */
	n = count_sql("SELECT count(*) FROM module_versions");
	st = open_store(MOAT_STORE_STRICT, 0);
	moat_store_close(st);
	assert_int_equal(count_sql("SELECT count(*) FROM module_versions"), n);
	assert_int_equal(count_sql("SELECT count(*) FROM schema_version"), 6);
}

/* A database at old global version 3 (before certificates.revoke_at and
 * manufacturer CA scopes): converted to registry 1, then the registry's
 * steps 2 and 3 run and the certificate row keeps its data. */
static void test_legacy_v3_upgraded(void **state)
{
	(void)state;
	const struct moat_store_module *const old3[] = {&moat_mqtt_store, &moat_auth_store,
							&moat_audit_store, &moat_registry_store};
	struct moat_store *st;
	size_t i;

	exec_file_sql("PRAGMA application_id = 1297039700; CREATE TABLE schema_version (version "
		      "INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT "
		      "NULL) STRICT; INSERT INTO schema_version VALUES (1, 'a', 0), (2, 'b', 0), "
		      "(3, 'c', 0)");
	for (i = 0; i < sizeof(old3) / sizeof(old3[0]); i++)
		exec_file_sql(old3[i]->migrations[0].sql);
	exec_file_sql("INSERT INTO certificates (serial, identity, fingerprint, not_before, "
		      "not_after, issued_at) VALUES ('0a', 'dev-9', 'ff', 1, 2, 3)");
	st = open_store(MOAT_STORE_STRICT, 0);
	assert_int_equal(module_version_in_db("registry"), 3);
	assert_int_equal(module_version_in_db("mqtt"), 1);
	assert_int_equal(count_sql("SELECT count(*) FROM module_versions WHERE module = "
				   "'registry'"),
			 3);
	assert_int_equal(count_sql("SELECT count(*) FROM certificates WHERE serial = '0a' AND "
				   "identity = 'dev-9' AND revoke_at IS NULL"),
			 1);
	assert_int_equal(count_sql("SELECT count(*) FROM pragma_table_info('manufacturer_cas') "
				   "WHERE name IN ('devices', 'group_name')"),
			 2);
	assert_check_ok(st);
	moat_store_close(st);
}

/* A test module with its own table, statements and migrations. */
enum { T_PUT = 0, T_GET, T_COUNT };
static const struct moat_store_stmt t_stmts[T_COUNT] = {
    [T_PUT] = {MOAT_STORE_WRITE, 2, "INSERT INTO t_kv (k, v) VALUES ($1, $2)"},
    [T_GET] = {MOAT_STORE_READ, 1, "SELECT v FROM t_kv WHERE k = $1"},
};
static const struct moat_store_migration t_migrations[] = {
    {1, "t_kv", "CREATE TABLE t_kv (k TEXT PRIMARY KEY NOT NULL, v INTEGER) STRICT"},
    {2, "t_kv index", "CREATE INDEX t_kv_v ON t_kv (v)"},
};
static const struct moat_store_module t_v1 = {"test", t_stmts, T_COUNT, t_migrations, 1};
static const struct moat_store_module t_v2 = {"test", t_stmts, T_COUNT, t_migrations, 2};

static void test_module_registration(void **state)
{
	(void)state;
	const struct moat_store_module *const v1[] = {&t_v1};
	const struct moat_store_module *const v2[] = {&t_v2};
	const struct moat_store_module *const twice[] = {&t_v1, &t_v2};
	const struct moat_store_module *const with_mqtt[] = {&t_v2, &moat_mqtt_store};
	static const struct moat_store_migration gap[] = {{2, "gap", "SELECT 1"}};
	const struct moat_store_module t_gap = {"gap", t_stmts, T_COUNT, gap, 1};
	const struct moat_store_module *const bad[] = {&t_gap};
	struct moat_store_batch *b;
	struct moat_store *st;
	struct moat_val v[2];
	char err[512];
	int64_t n = 0;

	/* a statement that does not prepare (no such table) fails the open */
	static const struct moat_store_stmt nope[] = {
	    {MOAT_STORE_READ, 0, "SELECT v FROM no_such_table"}};
	const struct moat_store_module t_nope = {"nope", nope, 1, NULL, 0};
	const struct moat_store_module *const bad_sql[] = {&t_nope};

	assert_int_not_equal(try_open(bad_sql, 1, err, sizeof(err), &st), MOAT_OK);
	assert_null(st);
	assert_non_null(strstr(err, "cannot prepare"));

	/* bad descriptions fail at open */
	assert_int_equal(try_open(twice, 2, err, sizeof(err), &st), MOAT_E_INVAL);
	assert_non_null(strstr(err, "registered twice"));
	assert_int_equal(try_open(bad, 1, err, sizeof(err), &st), MOAT_E_INVAL);
	assert_int_equal(try_open(v1, 0, err, sizeof(err), &st), MOAT_E_INVAL);

	/* a module's own statements, prepared from its own table */
	assert_int_equal(try_open(v1, 1, err, sizeof(err), &st), MOAT_OK);
	assert_int_equal(module_version_in_db("test"), 1);
	b = batch();
	v[0] = moat_val_text("k", 1);
	v[1] = moat_val_int(5);
	assert_int_equal(moat_store_batch_add(b, MOAT_STMT(&t_v1, T_PUT), v, 2), MOAT_OK);
	assert_int_equal(run(st, b), MOAT_OK);
	assert_int_equal(moat_store_read_int(st, MOAT_STMT(&t_v1, T_GET), v, 1, &n), MOAT_OK);
	assert_int_equal(n, 5);
	/* a statement of a module this store does not hold: refused */
	assert_int_equal(moat_store_read_int(st, MQTT_STMT(MSG_MAX_ID), NULL, 0, &n), MOAT_E_INVAL);
	b = batch();
	v[0] = moat_val_text("a", 1);
	assert_int_equal(moat_store_batch_add(b, MQTT_STMT(SESSION_DEL), v, 1), MOAT_OK);
	assert_int_equal(run(st, b), MOAT_E_INVAL);
	moat_store_close(st);

	/* the module's next step runs; its data stays */
	assert_int_equal(try_open(v2, 1, err, sizeof(err), &st), MOAT_OK);
	assert_int_equal(module_version_in_db("test"), 2);
	v[0] = moat_val_text("k", 1);
	assert_int_equal(moat_store_read_int(st, MOAT_STMT(&t_v2, T_GET), v, 1, &n), MOAT_OK);
	assert_int_equal(n, 5);
	moat_store_close(st);

	/* older code for that module: refused, per module */
	assert_int_equal(try_open(v1, 1, err, sizeof(err), &st), MOAT_E_VERSION);
	assert_null(st);
	assert_string_equal(err, "database schema version 2 of module test is newer than this moat "
				 "(knows up to 1); use a newer moat or restore a backup");

	/* a module added later gets its tables; a database with tables of a
	 * module the code does not know is refused */
	assert_int_equal(try_open(with_mqtt, 2, err, sizeof(err), &st), MOAT_OK);
	assert_int_equal(module_version_in_db("mqtt"), 1);
	moat_store_close(st);
	assert_int_equal(try_open(v2, 1, err, sizeof(err), &st), MOAT_E_VERSION);
	assert_non_null(strstr(err, "module mqtt"));
}

/* Every module of moat: described correctly, and a newer version of any
 * one of them is refused. */
static void test_module_newer_refused(void **state)
{
	(void)state;
	struct moat_store *st;
	char err[512], sql[200];

	st = open_store(MOAT_STORE_STRICT, 0);
	moat_store_close(st);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO module_versions VALUES ('registry', %d, 'from the future', 0)",
		 moat_store_module_version(&moat_registry_store) + 1);
	exec_file_sql(sql);
	assert_int_equal(try_open(NULL, 0, err, sizeof(err), &st), MOAT_E_VERSION);
	assert_null(st);
	assert_non_null(strstr(err, "of module registry is newer than this moat"));
}

/* Rows are decoded by the owning module into named fields; a row that is
 * not what the schema says is refused, never read by position. */
struct ident_seen {
	int n;
	char id[32], state[32];
	int64_t created;
	bool first_seen_null;
};

static moat_err ident_decode_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct ident_seen *s = arg;
	struct moat_reg_identity_row r;
	moat_err rc = moat_reg_identity_row_decode(cols, ncols, &r);

	if (rc != MOAT_OK)
		return rc;
	snprintf(s->id, sizeof(s->id), "%.*s", (int)r.id.len, (const char *)r.id.p);
	snprintf(s->state, sizeof(s->state), "%.*s", (int)r.state.len, (const char *)r.state.p);
	s->created = r.created_at.i;
	s->first_seen_null = r.first_seen.type == MOAT_VAL_NULL;
	s->n++;
	return MOAT_OK;
}

static moat_err msg_decode_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_mqtt_msg_row r;
	int64_t *id = arg;
	moat_err rc = moat_mqtt_msg_row_decode(cols, ncols, &r);

	if (rc == MOAT_OK)
		*id = r.id.i;
	return rc;
}

static void test_row_decoders(void **state)
{
	(void)state;
	struct moat_store *st;
	struct moat_store_batch *b;
	struct moat_val v[4], row[10];
	struct moat_reg_identity_row ir;
	struct moat_auth_setup_row sr;
	struct ident_seen seen = {0};
	int64_t n;
	size_t i;

	st = open_store(MOAT_STORE_STRICT, 0);
	b = batch();
	v[0] = moat_val_text("dev-7", 5);
	v[1] = moat_val_text("device", 6);
	v[2] = moat_val_text("registered", 10);
	v[3] = moat_val_int(1234);
	assert_int_equal(moat_store_batch_add(b, REG_STMT(ID_INSERT), v, 4), MOAT_OK);
	assert_int_equal(run(st, b), MOAT_OK);
	assert_int_equal(moat_store_read(st, REG_STMT(ID_GET), v, 1, ident_decode_cb, &seen),
			 MOAT_OK);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.id, "dev-7");
	assert_string_equal(seen.state, "registered");
	assert_int_equal(seen.created, 1234);
	assert_true(seen.first_seen_null);
	setup_sessions(st);
	assert_int_equal(publish(st, 9), MOAT_OK);
	v[0] = moat_val_int(9);
	n = 0;
	assert_int_equal(moat_store_read(st, MQTT_STMT(MSG_GET), v, 1, msg_decode_cb, &n), MOAT_OK);
	assert_int_equal(n, 9);
	moat_store_close(st);

	/* the wrong number of columns, a wrong type, NULL where none may be */
	for (i = 0; i < 10; i++)
		row[i] = moat_val_text("x", 1);
	row[3] = row[4] = moat_val_int(1);
	row[5] = row[6] = row[9] = moat_val_null();
	assert_int_equal(moat_reg_identity_row_decode(row, 10, &ir), MOAT_OK);
	assert_int_equal(moat_reg_identity_row_decode(row, 9, &ir), MOAT_E_CORRUPT);
	row[3] = moat_val_text("1", 1);
	assert_int_equal(moat_reg_identity_row_decode(row, 10, &ir), MOAT_E_CORRUPT);
	row[3] = moat_val_int(1);
	row[0] = moat_val_null();
	assert_int_equal(moat_reg_identity_row_decode(row, 10, &ir), MOAT_E_CORRUPT);
	row[0] = moat_val_int(5);
	row[1] = moat_val_null();
	assert_int_equal(moat_auth_setup_row_decode(row, 2, &sr), MOAT_OK);
	assert_int_equal(sr.expires_at.i, 5);
	assert_int_equal(sr.used_at.type, MOAT_VAL_NULL);
	row[1] = moat_val_blob("", 0);
	assert_int_equal(moat_auth_setup_row_decode(row, 2, &sr), MOAT_E_CORRUPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_loose_mode_tightened, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_idempotent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_newer_version_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_garbage_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_opts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fault_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_window, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_savepoint_isolation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_strict_vs_relaxed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_after_close_and_checkpoint, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fault_torture, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_legacy_database_converted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_legacy_v3_upgraded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_module_registration, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_module_newer_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_row_decoders, setup, teardown),
	};

	/* failures are logged loudly by design; keep the test output readable */
	moat_log_set_level(MOAT_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
