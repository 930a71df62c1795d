/*
 * The audit log in the store (audit_store.h): appending entries to the hash
 * chain in the same transaction as the change they record, signing
 * checkpoints, and loading the log back for verification and export.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit_store.h"
#include "core/log.h"
#include "core/reactor.h"
#include "audit/schema.h"

struct head_row {
	int64_t seq;
	uint8_t hash[MOAT_AUDIT_HASH_LEN];
	bool found;
};

static moat_err head_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct head_row *h = arg;
	struct moat_audit_head_row r;

	if (moat_audit_head_row_decode(cols, ncols, &r) != MOAT_OK || r.seq.type != MOAT_VAL_INT ||
	    r.hash.type != MOAT_VAL_BLOB || r.hash.len != MOAT_AUDIT_HASH_LEN)
		return MOAT_E_CORRUPT;
	h->seq = r.seq.i;
	memcpy(h->hash, r.hash.p, MOAT_AUDIT_HASH_LEN);
	h->found = true;
	return MOAT_OK;
}

static moat_err cp_last_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	int64_t *seq = arg;
	struct moat_audit_checkpoint_row r;

	if (moat_audit_checkpoint_row_decode(cols, ncols, &r) != MOAT_OK ||
	    r.seq.type != MOAT_VAL_INT)
		return MOAT_E_CORRUPT;
	*seq = r.seq.i;
	return MOAT_OK;
}

static moat_err adopt_tail(struct moat_audit_log *log, int64_t db_seq,
			   const uint8_t db_head[MOAT_AUDIT_HASH_LEN]);

moat_err moat_audit_log_open(struct moat_audit_log *log, struct moat_store *store, const char *dir,
			     moat_audit_sign_cb sign, void *sign_arg, char *err, size_t errlen)
{
	char path[MOAT_MAX_PATH];
	struct head_row h;
	int n;
	moat_err rc;

	memset(log, 0, sizeof(*log));
	memset(&h, 0, sizeof(h));
	log->store = store;
	log->sign = sign;
	log->sign_arg = sign_arg;
	if (sign == NULL) {
		snprintf(err, errlen, "audit: no checkpoint signer (the key process)");
		return MOAT_E_INVAL;
	}
	n = snprintf(path, sizeof(path), "%s/audit.pub", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "audit: path too long: %s/audit.pub", dir);
		return MOAT_E_LIMIT;
	}
	rc = moat_audit_pub_load(path, log->pk, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_read(store, AUDIT_STMT(AUDIT_HEAD), NULL, 0, head_cb, &h);
	if (rc == MOAT_OK)
		rc = moat_store_read(store, AUDIT_STMT(CHECKPOINT_LAST), NULL, 0, cp_last_cb,
				     &log->sealed_seq);
	if (rc != MOAT_OK) {
		snprintf(err, errlen, "cannot read the audit log head: %s", moat_strerror(rc));
		return rc;
	}
	if (h.found && h.seq > log->sealed_seq) {
		rc = adopt_tail(log, h.seq, h.hash);
		if (rc != MOAT_OK) {
			snprintf(err, errlen, "cannot record the unsealed audit tail: %s",
				 moat_strerror(rc));
			return rc;
		}
	} else if (h.found) {
		log->seq = h.seq;
		memcpy(log->head, h.hash, sizeof(log->head));
	}
	return MOAT_OK;
}

void moat_audit_log_close(struct moat_audit_log *log)
{
	log->sign = NULL;
	log->sign_arg = NULL;
}

/* A signed checkpoint of (seq, head) added to batch b. Every entry is
 * sealed in the transaction that writes it, so an entry without a
 * checkpoint after it was not written by a Moat whose key process holds the
 * key. */
static moat_err add_checkpoint(struct moat_audit_log *log, struct moat_store_batch *b, int64_t seq,
			       const uint8_t head[MOAT_AUDIT_HASH_LEN])
{
	struct moat_audit_checkpoint cp;
	struct moat_val v[4];
	moat_err rc;

	memset(&cp, 0, sizeof(cp));
	cp.seq = seq;
	cp.ts_ms = moat_wall_ms();
	memcpy(cp.head, head, sizeof(cp.head));
	rc = log->sign != NULL ? log->sign(log->sign_arg, &cp) : MOAT_E_INVAL;
	if (rc != MOAT_OK) {
		log_error("audit_sign_failed", "seq=%lld error=%s", (long long)seq,
			  moat_strerror(rc));
		return rc;
	}
	/* Cheap next to a write, and it catches a key process holding another
	 * key than audit.pub names before a checkpoint nobody can verify is
	 * stored. */
	if (!moat_audit_checkpoint_ok(&cp, log->pk)) {
		log_error("audit_sign_failed",
			  "seq=%lld error=\"signature does not verify "
			  "against audit.pub\"",
			  (long long)seq);
		return MOAT_E_CRYPTO;
	}
	v[0] = moat_val_int(cp.seq);
	v[1] = moat_val_int(cp.ts_ms);
	v[2] = moat_val_blob(cp.head, sizeof(cp.head));
	v[3] = moat_val_blob(cp.sig, sizeof(cp.sig));
	return moat_store_batch_add(b, AUDIT_STMT(CHECKPOINT_PUT), v, 4);
}

static moat_err write_one(struct moat_audit_log *log, struct moat_store_batch **b,
			  const struct moat_audit_event *ev);

/*
 * The stored head is past what this process sealed: rows were added by
 * something that does not hold the key (or, with an older Moat, not sealed
 * before a crash). Adopt them, but say so in a sealed entry first, so the
 * signature covers an explicit statement that entries first..last were
 * found unsealed rather than silently vouching for them.
 */
static moat_err adopt_tail(struct moat_audit_log *log, int64_t db_seq,
			   const uint8_t db_head[MOAT_AUDIT_HASH_LEN])
{
	struct moat_audit_event ev;
	struct moat_store_batch *b = NULL;
	char detail[160];
	int64_t first = log->sealed_seq + 1;

	log_error("audit_unsealed_tail",
		  "first=%lld last=%lld note=\"audit entries without a signed checkpoint: written "
		  "by something without the audit key; inspect them\"",
		  (long long)first, (long long)db_seq);
	snprintf(detail, sizeof(detail), "{\"first\":%lld,\"last\":%lld}", (long long)first,
		 (long long)db_seq);
	log->seq = db_seq;
	memcpy(log->head, db_head, sizeof(log->head));
	memset(&ev, 0, sizeof(ev));
	ev.actor = "system";
	ev.action = "audit.unsealed_tail";
	ev.target = "";
	ev.outcome = "error";
	ev.detail = detail;
	return write_one(log, &b, &ev);
}

static moat_err read_head(struct moat_store *st, int64_t *seq, uint8_t head[MOAT_AUDIT_HASH_LEN])
{
	struct head_row h;
	moat_err rc;

	memset(&h, 0, sizeof(h));
	rc = moat_store_read(st, AUDIT_STMT(AUDIT_HEAD), NULL, 0, head_cb, &h);
	*seq = h.found ? h.seq : 0;
	memcpy(head, h.hash, MOAT_AUDIT_HASH_LEN);
	return rc;
}

static moat_err cp_row_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_audit_checkpoint *cp = arg;
	struct moat_audit_checkpoint_row r;

	if (moat_audit_checkpoint_row_decode(cols, ncols, &r) != MOAT_OK ||
	    r.seq.type != MOAT_VAL_INT || r.ts.type != MOAT_VAL_INT ||
	    r.head.type != MOAT_VAL_BLOB || r.head.len != sizeof(cp->head) ||
	    r.sig.type != MOAT_VAL_BLOB || r.sig.len != sizeof(cp->sig))
		return MOAT_E_CORRUPT;
	cp->seq = r.seq.i;
	cp->ts_ms = r.ts.i;
	memcpy(cp->head, r.head.p, sizeof(cp->head));
	memcpy(cp->sig, r.sig.p, sizeof(cp->sig));
	return MOAT_OK;
}

/* Does the last checkpoint, signed with our key, seal exactly (seq, head)? */
static bool sealed_by_key(const struct moat_audit_log *log, int64_t seq,
			  const uint8_t head[MOAT_AUDIT_HASH_LEN])
{
	struct moat_audit_checkpoint cp;

	memset(&cp, 0, sizeof(cp));
	if (moat_store_read(log->store, AUDIT_STMT(CHECKPOINT_LAST), NULL, 0, cp_row_cb, &cp) !=
	    MOAT_OK)
		return false;
	return cp.seq == seq && sodium_memcmp(cp.head, head, sizeof(cp.head)) == 0 &&
	       moat_audit_checkpoint_ok(&cp, log->pk);
}

moat_err moat_audit_log_write(struct moat_audit_log *log, struct moat_store_batch **b,
			      const struct moat_audit_event *ev)
{
	struct moat_store_batch *copy = NULL;
	uint8_t head[MOAT_AUDIT_HASH_LEN];
	int64_t seq = 0;
	moat_err rc;

	/* Keep a copy of the caller's changes for one retry. */
	if (*b != NULL && moat_store_batch_clone(*b, &copy) != MOAT_OK)
		copy = NULL;
	rc = write_one(log, b, ev);
	if (rc != MOAT_OK && read_head(log->store, &seq, head) == MOAT_OK && seq > log->seq) {
		/* Someone appended behind our back while we run: adopt, then
		 * retry once with the caller's changes. An offline command
		 * holding the key (`moat cert issue`) seals what it writes:
		 * that tail is adopted as is, anything else is flagged. */
		if (sealed_by_key(log, seq, head)) {
			log->seq = seq;
			memcpy(log->head, head, sizeof(log->head));
			log->sealed_seq = seq;
			rc = write_one(log, &copy, ev);
			copy = NULL;
		} else if (adopt_tail(log, seq, head) == MOAT_OK) {
			rc = write_one(log, &copy, ev);
			copy = NULL;
		}
	}
	moat_store_batch_free(copy);
	return rc;
}

static moat_err write_one(struct moat_audit_log *log, struct moat_store_batch **b,
			  const struct moat_audit_event *ev)
{
	struct moat_audit_entry e;
	struct moat_val v[10];
	moat_err rc;

	if (*b == NULL && (rc = moat_store_batch_new(b)) != MOAT_OK)
		return rc;
	memset(&e, 0, sizeof(e));
	e.seq = log->seq + 1;
	e.ts_ms = moat_wall_ms();
	e.actor = ev->actor ? ev->actor : "system";
	e.action = ev->action;
	e.target = ev->target ? ev->target : "";
	e.outcome = ev->outcome ? ev->outcome : "ok";
	e.peer = ev->peer ? ev->peer : "";
	e.detail = ev->detail ? ev->detail : "{}";
	if (strlen(e.detail) > MOAT_AUDIT_DETAIL_MAX)
		e.detail = "{\"truncated\":true}";
	moat_audit_chain(&e, log->head);
	v[0] = moat_val_int(e.seq);
	v[1] = moat_val_int(e.ts_ms);
	v[2] = moat_val_text(e.actor, strlen(e.actor));
	v[3] = moat_val_text(e.action, strlen(e.action));
	v[4] = moat_val_text(e.target, strlen(e.target));
	v[5] = moat_val_text(e.outcome, strlen(e.outcome));
	v[6] = moat_val_text(e.peer, strlen(e.peer));
	v[7] = moat_val_text(e.detail, strlen(e.detail));
	v[8] = moat_val_blob(e.prev, sizeof(e.prev));
	v[9] = moat_val_blob(e.hash, sizeof(e.hash));
	rc = moat_store_batch_add(*b, AUDIT_STMT(AUDIT_PUT), v, 10);
	if (rc == MOAT_OK)
		rc = add_checkpoint(log, *b, e.seq, e.hash);
	if (rc != MOAT_OK) {
		moat_store_batch_free(*b);
		*b = NULL;
		log->failures++;
		return rc;
	}
	rc = moat_store_write(log->store, *b);
	*b = NULL;
	if (rc != MOAT_OK) {
		log->failures++;
		log_error("audit_write_failed", "action=%s error=%s", e.action, moat_strerror(rc));
		return rc;
	}
	log->seq = e.seq;
	memcpy(log->head, e.hash, sizeof(log->head));
	log->sealed_seq = e.seq;
	log->appended++;
	{
		/* The head also goes to the log stream: a copy outside the
		 * database (log shipping keeps it) against which a truncated or
		 * re-signed log can be caught. */
		char hex[2 * MOAT_AUDIT_HASH_LEN + 1];
		size_t i;
		for (i = 0; i < MOAT_AUDIT_HASH_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02x", e.hash[i]);
		log_info("audit_checkpoint", "seq=%lld head=%s action=%s", (long long)e.seq, hex,
			 e.action);
	}
	return MOAT_OK;
}

/* Loading rows back. Strings are copied: the store's values live only
 * during the callback. */
struct load {
	struct moat_audit_entry *e;
	size_t n, cap;
	struct moat_audit_checkpoint *cp;
	size_t ncp, cpcap;
};

static char *dup_text(const struct moat_val *v)
{
	char *s;

	/* A NUL inside would hide the bytes after it from the hash. */
	if (v->type != MOAT_VAL_TEXT || memchr(v->p, '\0', v->len) != NULL)
		return NULL;
	s = malloc(v->len + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, v->p, v->len);
	s[v->len] = '\0';
	return s;
}

static void entry_clear(struct moat_audit_entry *e)
{
	free((char *)(uintptr_t)e->actor);
	free((char *)(uintptr_t)e->action);
	free((char *)(uintptr_t)e->target);
	free((char *)(uintptr_t)e->outcome);
	free((char *)(uintptr_t)e->peer);
	free((char *)(uintptr_t)e->detail);
}

/* A row that does not even have the right types is still an entry (so the
 * verifier reports it as modified): wrong blobs become zero hashes. */
static moat_err row_to_entry(const struct moat_val *cols, size_t ncols, struct moat_audit_entry *e,
			     bool copy)
{
	struct moat_audit_entry_row r;
	size_t i;
	bool poisoned = false;

	if (moat_audit_entry_row_decode(cols, ncols, &r) != MOAT_OK)
		return MOAT_E_CORRUPT;
	memset(e, 0, sizeof(*e));
	e->seq = r.seq.type == MOAT_VAL_INT ? r.seq.i : 0;
	e->ts_ms = r.ts.type == MOAT_VAL_INT ? r.ts.i : 0;
	if (copy) {
		const char **f[6] = {&e->actor,	  &e->action, &e->target,
				     &e->outcome, &e->peer,   &e->detail};
		const struct moat_val *t[6] = {&r.actor,   &r.action, &r.target,
					       &r.outcome, &r.peer,   &r.detail};
		for (i = 0; i < 6; i++) {
			char *s = dup_text(t[i]);
			if (s == NULL) { /* not text, or a NUL inside: cannot match its hash */
				s = calloc(1, 1);
				poisoned = true;
			}
			if (s == NULL) {
				entry_clear(e);
				return MOAT_E_NOMEM;
			}
			*f[i] = s;
		}
	}
	if (r.prev.type == MOAT_VAL_BLOB && r.prev.len == MOAT_AUDIT_HASH_LEN)
		memcpy(e->prev, r.prev.p, MOAT_AUDIT_HASH_LEN);
	if (r.hash.type == MOAT_VAL_BLOB && r.hash.len == MOAT_AUDIT_HASH_LEN)
		memcpy(e->hash, r.hash.p, MOAT_AUDIT_HASH_LEN);
	if (poisoned)
		e->hash[0] ^= 0xff; /* reported as modified */
	return MOAT_OK;
}

static moat_err load_entry_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct load *l = arg;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 256;
		struct moat_audit_entry *ne = realloc(l->e, ncap * sizeof(*ne));
		if (ne == NULL)
			return MOAT_E_NOMEM;
		l->e = ne;
		l->cap = ncap;
	}
	if (row_to_entry(cols, ncols, &l->e[l->n], true) != MOAT_OK)
		return MOAT_E_NOMEM;
	l->n++;
	return MOAT_OK;
}

static moat_err load_cp_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct load *l = arg;
	struct moat_audit_checkpoint *c;
	struct moat_audit_checkpoint_row r;

	if (moat_audit_checkpoint_row_decode(cols, ncols, &r) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (l->ncp == l->cpcap) {
		size_t ncap = l->cpcap ? l->cpcap * 2 : 64;
		struct moat_audit_checkpoint *nc = realloc(l->cp, ncap * sizeof(*nc));
		if (nc == NULL)
			return MOAT_E_NOMEM;
		l->cp = nc;
		l->cpcap = ncap;
	}
	c = &l->cp[l->ncp++];
	memset(c, 0, sizeof(*c));
	c->seq = r.seq.type == MOAT_VAL_INT ? r.seq.i : 0;
	c->ts_ms = r.ts.type == MOAT_VAL_INT ? r.ts.i : 0;
	if (r.head.type == MOAT_VAL_BLOB && r.head.len == MOAT_AUDIT_HASH_LEN)
		memcpy(c->head, r.head.p, MOAT_AUDIT_HASH_LEN);
	if (r.sig.type == MOAT_VAL_BLOB && r.sig.len == MOAT_AUDIT_SIG_LEN)
		memcpy(c->sig, r.sig.p, MOAT_AUDIT_SIG_LEN);
	return MOAT_OK;
}

static void load_free(struct load *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		entry_clear(&l->e[i]);
	free(l->e);
	free(l->cp);
}

moat_err moat_audit_verify_store(struct moat_store *st, const uint8_t pk[MOAT_AUDIT_PK_LEN],
				 struct moat_audit_report *rep, char *err, size_t errlen)
{
	struct load l;
	moat_err rc;

	memset(&l, 0, sizeof(l));
	memset(rep, 0, sizeof(*rep));
	rc = moat_store_read(st, AUDIT_STMT(AUDIT_ALL), NULL, 0, load_entry_cb, &l);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, AUDIT_STMT(CHECKPOINT_ALL), NULL, 0, load_cp_cb, &l);
	if (rc != MOAT_OK) {
		snprintf(err, errlen, "cannot read the audit log: %s", moat_strerror(rc));
		goto out;
	}
	rc = moat_audit_verify(l.e, l.n, l.cp, l.ncp, pk, rep);
out:
	load_free(&l);
	return rc;
}

static moat_err open_dir_store(const char *dir, struct moat_store **st, char *err, size_t errlen)
{
	struct moat_store_opts o;
	char path[MOAT_MAX_PATH];
	int n = snprintf(path, sizeof(path), "%s/moat.db", dir);

	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	if (access(path, F_OK) != 0) {
		snprintf(err, errlen, "%s: no database (is %s a Moat data directory?)", path, dir);
		return MOAT_E_NOTFOUND;
	}
	memset(&o, 0, sizeof(o));
	o.path = path;
	return moat_store_open(&o, st, err, errlen);
}

moat_err moat_audit_verify_dir(const char *dir, const char *pub_path, struct moat_audit_report *rep,
			       char *err, size_t errlen)
{
	uint8_t pk[MOAT_AUDIT_PK_LEN];
	char path[MOAT_MAX_PATH];
	struct moat_store *st = NULL;
	moat_err rc;
	int n = pub_path ? snprintf(path, sizeof(path), "%s", pub_path)
			 : snprintf(path, sizeof(path), "%s/audit.pub", dir);

	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return MOAT_E_INVAL;
	}
	rc = moat_audit_pub_load(path, pk, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	rc = open_dir_store(dir, &st, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	rc = moat_audit_verify_store(st, pk, rep, err, errlen);
	moat_store_close(st);
	return rc;
}

struct export
{
	FILE *out;
	moat_err rc;
};

static moat_err export_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct export *x = arg;
	struct moat_audit_entry e;
	char *json = NULL;
	moat_err rc;

	rc = row_to_entry(cols, ncols, &e, true);
	if (rc != MOAT_OK)
		return rc;
	rc = moat_audit_entry_json(&e, &json);
	entry_clear(&e);
	if (rc != MOAT_OK)
		return rc;
	if (fprintf(x->out, "%s\n", json) < 0)
		rc = MOAT_E_IO;
	free(json);
	return rc;
}

moat_err moat_audit_export_dir(const char *dir, FILE *out, char *err, size_t errlen)
{
	struct moat_store *st = NULL;
	struct export x = {out, MOAT_OK};
	moat_err rc;

	rc = open_dir_store(dir, &st, err, errlen);
	if (rc != MOAT_OK)
		return rc;
	rc = moat_store_read(st, AUDIT_STMT(AUDIT_ALL), NULL, 0, export_cb, &x);
	if (rc != MOAT_OK)
		snprintf(err, errlen, "cannot export the audit log: %s", moat_strerror(rc));
	else if (fflush(out) != 0)
		rc = MOAT_E_IO;
	moat_store_close(st);
	return rc;
}

struct list {
	moat_audit_row_cb cb;
	void *arg;
};

static moat_err list_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct list *l = arg;
	struct moat_audit_entry e;
	moat_err rc = row_to_entry(cols, ncols, &e, true);

	if (rc != MOAT_OK)
		return rc;
	rc = l->cb(l->arg, &e);
	entry_clear(&e);
	return rc;
}

moat_err moat_audit_list(struct moat_store *st, int64_t before, const char *actor,
			 const char *action_prefix, int64_t since_ms, int64_t until_ms,
			 size_t limit, moat_audit_row_cb cb, void *arg)
{
	struct moat_val v[6];
	struct list l = {cb, arg};

	v[0] = moat_val_int(before > 0 ? before : INT64_MAX);
	v[1] = actor ? moat_val_text(actor, strlen(actor)) : moat_val_null();
	v[2] =
	    action_prefix ? moat_val_text(action_prefix, strlen(action_prefix)) : moat_val_null();
	v[3] = since_ms ? moat_val_int(since_ms) : moat_val_null();
	v[4] = until_ms ? moat_val_int(until_ms) : moat_val_null();
	v[5] = moat_val_int((int64_t)limit);
	return moat_store_read(st, AUDIT_STMT(AUDIT_LIST), v, 6, list_cb, &l);
}
