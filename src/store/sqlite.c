/*
 * The SQLite backend of the store: two connections to one WAL-mode file,
 * the writer's (used by store.c's writer thread only after open) and the
 * reader's (serialised by a mutex, query_only). Owns the schema and its
 * migrations, statement preparation, value binding and error mapping.
 *
 * The file is created 0600 before SQLite sees it; SQLite gives the -wal and
 * -shm files the database's mode. Connections run in defensive mode with an
 * untrusted schema, so a tampered database file cannot make us run SQL
 * functions hidden in its schema.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/log.h"
#include "store/internal.h"
#include "store/sqlite_int.h"

/* PRAGMA application_id: 'MOAT'. Tells our database from any other SQLite
 * file that happens to sit at the configured path. */
#define SQ_APP_ID 0x4D4F4154

/* STRICT tables need SQLite 3.37. */
#define SQ_MIN_VERSION 3037000

/* Columns of the widest result row (the broker's LOAD_SESSIONS has 12). */
#define SQ_MAX_COLS 16

/*
 * Schema migrations belong to the modules (struct moat_store_module, each
 * module's schema.c): per module, dense versions from 1, applied in order,
 * each in its own transaction together with its module_versions row. The
 * store's own format version sits in the legacy schema_version table
 * (STORE_FORMAT_VERSION); a database of global versions 1..5 is converted
 * once (store_legacy_steps). A PostgreSQL backend keeps the same tables.
 */

enum sq_txn {
	SQ_BEGIN = 0,
	SQ_COMMIT,
	SQ_ROLLBACK,
	SQ_SAVEPOINT,
	SQ_RELEASE,
	SQ_ROLLBACK_TO,
	SQ_TXN__COUNT
};

static const char *const txn_sql[SQ_TXN__COUNT] = {
    [SQ_BEGIN] = "BEGIN IMMEDIATE", [SQ_COMMIT] = "COMMIT",	[SQ_ROLLBACK] = "ROLLBACK",
    [SQ_SAVEPOINT] = "SAVEPOINT b", [SQ_RELEASE] = "RELEASE b", [SQ_ROLLBACK_TO] = "ROLLBACK TO b",
};

struct sq_conn {
	sqlite3 *db;
	sqlite3_stmt **stmt; /* st->n_stmts, by the store's statement index */
	/* the SQLite index of parameter $k+1 */
	unsigned char (*pidx)[MOAT_STORE_MAX_PARAMS];
	unsigned n_stmts;
	char lasterr[256]; /* the last failure's text, for the log */
};

struct sq {
	struct store_vfs *vfs;
	const char *vfs_name;
	struct sq_conn w, r;
	sqlite3_stmt *txn[SQ_TXN__COUNT];
	pthread_mutex_t rlock;
	bool rlock_init;
};

int moat_store_schema_version(void)
{
	return STORE_FORMAT_VERSION;
}

static moat_err map_rc(int code)
{
	switch (code & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return MOAT_OK;
	case SQLITE_FULL:
		return MOAT_E_FULL;
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		return MOAT_E_IO;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return MOAT_E_BUSY;
	case SQLITE_NOMEM:
		return MOAT_E_NOMEM;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return MOAT_E_CORRUPT;
	case SQLITE_CONSTRAINT:
		if (code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE)
			return MOAT_E_EXISTS;
		return MOAT_E_INVAL;
	case SQLITE_TOOBIG:
		return MOAT_E_TOO_LARGE;
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
		return MOAT_E_INVAL;
	default:
		return MOAT_E_INTERNAL;
	}
}

/* Map code and keep the connection's message for the log. */
static moat_err sq_fail(struct sq_conn *c, int code)
{
	snprintf(c->lasterr, sizeof(c->lasterr), "%s (%d)", sqlite3_errmsg(c->db), code);
	return map_rc(code);
}

static int step_once(sqlite3_stmt *s)
{
	int code;

	code = sqlite3_step(s);
	sqlite3_reset(s);
	return code == SQLITE_DONE || code == SQLITE_ROW ? SQLITE_OK : code;
}

/* One integer from a one-row query on db; arg (NULL: none) is bound as
 * its text parameter $1. */
static int query_int(sqlite3 *db, const char *sql, const char *arg, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int code;

	code = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (code == SQLITE_OK && arg != NULL)
		code = sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
	if (code != SQLITE_OK)
		goto out;
	code = sqlite3_step(s);
	if (code == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		code = SQLITE_OK;
	} else if (code == SQLITE_DONE) {
		code = SQLITE_ERROR;
	}
out:
	sqlite3_finalize(s);
	return code;
}

static moat_err open_conn(struct moat_store *st, struct sq *sq, struct sq_conn *c, char *err,
			  size_t errlen)
{
	int code;
	moat_err rc;

	code = sqlite3_open_v2(st->path, &c->db,
			       SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
			       sq->vfs_name);
	if (code != SQLITE_OK) {
		rc = map_rc(code);
		store_seterr(err, errlen, "cannot open database %s: %s", st->path,
			     c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(code));
		return rc == MOAT_E_INTERNAL ? MOAT_E_IO : rc;
	}
	sqlite3_extended_result_codes(c->db, 1);
	/* A database file is input: no writable schema tricks, no SQL
	 * functions with side effects reachable from its schema. */
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	sqlite3_busy_timeout(c->db, (int)st->busy_ms);
	return MOAT_OK;
}

static moat_err prepare_conn(struct moat_store *st, struct sq_conn *c,
			     enum moat_store_stmt_kind kind)
{
	const struct moat_store_stmt *d;
	const char *mod;
	char name[16];
	unsigned i, k, sidx;
	int code, idx;
	moat_err rc = MOAT_E_NOMEM;

	c->stmt = calloc(st->n_stmts > 0 ? st->n_stmts : 1, sizeof(*c->stmt));
	c->pidx = calloc(st->n_stmts > 0 ? st->n_stmts : 1, sizeof(*c->pidx));
	if (c->stmt == NULL || c->pidx == NULL)
		goto out;
	c->n_stmts = st->n_stmts;
	rc = MOAT_E_INTERNAL;
	for (i = 0; i < st->n_stmts; i++) {
		d = st->stmts[i];
		if (d->kind != kind)
			continue;
		code = sqlite3_prepare_v3(c->db, d->sql, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
					  NULL);
		if (code != SQLITE_OK) {
			sq_fail(c, code);
			mod = store_stmt_module(st, i, &sidx);
			log_error("store_prepare_failed", "module=%s stmt=%u detail=\"%s\"", mod,
				  sidx, c->lasterr);
			goto out;
		}
		/* $1..$n, each present, nothing else: a table bug fails here at
		 * start-up rather than binding the wrong column later. */
		if (d->nparams > MOAT_STORE_MAX_PARAMS ||
		    sqlite3_bind_parameter_count(c->stmt[i]) != (int)d->nparams ||
		    (kind == MOAT_STORE_READ && sqlite3_column_count(c->stmt[i]) > SQ_MAX_COLS)) {
			mod = store_stmt_module(st, i, &sidx);
			log_error("store_prepare_failed",
				  "module=%s stmt=%u detail=\"parameter count\"", mod, sidx);
			goto out;
		}
		for (k = 0; k < d->nparams; k++) {
			snprintf(name, sizeof(name), "$%u", k + 1);
			idx = sqlite3_bind_parameter_index(c->stmt[i], name);
			if (idx <= 0 || idx > (int)MOAT_STORE_MAX_PARAMS) {
				mod = store_stmt_module(st, i, &sidx);
				log_error("store_prepare_failed",
					  "module=%s stmt=%u detail=\"missing %s\"", mod, sidx,
					  name);
				goto out;
			}
			c->pidx[i][k] = (unsigned char)idx;
		}
	}
	rc = MOAT_OK;
out:
	return rc;
}

static void close_conn(struct sq_conn *c)
{
	unsigned i;

	for (i = 0; i < c->n_stmts; i++)
		sqlite3_finalize(c->stmt[i]);
	free(c->stmt);
	free(c->pidx);
	c->stmt = NULL;
	c->pidx = NULL;
	c->n_stmts = 0;
	sqlite3_close_v2(c->db);
	c->db = NULL;
}

/* Create the file 0600 if it is missing, and tighten it if it is not. */
static moat_err create_file(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int fd;
	moat_err rc = MOAT_E_IO;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		store_seterr(err, errlen, "cannot open database %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &sb) != 0) {
		store_seterr(err, errlen, "cannot stat database %s: %s", path, strerror(errno));
		goto out;
	}
	rc = MOAT_E_PERM;
	if (!S_ISREG(sb.st_mode)) {
		store_seterr(err, errlen, "database %s is not a regular file", path);
		goto out;
	}
	if ((sb.st_mode & 077) != 0) {
		if (fchmod(fd, 0600) != 0) {
			store_seterr(err, errlen, "cannot make database %s private: %s", path,
				     strerror(errno));
			goto out;
		}
		log_warn("store_mode_fixed", "path=\"%s\" was=%03o now=600", path,
			 (unsigned)(sb.st_mode & 0777));
	}
	rc = MOAT_OK;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* The -wal and -shm files inherit the database's mode; check anyway. */
static void tighten_sidecars(const char *path)
{
	static const char *const suffix[] = {"-wal", "-shm"};
	char p[MOAT_MAX_PATH + 8];
	struct stat sb;
	size_t i;

	for (i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
		if (stat(p, &sb) == 0 && (sb.st_mode & 077) != 0 && chmod(p, 0600) != 0)
			log_warn("store_mode_unfixable", "path=\"%s\"", p);
	}
}

/* Is this our database, an empty file, or something else? */
static moat_err identify(struct moat_store *st, struct sq *sq, char *err, size_t errlen)
{
	int64_t app_id = 0, n_tables = 0;
	int code;
	moat_err rc;

	code = query_int(sq->w.db, "PRAGMA application_id", NULL, &app_id);
	if (code == SQLITE_OK)
		code = query_int(sq->w.db, "SELECT count(*) FROM sqlite_schema", NULL, &n_tables);
	if (code != SQLITE_OK) {
		rc = sq_fail(&sq->w, code);
		if (rc == MOAT_E_CORRUPT)
			store_seterr(
			    err, errlen,
			    "%s is not a usable Moat database (%s); restore a backup or move "
			    "it away",
			    st->path, sqlite3_errstr(code));
		else
			store_seterr(err, errlen, "cannot read database %s: %s", st->path,
				     sq->w.lasterr);
		return rc == MOAT_E_INTERNAL ? MOAT_E_IO : rc;
	}
	if (app_id == SQ_APP_ID || (app_id == 0 && n_tables == 0))
		return MOAT_OK;
	store_seterr(err, errlen,
		     "%s is an SQLite database but not a Moat database (application_id %lld); "
		     "move it away",
		     st->path, (long long)app_id);
	return MOAT_E_CORRUPT;
}

static moat_err exec_sql(struct sq *sq, const char *sql)
{
	int code;

	code = sqlite3_exec(sq->w.db, sql, NULL, NULL, NULL);
	if (code != SQLITE_OK)
		return sq_fail(&sq->w, code);
	return MOAT_OK;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static moat_err has_table(struct sq *sq, const char *name, bool *out)
{
	int64_t n = 0;
	int code = query_int(
	    sq->w.db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = $1", name,
	    &n);

	*out = n > 0;
	return code == SQLITE_OK ? MOAT_OK : sq_fail(&sq->w, code);
}

/* INSERT INTO table VALUES ($1 (text or int), $2 int, $3 text, $4 now). */
static moat_err insert_version(struct sq *sq, const char *module, int version,
			       const char *description)
{
	sqlite3_stmt *s = NULL;
	int code;

	if (module != NULL) {
		code = sqlite3_prepare_v2(
		    sq->w.db, "INSERT INTO module_versions VALUES ($1, $2, $3, $4)", -1, &s, NULL);
		if (code == SQLITE_OK)
			code = sqlite3_bind_text(s, 1, module, -1, SQLITE_STATIC);
		if (code == SQLITE_OK)
			code = sqlite3_bind_int(s, 2, version);
		if (code == SQLITE_OK)
			code = sqlite3_bind_text(s, 3, description, -1, SQLITE_STATIC);
		if (code == SQLITE_OK)
			code = sqlite3_bind_int64(s, 4, now_ms());
	} else {
		code = sqlite3_prepare_v2(
		    sq->w.db, "INSERT INTO schema_version VALUES ($1, $2, $3)", -1, &s, NULL);
		if (code == SQLITE_OK)
			code = sqlite3_bind_int(s, 1, version);
		if (code == SQLITE_OK)
			code = sqlite3_bind_text(s, 2, description, -1, SQLITE_STATIC);
		if (code == SQLITE_OK)
			code = sqlite3_bind_int64(s, 3, now_ms());
	}
	if (code == SQLITE_OK)
		code = sqlite3_step(s);
	if (code == SQLITE_DONE)
		code = SQLITE_OK;
	sqlite3_finalize(s);
	return code == SQLITE_OK ? MOAT_OK : sq_fail(&sq->w, code);
}

/* Every module the database has tables of must be one we hold: a module a
 * newer moat added is refused like a newer version. */
static moat_err unknown_modules(struct moat_store *st, struct sq *sq, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *name;
	size_t i;
	int code;
	moat_err rc = MOAT_OK;

	code = sqlite3_prepare_v2(sq->w.db, "SELECT DISTINCT module FROM module_versions", -1, &s,
				  NULL);
	if (code != SQLITE_OK)
		return sq_fail(&sq->w, code);
	while ((code = sqlite3_step(s)) == SQLITE_ROW) {
		name = (const char *)sqlite3_column_text(s, 0);
		for (i = 0; name != NULL && i < st->n_mods; i++)
			if (strcmp(st->mods[i]->name, name) == 0)
				break;
		if (name != NULL && i < st->n_mods)
			continue;
		store_seterr(err, errlen,
			     "database %s has tables of module %s, which is newer than this moat "
			     "(it does not know that module); use a newer moat or restore a backup",
			     st->path, name != NULL ? name : "(null)");
		rc = MOAT_E_VERSION;
		break;
	}
	if (rc == MOAT_OK && code != SQLITE_DONE)
		rc = sq_fail(&sq->w, code);
	sqlite3_finalize(s);
	return rc;
}

/*
 * The store's own tables, in one transaction: schema_version (the format;
 * kept so that a moat from before per-module versions refuses the file as
 * newer) and module_versions. A database of global versions 1..5 gets the
 * module versions those steps amounted to; nothing else changes.
 */
static moat_err convert(struct moat_store *st, struct sq *sq, char *err, size_t errlen)
{
	int64_t v = 0;
	bool has_sv = false, has_mv = false;
	size_t i;
	moat_err rc;

	rc = exec_sql(sq, "BEGIN IMMEDIATE");
	if (rc == MOAT_OK)
		rc = has_table(sq, "schema_version", &has_sv);
	if (rc == MOAT_OK)
		rc = has_table(sq, "module_versions", &has_mv);
	if (rc == MOAT_OK && has_sv) {
		int code = query_int(
		    sq->w.db, "SELECT coalesce(max(version), 0) FROM schema_version", NULL, &v);
		if (code != SQLITE_OK)
			rc = sq_fail(&sq->w, code);
	}
	if (rc != MOAT_OK) {
		store_seterr(err, errlen, "cannot migrate database %s: %s", st->path,
			     sq->w.lasterr);
		return rc;
	}
	if (v > STORE_FORMAT_VERSION) {
		store_seterr(err, errlen,
			     "database schema version %lld is newer than this moat (knows up to "
			     "%d); use a newer moat or restore a backup",
			     (long long)v, STORE_FORMAT_VERSION);
		return MOAT_E_VERSION;
	}
	if (v == STORE_FORMAT_VERSION) {
		if (!has_mv) {
			store_seterr(err, errlen,
				     "%s is not a usable Moat database (module_versions is "
				     "missing); restore a backup",
				     st->path);
			return MOAT_E_CORRUPT;
		}
		return exec_sql(sq, "COMMIT");
	}
	if (!has_sv)
		rc = exec_sql(sq, "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
				  "description TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;"
				  "PRAGMA application_id = 1297039700");
	if (rc == MOAT_OK && !has_mv)
		rc = exec_sql(sq, "CREATE TABLE module_versions (module TEXT NOT NULL, version "
				  "INTEGER NOT NULL, description TEXT NOT NULL, applied_at INTEGER "
				  "NOT NULL, PRIMARY KEY (module, version)) STRICT, WITHOUT ROWID");
	for (i = 0; rc == MOAT_OK && i < store_n_legacy_steps; i++)
		if (store_legacy_steps[i].global <= v)
			rc = insert_version(sq, store_legacy_steps[i].module,
					    store_legacy_steps[i].version,
					    "converted from the global schema version");
	if (rc == MOAT_OK)
		rc = insert_version(sq, NULL, STORE_FORMAT_VERSION,
				    "per-module schema versions (module_versions)");
	if (rc == MOAT_OK)
		rc = exec_sql(sq, "COMMIT");
	if (rc != MOAT_OK) {
		store_seterr(err, errlen, "cannot convert database %s to per-module versions: %s",
			     st->path, sq->w.lasterr);
		return rc;
	}
	if (v > 0)
		log_info("store_converted", "path=\"%s\" from_version=%lld", st->path,
			 (long long)v);
	return MOAT_OK;
}

static moat_err module_version(struct sq *sq, const char *module, int64_t *v)
{
	int code = query_int(
	    sq->w.db, "SELECT coalesce(max(version), 0) FROM module_versions WHERE module = $1",
	    module, v);

	return code == SQLITE_OK ? MOAT_OK : sq_fail(&sq->w, code);
}

/* One module's missing steps, each in its own transaction that reads the
 * version first (two processes opening one file cannot both apply a step). */
static moat_err migrate_module(struct moat_store *st, struct sq *sq,
			       const struct moat_store_module *m, char *err, size_t errlen)
{
	const struct moat_store_migration *step;
	int64_t v = 0;
	int known = (int)m->n_migrations;
	moat_err rc;

	for (;;) {
		rc = exec_sql(sq, "BEGIN IMMEDIATE");
		if (rc == MOAT_OK)
			rc = module_version(sq, m->name, &v);
		if (rc != MOAT_OK) {
			store_seterr(err, errlen, "cannot migrate database %s: %s", st->path,
				     sq->w.lasterr);
			return rc;
		}
		if (v > known) {
			store_seterr(err, errlen,
				     "database schema version %lld of module %s is newer than this "
				     "moat (knows up to %d); use a newer moat or restore a backup",
				     (long long)v, m->name, known);
			return MOAT_E_VERSION;
		}
		if (v == known)
			return exec_sql(sq, "COMMIT");
		step = &m->migrations[v];
		rc = exec_sql(sq, step->sql);
		if (rc == MOAT_OK)
			rc = insert_version(sq, m->name, step->version, step->description);
		if (rc == MOAT_OK)
			rc = exec_sql(sq, "COMMIT");
		if (rc != MOAT_OK) {
			store_seterr(err, errlen,
				     "migration of module %s to version %d of %s failed: %s",
				     m->name, step->version, st->path, sq->w.lasterr);
			return rc;
		}
		log_info("store_migrated", "path=\"%s\" module=%s version=%d description=\"%s\"",
			 st->path, m->name, step->version, step->description);
	}
}

_Static_assert(SQ_APP_ID == 1297039700, "application_id literal in convert");

static moat_err migrate(struct moat_store *st, struct sq *sq, char *err, size_t errlen)
{
	size_t i;
	moat_err rc;

	rc = convert(st, sq, err, errlen);
	if (rc == MOAT_OK) {
		rc = exec_sql(sq, "BEGIN");
		if (rc == MOAT_OK)
			rc = unknown_modules(st, sq, err, errlen);
		if (rc == MOAT_OK)
			rc = exec_sql(sq, "COMMIT");
	}
	for (i = 0; rc == MOAT_OK && i < st->n_mods; i++)
		rc = migrate_module(st, sq, st->mods[i], err, errlen);
	if (!sqlite3_get_autocommit(sq->w.db))
		sqlite3_exec(sq->w.db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static moat_err configure_writer(struct moat_store *st, struct sq *sq, char *err, size_t errlen)
{
	char sql[256];
	sqlite3_stmt *s = NULL;
	int code;
	moat_err rc;

	code = sqlite3_prepare_v2(sq->w.db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
	if (code == SQLITE_OK)
		code = sqlite3_step(s);
	if (code != SQLITE_ROW) {
		rc = sq_fail(&sq->w, code);
		store_seterr(err, errlen, "cannot set WAL mode on %s: %s", st->path, sq->w.lasterr);
		goto out;
	}
	rc = MOAT_E_IO;
	if (sqlite3_column_text(s, 0) == NULL ||
	    strcmp((const char *)sqlite3_column_text(s, 0), "wal") != 0) {
		store_seterr(err, errlen,
			     "database %s refuses WAL mode (file system without shared "
			     "memory locks?)",
			     st->path);
		goto out;
	}
	/* strict: the WAL is synced at every commit; relaxed: only at
	 * checkpoints, so a power loss may lose the latest commits, a process
	 * crash none. secure_delete=ON zeroes deleted content, freed pages
	 * included, so erased data (a decommissioned device's messages) is
	 * gone from the files after the next checkpoint, not just unlinked. */
	snprintf(sql, sizeof(sql),
		 "PRAGMA synchronous = %s; PRAGMA foreign_keys = ON; "
		 "PRAGMA journal_size_limit = %u; PRAGMA secure_delete = ON",
		 st->durability == MOAT_STORE_STRICT ? "FULL" : "NORMAL",
		 MOAT_STORE_WAL_KEEP_BYTES);
	rc = exec_sql(sq, sql);
	if (rc != MOAT_OK)
		store_seterr(err, errlen, "cannot configure database %s: %s", st->path,
			     sq->w.lasterr);
out:
	sqlite3_finalize(s);
	return rc;
}

static void sq_close(struct moat_store *st)
{
	struct sq *sq = st->impl;
	unsigned i;

	if (sq == NULL)
		return;
	for (i = 0; i < SQ_TXN__COUNT; i++)
		sqlite3_finalize(sq->txn[i]);
	close_conn(&sq->r);
	close_conn(&sq->w);
	store_vfs_free(sq->vfs);
	if (sq->rlock_init)
		pthread_mutex_destroy(&sq->rlock);
	free(sq);
	st->impl = NULL;
}

static moat_err sq_open(struct moat_store *st, char *err, size_t errlen)
{
	struct sq *sq = NULL;
	unsigned i;
	int code;
	moat_err rc = MOAT_E_INTERNAL;

	if (sqlite3_libversion_number() < SQ_MIN_VERSION || !sqlite3_threadsafe()) {
		store_seterr(err, errlen, "SQLite %s is too old or single-threaded (need >= 3.37)",
			     sqlite3_libversion());
		goto out;
	}
	rc = MOAT_E_NOMEM;
	sq = calloc(1, sizeof(*sq));
	if (sq == NULL)
		goto out;
	st->impl = sq;
	rc = MOAT_E_INTERNAL;
	if (pthread_mutex_init(&sq->rlock, NULL) != 0)
		goto out;
	sq->rlock_init = true;
	rc = store_vfs_new(st, &sq->vfs, &sq->vfs_name);
	if (rc != MOAT_OK) {
		store_seterr(err, errlen, "cannot register the store's SQLite VFS");
		goto out;
	}
	rc = create_file(st->path, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = open_conn(st, sq, &sq->w, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = identify(st, sq, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = configure_writer(st, sq, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = migrate(st, sq, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = MOAT_E_INTERNAL;
	/* A payload of the largest packet must fit in one value. */
	if ((unsigned)sqlite3_limit(sq->w.db, SQLITE_LIMIT_LENGTH, -1) <=
	    MOAT_MAX_PACKET_SIZE_MAX) {
		store_seterr(err, errlen, "SQLite's length limit is below the largest packet");
		goto out;
	}
	for (i = 0; i < SQ_TXN__COUNT; i++) {
		code = sqlite3_prepare_v3(sq->w.db, txn_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					  &sq->txn[i], NULL);
		if (code != SQLITE_OK) {
			store_seterr(err, errlen, "cannot prepare %s", txn_sql[i]);
			goto out;
		}
	}
	rc = prepare_conn(st, &sq->w, MOAT_STORE_WRITE);
	if (rc != MOAT_OK) {
		store_seterr(err, errlen, "cannot prepare the store's statements: %s",
			     sq->w.lasterr);
		goto out;
	}
	rc = open_conn(st, sq, &sq->r, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	code = sqlite3_exec(sq->r.db, "PRAGMA query_only = ON", NULL, NULL, NULL);
	if (code != SQLITE_OK) {
		rc = sq_fail(&sq->r, code);
		store_seterr(err, errlen, "cannot configure the read connection: %s",
			     sq->r.lasterr);
		goto out;
	}
	rc = prepare_conn(st, &sq->r, MOAT_STORE_READ);
	if (rc != MOAT_OK) {
		store_seterr(err, errlen, "cannot prepare the store's statements: %s",
			     sq->r.lasterr);
		goto out;
	}
	tighten_sidecars(st->path);
	rc = MOAT_OK;
out:
	if (rc != MOAT_OK)
		sq_close(st);
	return rc;
}

static moat_err txn(struct moat_store *st, enum sq_txn t)
{
	struct sq *sq = st->impl;
	int code;

	code = step_once(sq->txn[t]);
	if (code != SQLITE_OK)
		return sq_fail(&sq->w, code);
	return MOAT_OK;
}

static moat_err sq_begin(struct moat_store *st)
{
	struct sq *sq = st->impl;

	/* A transaction left open by a failure we could not roll back. */
	if (!sqlite3_get_autocommit(sq->w.db))
		sqlite3_exec(sq->w.db, "ROLLBACK", NULL, NULL, NULL);
	return txn(st, SQ_BEGIN);
}

static moat_err sq_savepoint(struct moat_store *st)
{
	return txn(st, SQ_SAVEPOINT);
}

static moat_err sq_release(struct moat_store *st)
{
	return txn(st, SQ_RELEASE);
}

static moat_err sq_rollback_to(struct moat_store *st)
{
	return txn(st, SQ_ROLLBACK_TO);
}

static moat_err sq_commit(struct moat_store *st)
{
	return txn(st, SQ_COMMIT);
}

static void sq_rollback(struct moat_store *st)
{
	struct sq *sq = st->impl;

	if (step_once(sq->txn[SQ_ROLLBACK]) != SQLITE_OK)
		log_warn("store_rollback_failed", "detail=\"%s\"", sqlite3_errmsg(sq->w.db));
}

static bool sq_in_txn(struct moat_store *st)
{
	struct sq *sq = st->impl;

	return !sqlite3_get_autocommit(sq->w.db);
}

static int bind_vals(sqlite3_stmt *s, const unsigned char *pidx, const struct moat_val *v, size_t n)
{
	size_t k;
	int code = SQLITE_OK;

	for (k = 0; k < n && code == SQLITE_OK; k++) {
		switch (v[k].type) {
		case MOAT_VAL_NULL:
			code = sqlite3_bind_null(s, pidx[k]);
			break;
		case MOAT_VAL_INT:
			code = sqlite3_bind_int64(s, pidx[k], v[k].i);
			break;
		case MOAT_VAL_TEXT:
			/* A NULL pointer would bind SQL NULL: "" keeps it text. */
			code = sqlite3_bind_text64(s, pidx[k], v[k].p != NULL ? v[k].p : "",
						   v[k].len, SQLITE_STATIC, SQLITE_UTF8);
			break;
		case MOAT_VAL_BLOB:
			code = sqlite3_bind_blob64(s, pidx[k], v[k].p != NULL ? v[k].p : "",
						   v[k].len, SQLITE_STATIC);
			break;
		default:
			code = SQLITE_MISUSE;
			break;
		}
	}
	return code;
}

static moat_err sq_exec(struct moat_store *st, unsigned flat, const struct store_op *op)
{
	struct sq *sq = st->impl;
	sqlite3_stmt *s = sq->w.stmt[flat];
	int code;
	moat_err rc;

	code = bind_vals(s, sq->w.pidx[flat], op->v, op->n);
	if (code == SQLITE_OK) {
		while ((code = sqlite3_step(s)) == SQLITE_ROW)
			;
		if (code == SQLITE_DONE)
			code = SQLITE_OK;
	}
	rc = code == SQLITE_OK ? MOAT_OK : sq_fail(&sq->w, code);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc;
}

static moat_err sq_checkpoint(struct moat_store *st)
{
	struct sq *sq = st->impl;
	int code;

	code = sqlite3_wal_checkpoint_v2(sq->w.db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (code != SQLITE_OK)
		return sq_fail(&sq->w, code);
	return MOAT_OK;
}

static const char *sq_errmsg(struct moat_store *st)
{
	struct sq *sq = st->impl;

	return sq->w.lasterr;
}

static moat_err row_vals(sqlite3_stmt *s, struct moat_val *cols, size_t *ncols)
{
	int i, n;

	n = sqlite3_column_count(s);
	if (n < 0 || n > SQ_MAX_COLS)
		return MOAT_E_INTERNAL;
	for (i = 0; i < n; i++) {
		switch (sqlite3_column_type(s, i)) {
		case SQLITE_NULL:
			cols[i] = moat_val_null();
			break;
		case SQLITE_INTEGER:
			cols[i] = moat_val_int(sqlite3_column_int64(s, i));
			break;
		case SQLITE_TEXT:
			cols[i].type = MOAT_VAL_TEXT;
			cols[i].i = 0;
			cols[i].p = sqlite3_column_text(s, i);
			cols[i].len = (size_t)sqlite3_column_bytes(s, i);
			if (cols[i].p == NULL)
				return MOAT_E_NOMEM;
			break;
		case SQLITE_BLOB:
			cols[i].type = MOAT_VAL_BLOB;
			cols[i].i = 0;
			cols[i].p = sqlite3_column_blob(s, i);
			cols[i].len = (size_t)sqlite3_column_bytes(s, i);
			if (cols[i].p == NULL)
				cols[i].p = ""; /* SQLite's zero-length blob */
			break;
		default:
			return MOAT_E_INTERNAL; /* no REAL columns in our schema */
		}
	}
	*ncols = (size_t)n;
	return MOAT_OK;
}

static moat_err sq_read(struct moat_store *st, unsigned flat, const struct moat_val *params,
			size_t n, moat_store_row_cb cb, void *arg)
{
	struct sq *sq = st->impl;
	struct moat_val cols[SQ_MAX_COLS];
	sqlite3_stmt *s = sq->r.stmt[flat];
	size_t ncols = 0;
	int code;
	moat_err rc;

	pthread_mutex_lock(&sq->rlock);
	code = bind_vals(s, sq->r.pidx[flat], params, n);
	rc = code == SQLITE_OK ? MOAT_OK : sq_fail(&sq->r, code);
	while (rc == MOAT_OK) {
		code = sqlite3_step(s);
		if (code == SQLITE_DONE)
			break;
		if (code != SQLITE_ROW) {
			rc = sq_fail(&sq->r, code);
			break;
		}
		rc = row_vals(s, cols, &ncols);
		if (rc == MOAT_OK)
			rc = cb(arg, cols, ncols);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	pthread_mutex_unlock(&sq->rlock);
	return rc;
}

/* Run a pragma that lists problems; any row but a single "ok" is one. */
static moat_err check_pragma(struct sq *sq, const char *sql, bool ok_row, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *t;
	int code;
	moat_err rc;

	code = sqlite3_prepare_v2(sq->r.db, sql, -1, &s, NULL);
	if (code != SQLITE_OK) {
		rc = sq_fail(&sq->r, code);
		store_seterr(err, errlen, "%s: %s", sql, sq->r.lasterr);
		goto out;
	}
	code = sqlite3_step(s);
	if (code == SQLITE_DONE) {
		rc = MOAT_OK;
		goto out;
	}
	if (code != SQLITE_ROW) {
		rc = sq_fail(&sq->r, code);
		store_seterr(err, errlen, "%s: %s", sql, sq->r.lasterr);
		goto out;
	}
	t = sqlite3_column_text(s, 0);
	if (ok_row && t != NULL && strcmp((const char *)t, "ok") == 0 &&
	    sqlite3_step(s) == SQLITE_DONE) {
		rc = MOAT_OK;
		goto out;
	}
	rc = MOAT_E_CORRUPT;
	store_seterr(err, errlen, "%s: %s", sql, t != NULL ? (const char *)t : "problem found");
out:
	sqlite3_finalize(s);
	return rc;
}

static moat_err sq_check(struct moat_store *st, char *err, size_t errlen)
{
	struct sq *sq = st->impl;
	moat_err rc;

	pthread_mutex_lock(&sq->rlock);
	rc = check_pragma(sq, "PRAGMA integrity_check", true, err, errlen);
	if (rc == MOAT_OK)
		rc = check_pragma(sq, "PRAGMA foreign_key_check", false, err, errlen);
	pthread_mutex_unlock(&sq->rlock);
	return rc;
}

const struct store_backend store_sqlite_backend = {
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .exec = sq_exec,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .in_txn = sq_in_txn,
    .checkpoint = sq_checkpoint,
    .errmsg = sq_errmsg,
    .read = sq_read,
    .check = sq_check,
};
