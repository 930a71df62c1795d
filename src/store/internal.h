/*
 * Inside the store: the registered modules' statements, the batch
 * representation, and the backend contract (struct store_backend) that
 * store.c drives. store.c owns everything backend-neutral: batches, the
 * pending queue, the writer thread and its group-commit loop, statistics.
 * A backend owns connections, schema migrations, statement preparation
 * and execution, transactions and reads.
 */
#ifndef MOAT_STORE_INTERNAL_H
#define MOAT_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/limits.h"
#include "store/store.h"

/* Write an operator-facing message into err (NULL or 0 length: nothing). */
void store_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The store's format version: the legacy global schema_version table holds
 * it. 1..5 were global schema versions (before modules owned their
 * tables); 6 = per-module versions in module_versions. */
#define STORE_FORMAT_VERSION 6

/* What the global versions 1..5 of the old single migration list created,
 * as per-module versions: the one-time conversion of an older database
 * (docs/storage.md "Migrations"). */
struct store_legacy_step {
	int global;	    /* the old schema_version */
	const char *module; /* became this module's ... */
	int version;	    /* ... version */
};

extern const struct store_legacy_step store_legacy_steps[];
extern const size_t store_n_legacy_steps;

/* The statement id names in this store: its index in st->stmts (every
 * registered module's statements, one after another); MOAT_E_INVAL if the
 * module is not registered, the index or the kind is wrong. */
moat_err store_stmt_resolve(const struct moat_store *st, struct moat_stmt id,
			    enum moat_store_stmt_kind kind, unsigned *flat);
/* The other way, for logs: the module and its index of statement flat. */
const char *store_stmt_module(const struct moat_store *st, unsigned flat, unsigned *idx);

/* One statement of a batch with its own copy of the text/blob bytes. */
struct store_op {
	struct store_op *next;
	struct moat_stmt id;
	unsigned n;
	struct moat_val v[MOAT_STORE_MAX_PARAMS];
	unsigned char data[]; /* the copied bytes the values point into */
};

struct moat_store_batch {
	struct moat_store_batch *next;
	struct store_op *head, *tail;
	size_t n_ops;
	size_t bytes;
	bool checkpoint; /* a checkpoint request, no statements */
	moat_store_done_cb cb;
	void *arg;
	moat_err rc;
};

/* What a backend implements. All but open/read/check/close are called on
 * the writer thread only. exec's result tells store.c whether the failure
 * is the statement's own (MOAT_E_EXISTS, MOAT_E_INVAL, MOAT_E_TOO_LARGE:
 * only that batch fails) or the storage's (anything else: the whole group
 * is rolled back); in_txn tells whether the backend rolled the transaction
 * back on its own. */
struct store_backend {
	moat_err (*open)(struct moat_store *st, char *err, size_t errlen);
	void (*close)(struct moat_store *st);
	moat_err (*begin)(struct moat_store *st);
	moat_err (*savepoint)(struct moat_store *st);
	moat_err (*release)(struct moat_store *st);
	moat_err (*rollback_to)(struct moat_store *st);
	moat_err (*exec)(struct moat_store *st, unsigned flat, const struct store_op *op);
	moat_err (*commit)(struct moat_store *st);
	void (*rollback)(struct moat_store *st);
	bool (*in_txn)(struct moat_store *st);
	moat_err (*checkpoint)(struct moat_store *st);
	/* the last error's text, for the log */
	const char *(*errmsg)(struct moat_store *st);
	moat_err (*read)(struct moat_store *st, unsigned flat, const struct moat_val *params,
			 size_t n, moat_store_row_cb cb, void *arg);
	moat_err (*check)(struct moat_store *st, char *err, size_t errlen);
};

extern const struct store_backend store_sqlite_backend;

struct moat_store {
	const struct store_backend *be;
	void *impl; /* the backend's state */
	char *path;
	enum moat_store_durability durability;
	uint32_t flush_ms;
	uint32_t commit_window_us;
	uint64_t last_enqueue_us; /* monotonic, under lock: the previous batch's arrival */
	uint64_t group_first_us;  /* when the pending group's first batch arrived */
	bool group_dense;	  /* it arrived within the window of the one before */
	uint32_t busy_ms;
	moat_store_fault_cb fault_cb;
	void *fault_arg;

	/* the registered modules, and their statements one after another:
	 * module i's statement k is stmts[base[i] + k] */
	const struct moat_store_module *const *mods;
	size_t n_mods;
	unsigned base[MOAT_STORE_MAX_MODULES];
	const struct moat_store_stmt **stmts;
	unsigned n_stmts;

	/* pending batches, guarded by lock; the writer waits on cond */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct moat_store_batch *head, *tail;
	size_t n_pending, pending_bytes;
	bool stopping;
	bool thread_started;
	pthread_t writer;

	/* writer-thread only: error-episode logging */
	bool failing;
	uint64_t last_err_log_ms;
	uint64_t suppressed;

	atomic_uint_fast64_t n_txn, n_commit, n_batches, n_batches_failed, n_fsync, n_errors;
};

/* Statement-level failures only sink their own batch. */
static inline bool store_err_is_local(moat_err rc)
{
	return rc == MOAT_E_EXISTS || rc == MOAT_E_INVAL || rc == MOAT_E_TOO_LARGE;
}

#endif
