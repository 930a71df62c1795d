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

/* Columns of the widest result row (LOAD_SESSIONS has 12). */
#define SQ_MAX_COLS 16

/*
 * Schema migrations: dense versions from 1, applied in order, each in its
 * own transaction together with its schema_version row. Never edit a step
 * that has shipped; add a new one. A PostgreSQL backend keeps its own list
 * with the same versions and meanings.
 */
struct sq_migration {
	int version;
	const char *description;
	const char *sql;
};

static const struct sq_migration migrations[] = {
    {1, "broker durable state",
     /* A message stored once, shared by every session it is queued for
      * and by the retained table; its id is assigned by the broker so one
      * batch can insert it and reference it. */
     "CREATE TABLE messages ("
     " id INTEGER PRIMARY KEY,"
     " topic TEXT NOT NULL,"
     " payload BLOB NOT NULL,"
     " props BLOB,"
     " qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),"
     " retain INTEGER NOT NULL CHECK (retain IN (0, 1)),"
     " expire_at INTEGER"
     ") STRICT;"
     "CREATE INDEX messages_expire ON messages (expire_at) WHERE expire_at IS NOT NULL;"
     /* expire_at is NULL while the client is connected: after a crash such
      * a session counts as disconnected at restart. */
     "CREATE TABLE sessions ("
     " client_id TEXT PRIMARY KEY NOT NULL,"
     " identity TEXT NOT NULL,"
     " version INTEGER NOT NULL CHECK (version IN (3, 4, 5)),"
     " expiry_interval INTEGER NOT NULL CHECK (expiry_interval >= 0),"
     " expire_at INTEGER,"
     " will_topic TEXT,"
     " will_payload BLOB,"
     " will_props BLOB,"
     " will_qos INTEGER CHECK (will_qos BETWEEN 0 AND 2),"
     " will_retain INTEGER CHECK (will_retain IN (0, 1)),"
     " will_delay INTEGER CHECK (will_delay >= 0),"
     " will_expiry INTEGER CHECK (will_expiry >= 0),"
     " CHECK ((will_topic IS NULL) = (will_payload IS NULL))"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX sessions_expire ON sessions (expire_at) WHERE expire_at IS NOT NULL;"
     "CREATE TABLE subscriptions ("
     " client_id TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,"
     " filter TEXT NOT NULL,"
     " options INTEGER NOT NULL CHECK (options BETWEEN 0 AND 255),"
     " sub_id INTEGER NOT NULL CHECK (sub_id BETWEEN 0 AND 268435455),"
     " PRIMARY KEY (client_id, filter)"
     ") STRICT, WITHOUT ROWID;"
     /* Outgoing QoS 1/2 per session, queued (state 0) or in flight, in
      * order of seq. Messages are never deleted under a delivery
      * (no cascade): the foreign key is a guard. */
     "CREATE TABLE deliveries ("
     " client_id TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,"
     " seq INTEGER NOT NULL,"
     " msg_id INTEGER NOT NULL REFERENCES messages (id),"
     " qos INTEGER NOT NULL CHECK (qos BETWEEN 1 AND 2),"
     " retain INTEGER NOT NULL CHECK (retain IN (0, 1)),"
     " state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 3),"
     " pid INTEGER NOT NULL CHECK (pid BETWEEN 0 AND 65535),"
     " sub_ids BLOB,"
     " PRIMARY KEY (client_id, seq)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX deliveries_msg ON deliveries (msg_id);"
     "CREATE TABLE qos2_in ("
     " client_id TEXT NOT NULL REFERENCES sessions (client_id) ON DELETE CASCADE,"
     " pid INTEGER NOT NULL CHECK (pid BETWEEN 1 AND 65535),"
     " PRIMARY KEY (client_id, pid)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE retained ("
     " topic TEXT PRIMARY KEY NOT NULL,"
     " msg_id INTEGER NOT NULL REFERENCES messages (id)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX retained_msg ON retained (msg_id);"},
    {2, "management plane: operators, sessions, API tokens, audit log",
     "CREATE TABLE operators ("
     " id INTEGER PRIMARY KEY,"
     " name TEXT NOT NULL UNIQUE,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'viewer')),"
     " pw_hash TEXT NOT NULL,"
     /* totp_secret: enrolled (confirmed) secret; totp_pending: an
      * enrolment that has not been confirmed with a code yet. */
     " totp_secret BLOB,"
     " totp_pending BLOB,"
     " totp_last_step INTEGER NOT NULL DEFAULT 0,"
     " disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL"
     ") STRICT;"
     /* Only hashes; a used code is deleted. */
     "CREATE TABLE recovery_codes ("
     " operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,"
     " hash BLOB NOT NULL,"
     " PRIMARY KEY (operator_id, hash)"
     ") STRICT, WITHOUT ROWID;"
     /* Console/CLI sessions: the cookie holds a random secret; we keep its
      * SHA-256 and a public id (sid) derived from that hash. */
     "CREATE TABLE op_sessions ("
     " id_hash BLOB PRIMARY KEY NOT NULL,"
     " sid TEXT NOT NULL UNIQUE,"
     " operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,"
     " csrf TEXT NOT NULL,"
     " mfa INTEGER NOT NULL CHECK (mfa IN (0, 1)),"
     " created_at INTEGER NOT NULL,"
     " last_seen INTEGER NOT NULL,"
     " peer TEXT NOT NULL,"
     " user_agent TEXT NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX op_sessions_operator ON op_sessions (operator_id);"
     "CREATE TABLE api_tokens ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " hash BLOB NOT NULL UNIQUE,"
     " name TEXT NOT NULL,"
     " role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor', 'viewer', "
     "'metrics')),"
     " creator TEXT NOT NULL,"
     " created_at INTEGER NOT NULL,"
     " expires_at INTEGER NOT NULL,"
     " last_used INTEGER,"
     " revoked_at INTEGER"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE setup_tokens ("
     " hash BLOB PRIMARY KEY NOT NULL,"
     " expires_at INTEGER NOT NULL,"
     " used_at INTEGER"
     ") STRICT, WITHOUT ROWID;"
     /* The audit log is append-only: the triggers stop Moat's own code (and
      * careless hands) from rewriting it; deliberate tampering with the
      * file is what the hash chain and signed checkpoints catch. */
     "CREATE TABLE audit_log ("
     " seq INTEGER PRIMARY KEY,"
     " ts INTEGER NOT NULL,"
     " actor TEXT NOT NULL,"
     " action TEXT NOT NULL,"
     " target TEXT NOT NULL,"
     " outcome TEXT NOT NULL,"
     " peer TEXT NOT NULL,"
     " detail TEXT NOT NULL,"
     " prev BLOB NOT NULL,"
     " hash BLOB NOT NULL"
     ") STRICT;"
     "CREATE INDEX audit_log_ts ON audit_log (ts);"
     "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
     "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
     "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
     "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
     "CREATE TABLE audit_checkpoints ("
     " seq INTEGER PRIMARY KEY,"
     " ts INTEGER NOT NULL,"
     " head BLOB NOT NULL,"
     " sig BLOB NOT NULL"
     ") STRICT;"},
    {3, "device registry: identities, groups, policies, certificates, enrollment",
     /* Devices and service identities share one namespace (the certificate
      * identity). A decommissioned row stays (terminal) so the id is never
      * silently reused by a new device. */
     "CREATE TABLE identities ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " kind TEXT NOT NULL CHECK (kind IN ('device', 'service')),"
     " state TEXT NOT NULL CHECK (state IN ('registered', 'active', 'disabled', "
     "'quarantined', 'decommissioned')),"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL,"
     " first_seen INTEGER,"
     " last_seen INTEGER,"
     " last_addr TEXT,"
     " firmware TEXT"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE groups ("
     " name TEXT PRIMARY KEY NOT NULL,"
     " description TEXT NOT NULL,"
     " created_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE memberships ("
     " identity TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,"
     " group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,"
     " PRIMARY KEY (identity, group_name)"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX memberships_group ON memberships (group_name);"
     /* rules: one rule per line in the text form of src/registry/acl.h */
     "CREATE TABLE policies ("
     " name TEXT PRIMARY KEY NOT NULL,"
     " description TEXT NOT NULL,"
     " rules TEXT NOT NULL,"
     " builtin INTEGER NOT NULL DEFAULT 0 CHECK (builtin IN (0, 1)),"
     " created_at INTEGER NOT NULL,"
     " updated_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     /* A policy attaches to a group or to one identity (services). */
     "CREATE TABLE attachments ("
     " policy TEXT NOT NULL REFERENCES policies (name) ON DELETE CASCADE,"
     " group_name TEXT REFERENCES groups (name) ON DELETE CASCADE,"
     " identity TEXT REFERENCES identities (id) ON DELETE CASCADE,"
     " CHECK ((group_name IS NULL) <> (identity IS NULL))"
     ") STRICT;"
     "CREATE UNIQUE INDEX attachments_group ON attachments (policy, group_name) WHERE "
     "group_name IS NOT NULL;"
     "CREATE UNIQUE INDEX attachments_identity ON attachments (policy, identity) WHERE "
     "identity IS NOT NULL;"
     "CREATE TABLE certificates ("
     " serial TEXT PRIMARY KEY NOT NULL,"
     " identity TEXT NOT NULL,"
     " fingerprint TEXT NOT NULL,"
     " not_before INTEGER NOT NULL,"
     " not_after INTEGER NOT NULL,"
     " issued_at INTEGER NOT NULL,"
     " revoked_at INTEGER,"
     " reason TEXT"
     ") STRICT, WITHOUT ROWID;"
     "CREATE INDEX certificates_identity ON certificates (identity);"
     "CREATE TABLE enroll_tokens ("
     " id TEXT PRIMARY KEY NOT NULL,"
     " hash BLOB NOT NULL UNIQUE,"
     " identity TEXT,"
     " group_name TEXT,"
     " uses_left INTEGER NOT NULL CHECK (uses_left >= 0),"
     " expires_at INTEGER NOT NULL,"
     " creator TEXT NOT NULL,"
     " created_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     "CREATE TABLE manufacturer_cas ("
     " name TEXT PRIMARY KEY NOT NULL,"
     " cert_pem TEXT NOT NULL,"
     " fingerprint TEXT NOT NULL UNIQUE,"
     " created_at INTEGER NOT NULL"
     ") STRICT, WITHOUT ROWID;"
     /* The built-in policy and the group every new device joins unless told
      * otherwise: today's default (d/<id>/ publish, c/<id>/ and d/<id>/
      * subscribe). */
     "INSERT INTO policies VALUES ('device-default', 'publish under d/<id>/, subscribe under "
     "c/<id>/ and d/<id>/', 'allow publish d/${device}/#' || char(10) || 'allow subscribe "
     "c/${device}/#' || char(10) || 'allow subscribe d/${device}/#', 1, 0, 0);"
     "INSERT INTO groups VALUES ('devices', 'every device unless registered into other "
     "groups', 0);"
     "INSERT INTO attachments (policy, group_name) VALUES ('device-default', 'devices');"},
    {4, "certificates: revocation scheduled after re-enrollment",
     /* EST simplereenroll issues a new certificate and revokes the old one
      * after a grace period, so a device can switch without a gap. */
     "ALTER TABLE certificates ADD COLUMN revoke_at INTEGER;"
     "CREATE INDEX certificates_revoke_at ON certificates (revoke_at) WHERE revoke_at IS NOT "
     "NULL AND revoked_at IS NULL;"},
    {5, "manufacturer CAs: the devices each may enroll",
     /* A manufacturer CA vouches for the devices it made, not the fleet:
      * device-id patterns (one a line: an id, or a prefix ending in '*') or
      * a group. A CA registered before has neither and enrolls nothing
      * until it is registered again with a scope. */
     "ALTER TABLE manufacturer_cas ADD COLUMN devices TEXT;"
     "ALTER TABLE manufacturer_cas ADD COLUMN group_name TEXT;"},
};

#define SQ_KNOWN_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

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
	sqlite3_stmt *stmt[MOAT_STMT__COUNT];
	/* the SQLite index of parameter $k+1 */
	unsigned char pidx[MOAT_STMT__COUNT][MOAT_STORE_MAX_PARAMS];
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
	return SQ_KNOWN_VERSION;
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

/* One integer from a one-row query on db. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int code;

	code = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
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

static moat_err prepare_conn(struct sq_conn *c, enum store_stmt_kind kind)
{
	const struct store_stmt_def *d;
	char name[16];
	unsigned i, k;
	int code, idx;
	moat_err rc = MOAT_E_INTERNAL;

	for (i = 0; i < MOAT_STMT__COUNT; i++) {
		d = &store_stmts[i];
		if (d->kind != kind)
			continue;
		code = sqlite3_prepare_v3(c->db, d->sql, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[i],
					  NULL);
		if (code != SQLITE_OK) {
			sq_fail(c, code);
			log_error("store_prepare_failed", "stmt=%u detail=\"%s\"", i, c->lasterr);
			goto out;
		}
		/* $1..$n, each present, nothing else: a table bug fails here at
		 * start-up rather than binding the wrong column later. */
		if (d->nparams > MOAT_STORE_MAX_PARAMS ||
		    sqlite3_bind_parameter_count(c->stmt[i]) != (int)d->nparams ||
		    (kind == STORE_READ && sqlite3_column_count(c->stmt[i]) > SQ_MAX_COLS)) {
			log_error("store_prepare_failed", "stmt=%u detail=\"parameter count\"", i);
			goto out;
		}
		for (k = 0; k < d->nparams; k++) {
			snprintf(name, sizeof(name), "$%u", k + 1);
			idx = sqlite3_bind_parameter_index(c->stmt[i], name);
			if (idx <= 0 || idx > (int)MOAT_STORE_MAX_PARAMS) {
				log_error("store_prepare_failed", "stmt=%u detail=\"missing %s\"",
					  i, name);
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

	for (i = 0; i < MOAT_STMT__COUNT; i++) {
		sqlite3_finalize(c->stmt[i]);
		c->stmt[i] = NULL;
	}
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

	code = query_int(sq->w.db, "PRAGMA application_id", &app_id);
	if (code == SQLITE_OK)
		code = query_int(sq->w.db, "SELECT count(*) FROM sqlite_schema", &n_tables);
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

static moat_err current_version(struct sq *sq, int64_t *v)
{
	int64_t n = 0;
	int code;

	code = query_int(sq->w.db,
			 "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = "
			 "'schema_version'",
			 &n);
	if (code == SQLITE_OK && n == 0) {
		*v = 0;
		return MOAT_OK;
	}
	if (code == SQLITE_OK)
		code =
		    query_int(sq->w.db, "SELECT coalesce(max(version), 0) FROM schema_version", v);
	if (code != SQLITE_OK)
		return sq_fail(&sq->w, code);
	return MOAT_OK;
}

static moat_err apply_step(struct sq *sq, const struct sq_migration *m, bool first)
{
	sqlite3_stmt *s = NULL;
	struct timespec ts;
	int code;
	moat_err rc;

	if (first) {
		rc = exec_sql(sq, "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
				  "description TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;"
				  "PRAGMA application_id = 1297039700");
		if (rc != MOAT_OK)
			goto out;
	}
	rc = exec_sql(sq, m->sql);
	if (rc != MOAT_OK)
		goto out;
	code = sqlite3_prepare_v2(sq->w.db, "INSERT INTO schema_version VALUES ($1, $2, $3)", -1,
				  &s, NULL);
	if (code == SQLITE_OK) {
		clock_gettime(CLOCK_REALTIME, &ts);
		sqlite3_bind_int(s, 1, m->version);
		sqlite3_bind_text(s, 2, m->description, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		code = sqlite3_step(s);
		if (code == SQLITE_DONE)
			code = SQLITE_OK;
	}
	rc = code == SQLITE_OK ? MOAT_OK : sq_fail(&sq->w, code);
out:
	sqlite3_finalize(s);
	return rc;
}

_Static_assert(SQ_APP_ID == 1297039700, "application_id literal in apply_step");

static moat_err migrate(struct moat_store *st, struct sq *sq, char *err, size_t errlen)
{
	int64_t v = 0;
	int i;
	moat_err rc = MOAT_E_INTERNAL;

	for (i = 0; i < SQ_KNOWN_VERSION; i++)
		if (migrations[i].version != i + 1)
			goto out;
	for (;;) {
		/* Read the version inside the write transaction: two processes
		 * opening one file cannot both apply a step. */
		rc = exec_sql(sq, "BEGIN IMMEDIATE");
		if (rc == MOAT_OK)
			rc = current_version(sq, &v);
		if (rc != MOAT_OK) {
			store_seterr(err, errlen, "cannot migrate database %s: %s", st->path,
				     sq->w.lasterr);
			goto out;
		}
		if (v > SQ_KNOWN_VERSION) {
			store_seterr(
			    err, errlen,
			    "database schema version %lld is newer than this moat (knows up to "
			    "%d); use a newer moat or restore a backup",
			    (long long)v, SQ_KNOWN_VERSION);
			rc = MOAT_E_VERSION;
			goto out;
		}
		if (v == SQ_KNOWN_VERSION) {
			rc = exec_sql(sq, "COMMIT");
			goto out;
		}
		rc = apply_step(sq, &migrations[v], v == 0);
		if (rc == MOAT_OK)
			rc = exec_sql(sq, "COMMIT");
		if (rc != MOAT_OK) {
			store_seterr(err, errlen, "migration to schema version %d of %s failed: %s",
				     migrations[v].version, st->path, sq->w.lasterr);
			goto out;
		}
		log_info("store_migrated", "path=\"%s\" version=%d description=\"%s\"", st->path,
			 migrations[v].version, migrations[v].description);
	}
out:
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
	rc = prepare_conn(&sq->w, STORE_WRITE);
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
	rc = prepare_conn(&sq->r, STORE_READ);
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

static moat_err sq_exec(struct moat_store *st, const struct store_op *op)
{
	struct sq *sq = st->impl;
	sqlite3_stmt *s = sq->w.stmt[op->id];
	int code;
	moat_err rc;

	code = bind_vals(s, sq->w.pidx[op->id], op->v, op->n);
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

static moat_err sq_read(struct moat_store *st, enum moat_stmt id, const struct moat_val *params,
			size_t n, moat_store_row_cb cb, void *arg)
{
	struct sq *sq = st->impl;
	struct moat_val cols[SQ_MAX_COLS];
	sqlite3_stmt *s = sq->r.stmt[id];
	size_t ncols = 0;
	int code;
	moat_err rc;

	pthread_mutex_lock(&sq->rlock);
	code = bind_vals(s, sq->r.pidx[id], params, n);
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
