/*
 * Moat's storage interface: durable state behind a small contract that the
 * embedded SQLite backend implements today and a PostgreSQL backend can
 * implement later without touching callers (docs/storage.md).
 *
 * - Statements are fixed, compiled-in SQL texts that each module registers
 *   (struct moat_store_module), with numbered parameters $1..$n that both
 *   SQLite and PostgreSQL accept. Each backend prepares them once per
 *   connection.
 * - Values are tagged (struct moat_val): null, int64, text, blob.
 * - Writes are batches: one or more statements that commit atomically.
 *   Any thread submits a batch; ONE writer thread runs everything pending in
 *   one transaction (each batch in its own savepoint), commits once and then
 *   calls each batch's completion with its own result (group commit).
 * - Reads are synchronous, on a separate connection that never blocks the
 *   writer. They are for start-up restore and API handlers: never call them
 *   from an event loop on the hot path.
 */
#ifndef MOAT_STORE_H
#define MOAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

struct moat_store;
struct moat_store_batch;

enum moat_store_durability {
	/* A batch completes only after its COMMIT is on stable storage
	 * (fsync of the WAL): survives process crash and power loss. */
	MOAT_STORE_STRICT = 0,
	/* Commits at most every flush_ms without fsync; completion still only
	 * after COMMIT. Survives a process crash; a power loss may lose the
	 * transactions since the last checkpoint. */
	MOAT_STORE_RELAXED,
};

/* Test hook: every write, sync and truncate the backend makes on its files
 * is announced; returning a fault makes that call fail as the disk would. */
enum moat_store_io {
	MOAT_STORE_IO_WRITE = 0,
	MOAT_STORE_IO_SYNC,
	MOAT_STORE_IO_TRUNCATE,
};

enum moat_store_fault {
	MOAT_STORE_FAULT_NONE = 0,
	MOAT_STORE_FAULT_FULL, /* no space left on device */
	MOAT_STORE_FAULT_IO,   /* I/O error */
};

/* Called on whichever thread does the I/O; must be thread-safe. */
typedef enum moat_store_fault (*moat_store_fault_cb)(void *arg, enum moat_store_io op);

struct moat_store_opts {
	const char *path; /* the database file, in the data directory */
	enum moat_store_durability durability;
	/* relaxed only; 0 = MOAT_STORE_FLUSH_MS_DEFAULT, else within
	 * [MOAT_STORE_FLUSH_MS_MIN, MOAT_STORE_FLUSH_MS_MAX] */
	uint32_t flush_ms;
	/* strict only: the commit window in microseconds, at most
	 * MOAT_STORE_COMMIT_WINDOW_US_MAX (0: commit every group at once) */
	uint32_t commit_window_us;
	/* 0 = MOAT_STORE_BUSY_MS_DEFAULT, else within the MIN/MAX bounds */
	uint32_t busy_ms;
	moat_store_fault_cb fault_cb; /* NULL in production */
	void *fault_arg;
	/* the modules whose tables and statements the store holds; NULL:
	 * moat_store_modules (every module of moat) */
	const struct moat_store_module *const *modules;
	size_t n_modules;
};

/*
 * Storage is owned by modules (docs/storage.md "Modules and their tables").
 * Each module (the broker, the registry, the PKI, operators, the audit log)
 * describes its own tables and statements in a struct moat_store_module,
 * next to its code (src/<module>/schema.c), and the store runs them:
 *
 * - statements: fixed, compiled-in SQL with numbered parameters $1..$n that
 *   both SQLite and PostgreSQL accept, prepared once per connection;
 * - migrations: dense versions from 1, per module, recorded in the
 *   database's module_versions table by module name.
 *
 * A statement is named by (module, index): struct moat_stmt, built by each
 * module's NAME_STMT(X) macro, e.g. MQTT_STMT(SESSION_PUT).
 */
enum moat_store_stmt_kind {
	MOAT_STORE_WRITE = 0, /* goes into batches */
	MOAT_STORE_READ,      /* goes to moat_store_read */
};

struct moat_store_stmt {
	enum moat_store_stmt_kind kind;
	unsigned nparams; /* exactly $1..$nparams */
	const char *sql;
};

struct moat_store_migration {
	int version; /* the index + 1: dense from 1 */
	const char *description;
	const char *sql;
};

struct moat_store_module {
	const char *name; /* the key in module_versions; never renamed */
	const struct moat_store_stmt *stmts;
	size_t n_stmts;
	const struct moat_store_migration *migrations;
	size_t n_migrations;
};

/* One statement of one module. */
struct moat_stmt {
	const struct moat_store_module *mod;
	unsigned idx; /* into mod->stmts */
};

#define MOAT_STMT(module, index) ((struct moat_stmt){(module), (index)})

/* The modules compiled into moat, in migration order (src/store/modules.c).
 * moat_store_open uses them unless the options name others (tests). */
extern const struct moat_store_module *const moat_store_modules[];
extern const size_t moat_store_n_modules;

enum moat_val_type {
	MOAT_VAL_NULL = 0,
	MOAT_VAL_INT,
	MOAT_VAL_TEXT, /* UTF-8, no NUL inside, not NUL-terminated */
	MOAT_VAL_BLOB,
};

struct moat_val {
	enum moat_val_type type;
	int64_t i;
	const void *p; /* TEXT/BLOB bytes (never NULL for those types) */
	size_t len;
};

static inline struct moat_val moat_val_null(void)
{
	struct moat_val v = {MOAT_VAL_NULL, 0, NULL, 0};
	return v;
}
static inline struct moat_val moat_val_int(int64_t i)
{
	struct moat_val v = {MOAT_VAL_INT, i, NULL, 0};
	return v;
}
static inline struct moat_val moat_val_text(const char *p, size_t len)
{
	struct moat_val v = {MOAT_VAL_TEXT, 0, p, len};
	return v;
}
static inline struct moat_val moat_val_blob(const void *p, size_t len)
{
	struct moat_val v = {MOAT_VAL_BLOB, 0, p, len};
	return v;
}

struct moat_store_stats {
	uint64_t transactions;	 /* group transactions begun */
	uint64_t commits;	 /* group transactions committed */
	uint64_t batches;	 /* batches completed, with any result */
	uint64_t batches_failed; /* of which failed */
	uint64_t fsyncs;	 /* sync calls the backend made on its files */
	uint64_t errors;	 /* storage errors (full, I/O, busy...) */
};

/* Open (creating if needed, mode 0600) and migrate the database. On failure
 * err holds a sentence for the operator. MOAT_E_VERSION: written by a newer
 * Moat; MOAT_E_CORRUPT: corrupt or not a Moat database. */
moat_err moat_store_open(const struct moat_store_opts *opts, struct moat_store **out, char *err,
			 size_t errlen);
/* Commits everything submitted so far (completions run), then closes. */
void moat_store_close(struct moat_store *st);

/* The version of the store's own format (the legacy schema_version table:
 * 6 = per-module versions in module_versions). A database with a higher one
 * is refused. */
int moat_store_schema_version(void);
/* The newest version of a module's schema this code knows. */
int moat_store_module_version(const struct moat_store_module *mod);

/* Build a batch. batch_add copies the values, so the caller's buffers may
 * be reused at once. A batch that is never submitted is freed with
 * moat_store_batch_free. */
moat_err moat_store_batch_new(struct moat_store_batch **out);
moat_err moat_store_batch_add(struct moat_store_batch *b, struct moat_stmt id,
			      const struct moat_val *params, size_t n);
void moat_store_batch_free(struct moat_store_batch *b);
/* A copy of an unsubmitted batch (to retry it after a failure). */
moat_err moat_store_batch_clone(const struct moat_store_batch *b, struct moat_store_batch **out);

/* Completion of a submitted batch: MOAT_OK once its transaction committed,
 * else why not (then none of its statements took effect). Runs on the
 * writer thread: keep it short, never close the store from it, and post the
 * result to the owner's mailbox (the broker posts to its workers; it never
 * touches worker state here). */
typedef void (*moat_store_done_cb)(void *arg, moat_err rc);

/* Submit takes the batch in every case. MOAT_OK: cb will be called exactly
 * once. Otherwise (MOAT_E_LIMIT when too much is pending, MOAT_E_CLOSED
 * when closing) cb is never called and nothing was written. */
moat_err moat_store_submit(struct moat_store *st, struct moat_store_batch *b, moat_store_done_cb cb,
			   void *arg);
/* Submit and wait for the completion: for threads that may block (the
 * management thread, command-line tools), never for a worker's event loop.
 * Takes the batch in every case; returns the batch's result. */
moat_err moat_store_write(struct moat_store *st, struct moat_store_batch *b);
/* Ask the writer to checkpoint the WAL into the database and truncate it
 * after the next commit (an idle-time chore); cb gets the result. */
moat_err moat_store_checkpoint(struct moat_store *st, moat_store_done_cb cb, void *arg);
/* The same, waiting for it (not on the writer's thread). */
moat_err moat_store_checkpoint_wait(struct moat_store *st);

/* One result row; the values are valid only during the call. A non-OK
 * return stops the read and becomes its result. */
typedef moat_err (*moat_store_row_cb)(void *arg, const struct moat_val *cols, size_t ncols);

/* Rows are decoded by the module that owns the statement, in one function
 * next to its SQL (X_row_decode), into a struct with named fields; callers
 * never read another module's columns by position. A decoder checks the
 * columns with this: a column's type, and whether it may be NULL. */
struct moat_store_col {
	enum moat_val_type type;
	bool nullable;
};
/* MOAT_OK when cols are exactly n columns of these types, else
 * MOAT_E_CORRUPT (the row is not what the schema says). */
moat_err moat_store_cols_check(const struct moat_val *cols, size_t ncols,
			       const struct moat_store_col *want, size_t n);
/* Column specs for the modules' row decoders (their schema.c): text, int
 * or blob, NULL allowed or not; and the length of a spec array. */
#define MOAT_COL_T(nullable)                                                                       \
	{                                                                                          \
		MOAT_VAL_TEXT, (nullable)                                                          \
	}
#define MOAT_COL_I(nullable)                                                                       \
	{                                                                                          \
		MOAT_VAL_INT, (nullable)                                                           \
	}
#define MOAT_COL_B(nullable)                                                                       \
	{                                                                                          \
		MOAT_VAL_BLOB, (nullable)                                                          \
	}
#define MOAT_NCOLS(a) (sizeof(a) / sizeof((a)[0]))

/* Synchronous read on the read connection (thread-safe, serialised).
 * Sees only committed data. NOT for event loops' hot paths. */
moat_err moat_store_read(struct moat_store *st, struct moat_stmt id, const struct moat_val *params,
			 size_t n, moat_store_row_cb cb, void *arg);
/* First column of the first row as an integer; MOAT_E_NOTFOUND if none. */
moat_err moat_store_read_int(struct moat_store *st, struct moat_stmt id,
			     const struct moat_val *params, size_t n, int64_t *out);

/* Full consistency check (integrity and foreign keys). MOAT_E_CORRUPT with
 * the first problem in err. Slow on big databases: start-up or on demand. */
moat_err moat_store_check(struct moat_store *st, char *err, size_t errlen);

void moat_store_stats(struct moat_store *st, struct moat_store_stats *out);

#endif
