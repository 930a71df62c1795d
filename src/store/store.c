/*
 * The backend-neutral half of the store: batches, the bounded queue of
 * pending batches, the one writer thread and its group commit, statistics.
 *
 * Group commit: the writer takes everything pending, opens one transaction,
 * runs each batch inside its own savepoint (a statement-level failure, such
 * as a constraint, rolls back that batch alone), commits once, and only then
 * calls the completions. A storage failure (full, I/O, busy, corrupt) rolls
 * the whole group back and every batch in it gets that error: nothing is
 * reported committed that is not. The next group starts afresh, so the
 * writer recovers by itself when the storage does.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/reactor.h"
#include "store/internal.h"

void store_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void moat_store_batch_free(struct moat_store_batch *b)
{
	struct store_op *op, *next;

	if (b == NULL)
		return;
	for (op = b->head; op != NULL; op = next) {
		next = op->next;
		free(op);
	}
	free(b);
}

moat_err moat_store_batch_new(struct moat_store_batch **out)
{
	struct moat_store_batch *b;

	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return MOAT_E_NOMEM;
	*out = b;
	return MOAT_OK;
}

/* A statement as its module describes it; NULL if the name is not one. */
static const struct moat_store_stmt *stmt_def(struct moat_stmt id)
{
	if (id.mod == NULL || id.mod->stmts == NULL || id.idx >= id.mod->n_stmts)
		return NULL;
	return &id.mod->stmts[id.idx];
}

moat_err store_stmt_resolve(const struct moat_store *st, struct moat_stmt id,
			    enum moat_store_stmt_kind kind, unsigned *flat)
{
	const struct moat_store_stmt *d = stmt_def(id);
	size_t i;

	if (d == NULL || d->kind != kind)
		return MOAT_E_INVAL;
	/* A handful of modules: a scan costs less than a lookup structure. */
	for (i = 0; i < st->n_mods; i++)
		if (st->mods[i] == id.mod) {
			*flat = st->base[i] + id.idx;
			return MOAT_OK;
		}
	return MOAT_E_INVAL;
}

const char *store_stmt_module(const struct moat_store *st, unsigned flat, unsigned *idx)
{
	size_t i;

	for (i = st->n_mods; i-- > 0;)
		if (flat >= st->base[i]) {
			*idx = flat - st->base[i];
			return st->mods[i]->name;
		}
	*idx = flat;
	return "?";
}

moat_err moat_store_batch_add(struct moat_store_batch *b, struct moat_stmt id,
			      const struct moat_val *params, size_t n)
{
	const struct moat_store_stmt *d = stmt_def(id);
	struct store_op *op = NULL;
	size_t i, bytes = 0, off = 0;
	moat_err rc = MOAT_E_INVAL;

	if (b == NULL || b->checkpoint || d == NULL || d->kind != MOAT_STORE_WRITE ||
	    n != d->nparams || (n > 0 && params == NULL))
		goto out;
	rc = MOAT_E_LIMIT;
	if (b->n_ops >= MOAT_STORE_MAX_BATCH_OPS)
		goto out;
	for (i = 0; i < n; i++) {
		rc = MOAT_E_INVAL;
		if (params[i].type == MOAT_VAL_TEXT || params[i].type == MOAT_VAL_BLOB) {
			if (params[i].p == NULL && params[i].len != 0)
				goto out;
			/* No single value is larger than the largest packet. */
			rc = MOAT_E_TOO_LARGE;
			if (params[i].len > MOAT_MAX_PACKET_SIZE_MAX)
				goto out;
			bytes += params[i].len;
		} else if (params[i].type != MOAT_VAL_NULL && params[i].type != MOAT_VAL_INT) {
			goto out;
		}
	}
	rc = MOAT_E_NOMEM;
	op = malloc(sizeof(*op) + bytes + 1);
	if (op == NULL)
		goto out;
	op->next = NULL;
	op->id = id;
	op->n = (unsigned)n;
	for (i = 0; i < n; i++) {
		op->v[i] = params[i];
		if (params[i].type == MOAT_VAL_TEXT || params[i].type == MOAT_VAL_BLOB) {
			if (params[i].len > 0)
				memcpy(op->data + off, params[i].p, params[i].len);
			op->v[i].p = op->data + off;
			off += params[i].len;
		}
	}
	if (b->tail != NULL)
		b->tail->next = op;
	else
		b->head = op;
	b->tail = op;
	b->n_ops++;
	b->bytes += sizeof(*op) + bytes;
	op = NULL;
	rc = MOAT_OK;
out:
	free(op);
	return rc;
}

moat_err moat_store_batch_clone(const struct moat_store_batch *b, struct moat_store_batch **out)
{
	struct moat_store_batch *c = NULL;
	const struct store_op *op;
	moat_err rc;

	if (b == NULL || b->checkpoint)
		return MOAT_E_INVAL;
	if ((rc = moat_store_batch_new(&c)) != MOAT_OK)
		return rc;
	for (op = b->head; op != NULL; op = op->next) {
		rc = moat_store_batch_add(c, op->id, op->v, op->n);
		if (rc != MOAT_OK) {
			moat_store_batch_free(c);
			return rc;
		}
	}
	*out = c;
	return MOAT_OK;
}

static moat_err enqueue(struct moat_store *st, struct moat_store_batch *b)
{
	moat_err rc = MOAT_E_CLOSED;
	bool was_empty;
	uint64_t now;

	pthread_mutex_lock(&st->lock);
	if (st->stopping)
		goto out;
	rc = MOAT_E_LIMIT;
	if (st->n_pending >= MOAT_STORE_MAX_PENDING ||
	    b->bytes > MOAT_STORE_MAX_PENDING_BYTES - st->pending_bytes)
		goto out;
	was_empty = st->head == NULL;
	now = moat_now_us();
	if (was_empty) {
		/* A group starts: dense when it follows the last batch within
		 * the commit window. */
		st->group_first_us = now;
		st->group_dense =
		    st->last_enqueue_us != 0 && now - st->last_enqueue_us < st->commit_window_us;
	}
	st->last_enqueue_us = now;
	b->next = NULL;
	if (st->tail != NULL)
		st->tail->next = b;
	else
		st->head = b;
	st->tail = b;
	st->n_pending++;
	st->pending_bytes += b->bytes;
	/* The writer waits for the first batch, and in a commit window for
	 * the group to fill. */
	if (was_empty || st->n_pending == MOAT_STORE_GROUP_MAX)
		pthread_cond_signal(&st->cond);
	rc = MOAT_OK;
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

moat_err moat_store_submit(struct moat_store *st, struct moat_store_batch *b, moat_store_done_cb cb,
			   void *arg)
{
	moat_err rc = MOAT_E_INVAL;

	if (st == NULL || b == NULL || cb == NULL)
		goto out;
	b->cb = cb;
	b->arg = arg;
	b->rc = MOAT_OK;
	rc = enqueue(st, b);
out:
	if (rc != MOAT_OK)
		moat_store_batch_free(b);
	return rc;
}

struct store_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	moat_err rc;
};

static void store_wait_cb(void *arg, moat_err rc)
{
	struct store_wait *w = arg;

	pthread_mutex_lock(&w->lock);
	w->rc = rc;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Submit b and wait for its completion. */
static moat_err submit_wait(struct moat_store *st, struct moat_store_batch *b)
{
	struct store_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, MOAT_OK};
	moat_err rc;

	rc = moat_store_submit(st, b, store_wait_cb, &w);
	if (rc != MOAT_OK)
		return rc;
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return w.rc;
}

moat_err moat_store_write(struct moat_store *st, struct moat_store_batch *b)
{
	return submit_wait(st, b);
}

static moat_err checkpoint_batch(struct moat_store_batch **out)
{
	moat_err rc = moat_store_batch_new(out);

	if (rc == MOAT_OK)
		(*out)->checkpoint = true;
	return rc;
}

moat_err moat_store_checkpoint(struct moat_store *st, moat_store_done_cb cb, void *arg)
{
	struct moat_store_batch *b = NULL;
	moat_err rc = checkpoint_batch(&b);

	return rc == MOAT_OK ? moat_store_submit(st, b, cb, arg) : rc;
}

moat_err moat_store_checkpoint_wait(struct moat_store *st)
{
	struct moat_store_batch *b = NULL;
	moat_err rc = checkpoint_batch(&b);

	return rc == MOAT_OK ? submit_wait(st, b) : rc;
}

static void log_failure(struct moat_store *st, moat_err rc, const char *detail, size_t n)
{
	uint64_t now = moat_now_ms();

	/* Loud, but one line a second at most while the storage stays bad. */
	if (!st->failing || now - st->last_err_log_ms >= 1000u) {
		log_error("store_write_failed",
			  "err=\"%s\" detail=\"%s\" batches=%zu suppressed=%llu path=\"%s\"",
			  moat_strerror(rc), detail, n, (unsigned long long)st->suppressed,
			  st->path);
		st->last_err_log_ms = now;
		st->suppressed = 0;
	} else {
		st->suppressed++;
	}
	st->failing = true;
}

/* Run one group: see the comment at the top of the file. */
static void run_group(struct moat_store *st, struct moat_store_batch *list)
{
	const struct store_backend *be = st->be;
	struct moat_store_batch *b;
	struct store_op *op;
	unsigned flat = 0;
	size_t n_data = 0;
	bool want_ckpt = false;
	moat_err grc = MOAT_OK, brc, crc;

	for (b = list; b != NULL; b = b->next) {
		if (b->checkpoint)
			want_ckpt = true;
		else
			n_data++;
	}
	if (n_data == 0)
		goto checkpoint;
	atomic_fetch_add(&st->n_txn, 1);
	grc = be->begin(st);
	for (b = list; b != NULL && grc == MOAT_OK; b = b->next) {
		if (b->checkpoint)
			continue;
		grc = be->savepoint(st);
		if (grc != MOAT_OK)
			break;
		brc = MOAT_OK;
		for (op = b->head; op != NULL && brc == MOAT_OK; op = op->next) {
			/* A statement of a module this store does not hold fails
			 * its own batch only. */
			brc = store_stmt_resolve(st, op->id, MOAT_STORE_WRITE, &flat);
			if (brc == MOAT_OK)
				brc = be->exec(st, flat, op);
		}
		if (brc == MOAT_OK) {
			grc = be->release(st);
			continue;
		}
		if (!store_err_is_local(brc) || !be->in_txn(st)) {
			grc = brc;
			break;
		}
		b->rc = brc;
		grc = be->rollback_to(st);
		if (grc == MOAT_OK)
			grc = be->release(st);
	}
	if (grc == MOAT_OK)
		grc = be->commit(st);
	if (grc != MOAT_OK) {
		log_failure(st, grc, be->errmsg(st), n_data);
		if (be->in_txn(st))
			be->rollback(st);
		atomic_fetch_add(&st->n_errors, 1);
		for (b = list; b != NULL; b = b->next)
			if (!b->checkpoint && !store_err_is_local(b->rc))
				b->rc = grc;
	} else {
		atomic_fetch_add(&st->n_commit, 1);
		if (st->failing) {
			log_warn("store_recovered", "suppressed=%llu path=\"%s\"",
				 (unsigned long long)st->suppressed, st->path);
			st->failing = false;
			st->suppressed = 0;
		}
	}
checkpoint:
	if (want_ckpt) {
		crc = be->checkpoint(st);
		if (crc != MOAT_OK)
			log_warn("store_checkpoint_failed", "err=\"%s\" detail=\"%s\"",
				 moat_strerror(crc), be->errmsg(st));
		for (b = list; b != NULL; b = b->next)
			if (b->checkpoint)
				b->rc = crc;
	}
}

static void complete(struct moat_store *st, struct moat_store_batch *list)
{
	struct moat_store_batch *b, *next;

	for (b = list; b != NULL; b = next) {
		next = b->next;
		atomic_fetch_add(&st->n_batches, 1);
		if (b->rc != MOAT_OK)
			atomic_fetch_add(&st->n_batches_failed, 1);
		b->cb(b->arg, b->rc);
		moat_store_batch_free(b);
	}
}

static void deadline_ts(uint64_t ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ms / 1000u);
	ts->tv_nsec = (long)(ms % 1000u) * 1000000L;
}

static void deadline_ts_us(uint64_t us, struct timespec *ts)
{
	ts->tv_sec = (time_t)(us / 1000000u);
	ts->tv_nsec = (long)(us % 1000000u) * 1000L;
}

static void *writer_main(void *arg)
{
	struct moat_store *st = arg;
	struct moat_store_batch *list;
	struct timespec ts;
	uint64_t last = 0, deadline;

	for (;;) {
		pthread_mutex_lock(&st->lock);
		while (st->head == NULL && !st->stopping)
			pthread_cond_wait(&st->cond, &st->lock);
		if (st->head == NULL) {
			pthread_mutex_unlock(&st->lock);
			break;
		}
		/* Relaxed: at most one commit per flush interval; whatever
		 * arrives meanwhile joins the group. Closing flushes now. */
		if (st->durability == MOAT_STORE_RELAXED) {
			deadline = last + st->flush_ms;
			deadline_ts(deadline, &ts);
			while (!st->stopping && moat_now_ms() < deadline)
				if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT)
					break;
		} else if (st->commit_window_us > 0 && st->group_dense) {
			/* Strict, traffic denser than the window: let the
			 * group fill for up to the window after its first
			 * batch (one fsync for all of them). */
			uint64_t until = st->group_first_us + st->commit_window_us;
			deadline_ts_us(until, &ts);
			while (!st->stopping && st->n_pending < MOAT_STORE_GROUP_MAX &&
			       moat_now_us() < until)
				if (pthread_cond_timedwait(&st->cond, &st->lock, &ts) == ETIMEDOUT)
					break;
		}
		list = st->head;
		st->head = st->tail = NULL;
		st->n_pending = 0;
		st->pending_bytes = 0;
		pthread_mutex_unlock(&st->lock);

		run_group(st, list);
		last = moat_now_ms();
		complete(st, list);
	}
	return NULL;
}

/* Check the modules' descriptions (a bad table fails at start-up, not at
 * the first use of a statement) and lay their statements out one after
 * another for the backend. */
static moat_err register_modules(struct moat_store *st, const struct moat_store_opts *opts,
				 char *err, size_t errlen)
{
	const struct moat_store_module *m;
	const struct moat_store_stmt *d;
	size_t i, j, k, total = 0;

	st->mods = opts->modules != NULL ? opts->modules : moat_store_modules;
	st->n_mods = opts->modules != NULL ? opts->n_modules : moat_store_n_modules;
	if (st->n_mods == 0 || st->n_mods > MOAT_STORE_MAX_MODULES) {
		store_seterr(err, errlen, "store: %zu modules (1..%u)", st->n_mods,
			     MOAT_STORE_MAX_MODULES);
		return MOAT_E_INVAL;
	}
	for (i = 0; i < st->n_mods; i++) {
		m = st->mods[i];
		if (m == NULL || m->name == NULL || m->name[0] == '\0' ||
		    strlen(m->name) > MOAT_STORE_MAX_MODULE_NAME ||
		    m->n_stmts > MOAT_STORE_MAX_MODULE_STMTS ||
		    (m->n_stmts > 0 && m->stmts == NULL) ||
		    (m->n_migrations > 0 && m->migrations == NULL)) {
			store_seterr(err, errlen, "store: module %zu is not described", i);
			return MOAT_E_INVAL;
		}
		for (j = 0; j < i; j++)
			if (strcmp(st->mods[j]->name, m->name) == 0) {
				store_seterr(err, errlen, "store: module %s is registered twice",
					     m->name);
				return MOAT_E_INVAL;
			}
		for (k = 0; k < m->n_migrations; k++)
			if (m->migrations[k].version != (int)k + 1 ||
			    m->migrations[k].sql == NULL || m->migrations[k].description == NULL) {
				store_seterr(err, errlen,
					     "store: module %s: migration %zu is not version %zu",
					     m->name, k, k + 1);
				return MOAT_E_INVAL;
			}
		for (k = 0; k < m->n_stmts; k++) {
			d = &m->stmts[k];
			if (d->sql == NULL || d->nparams > MOAT_STORE_MAX_PARAMS ||
			    (d->kind != MOAT_STORE_WRITE && d->kind != MOAT_STORE_READ)) {
				store_seterr(err, errlen, "store: module %s: statement %zu is bad",
					     m->name, k);
				return MOAT_E_INVAL;
			}
		}
		st->base[i] = (unsigned)total;
		total += m->n_stmts;
	}
	st->stmts = calloc(total > 0 ? total : 1, sizeof(*st->stmts));
	if (st->stmts == NULL)
		return MOAT_E_NOMEM;
	for (i = 0; i < st->n_mods; i++)
		for (k = 0; k < st->mods[i]->n_stmts; k++)
			st->stmts[st->base[i] + k] = &st->mods[i]->stmts[k];
	st->n_stmts = (unsigned)total;
	return MOAT_OK;
}

int moat_store_module_version(const struct moat_store_module *mod)
{
	return mod != NULL ? (int)mod->n_migrations : 0;
}

moat_err moat_store_open(const struct moat_store_opts *opts, struct moat_store **out, char *err,
			 size_t errlen)
{
	struct moat_store *st = NULL;
	pthread_condattr_t ca;
	bool lock_init = false, cond_init = false, be_open = false;
	moat_err rc = MOAT_E_INVAL;

	store_seterr(err, errlen, "%s", "");
	if (opts == NULL || out == NULL || opts->path == NULL || opts->path[0] == '\0' ||
	    strlen(opts->path) >= MOAT_MAX_PATH) {
		store_seterr(err, errlen, "store: a database path is required");
		goto out;
	}
	if (opts->durability != MOAT_STORE_STRICT && opts->durability != MOAT_STORE_RELAXED) {
		store_seterr(err, errlen, "store: unknown durability mode");
		goto out;
	}
	if (opts->flush_ms != 0 && (opts->flush_ms < MOAT_STORE_FLUSH_MS_MIN ||
				    opts->flush_ms > MOAT_STORE_FLUSH_MS_MAX)) {
		store_seterr(err, errlen, "store: flush interval %u ms is outside %u..%u ms",
			     opts->flush_ms, MOAT_STORE_FLUSH_MS_MIN, MOAT_STORE_FLUSH_MS_MAX);
		goto out;
	}
	if (opts->commit_window_us > MOAT_STORE_COMMIT_WINDOW_US_MAX) {
		store_seterr(err, errlen, "store: commit window %u us is above %u us",
			     opts->commit_window_us, MOAT_STORE_COMMIT_WINDOW_US_MAX);
		goto out;
	}
	if (opts->busy_ms != 0 &&
	    (opts->busy_ms < MOAT_STORE_BUSY_MS_MIN || opts->busy_ms > MOAT_STORE_BUSY_MS_MAX)) {
		store_seterr(err, errlen, "store: busy timeout %u ms is outside %u..%u ms",
			     opts->busy_ms, MOAT_STORE_BUSY_MS_MIN, MOAT_STORE_BUSY_MS_MAX);
		goto out;
	}
	rc = MOAT_E_NOMEM;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		goto out;
	st->path = strdup(opts->path);
	if (st->path == NULL)
		goto out;
	st->be = &store_sqlite_backend;
	st->durability = opts->durability;
	st->flush_ms = opts->flush_ms != 0 ? opts->flush_ms : MOAT_STORE_FLUSH_MS_DEFAULT;
	st->commit_window_us = opts->commit_window_us;
	st->busy_ms = opts->busy_ms != 0 ? opts->busy_ms : MOAT_STORE_BUSY_MS_DEFAULT;
	st->fault_cb = opts->fault_cb;
	st->fault_arg = opts->fault_arg;
	rc = register_modules(st, opts, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = MOAT_E_INTERNAL;
	if (pthread_mutex_init(&st->lock, NULL) != 0)
		goto out;
	lock_init = true;
	/* The relaxed deadline is on the monotonic clock. */
	if (pthread_condattr_init(&ca) != 0)
		goto out;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&st->cond, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		goto out;
	}
	pthread_condattr_destroy(&ca);
	cond_init = true;

	rc = st->be->open(st, err, errlen);
	if (rc != MOAT_OK)
		goto out;
	be_open = true;
	rc = MOAT_E_INTERNAL;
	if (pthread_create(&st->writer, NULL, writer_main, st) != 0) {
		store_seterr(err, errlen, "store: cannot start the writer thread");
		goto out;
	}
	st->thread_started = true;
	*out = st;
	st = NULL;
	rc = MOAT_OK;
out:
	if (st != NULL) {
		if (be_open)
			st->be->close(st);
		if (cond_init)
			pthread_cond_destroy(&st->cond);
		if (lock_init)
			pthread_mutex_destroy(&st->lock);
		free(st->stmts);
		free(st->path);
		free(st);
	}
	return rc;
}

void moat_store_close(struct moat_store *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&st->lock);
	st->stopping = true;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->lock);
	if (st->thread_started)
		pthread_join(st->writer, NULL);
	st->be->close(st);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
	free(st->stmts);
	free(st->path);
	free(st);
}

moat_err moat_store_read(struct moat_store *st, struct moat_stmt id, const struct moat_val *params,
			 size_t n, moat_store_row_cb cb, void *arg)
{
	const struct moat_store_stmt *d = stmt_def(id);
	unsigned flat;

	if (st == NULL || cb == NULL || d == NULL || n != d->nparams || (n > 0 && params == NULL) ||
	    store_stmt_resolve(st, id, MOAT_STORE_READ, &flat) != MOAT_OK)
		return MOAT_E_INVAL;
	return st->be->read(st, flat, params, n, cb, arg);
}

struct read_int {
	bool found;
	int64_t v;
};

static moat_err read_int_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct read_int *ri = arg;

	if (ri->found)
		return MOAT_OK;
	if (ncols < 1 || cols[0].type != MOAT_VAL_INT)
		return MOAT_E_INVAL;
	ri->found = true;
	ri->v = cols[0].i;
	return MOAT_OK;
}

moat_err moat_store_read_int(struct moat_store *st, struct moat_stmt id,
			     const struct moat_val *params, size_t n, int64_t *out)
{
	struct read_int ri = {false, 0};
	moat_err rc;

	rc = moat_store_read(st, id, params, n, read_int_cb, &ri);
	if (rc == MOAT_OK && !ri.found)
		rc = MOAT_E_NOTFOUND;
	if (rc == MOAT_OK)
		*out = ri.v;
	return rc;
}

moat_err moat_store_check(struct moat_store *st, char *err, size_t errlen)
{
	store_seterr(err, errlen, "%s", "");
	if (st == NULL)
		return MOAT_E_INVAL;
	return st->be->check(st, err, errlen);
}

void moat_store_stats(struct moat_store *st, struct moat_store_stats *out)
{
	out->transactions = atomic_load(&st->n_txn);
	out->commits = atomic_load(&st->n_commit);
	out->batches = atomic_load(&st->n_batches);
	out->batches_failed = atomic_load(&st->n_batches_failed);
	out->fsyncs = atomic_load(&st->n_fsync);
	out->errors = atomic_load(&st->n_errors);
}

moat_err moat_store_cols_check(const struct moat_val *cols, size_t ncols,
			       const struct moat_store_col *want, size_t n)
{
	size_t i;

	if (cols == NULL || ncols != n)
		return MOAT_E_CORRUPT;
	for (i = 0; i < n; i++)
		if (cols[i].type != want[i].type &&
		    !(want[i].nullable && cols[i].type == MOAT_VAL_NULL))
			return MOAT_E_CORRUPT;
	return MOAT_OK;
}
