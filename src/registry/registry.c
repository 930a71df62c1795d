/*
 * The broker's identity table (registry.h): one immutable, refcounted
 * record per identity (its state and the policies that apply to it,
 * resolved through its groups), in a hash map under a read-write lock.
 * A change replaces the records of the identities it touched, each loaded
 * from the store on its own (moat_regtab_load_ids), so its cost does not
 * depend on the size of the fleet; start and SIGHUP load everything
 * (moat_regtab_load_all). Readers (CONNECT, re-admission) hold the read
 * lock only to find a record and take a reference; they compile the ACL
 * from it afterwards. Policies are shared between records, refcounted,
 * parsed once per text.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/limits.h"
#include "registry/registry.h"
#include "registry/schema.h"

static const char *const state_names[MOAT_ID__COUNT] = {
    [MOAT_ID_REGISTERED] = "registered",
    [MOAT_ID_ACTIVE] = "active",
    [MOAT_ID_DISABLED] = "disabled",
    [MOAT_ID_QUARANTINED] = "quarantined",
    [MOAT_ID_DECOMMISSIONED] = "decommissioned",
};

const char *moat_id_state_name(enum moat_id_state s)
{
	return (unsigned)s < MOAT_ID__COUNT ? state_names[s] : "?";
}

bool moat_id_state_parse(const char *s, enum moat_id_state *out)
{
	unsigned i;

	for (i = 0; i < MOAT_ID__COUNT; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum moat_id_state)i;
			return true;
		}
	}
	return false;
}

bool moat_id_transition_ok(enum moat_id_state from, enum moat_id_state to)
{
	if (from == MOAT_ID_DECOMMISSIONED || from == to)
		return false;
	switch (to) {
	case MOAT_ID_ACTIVE: /* enrol/activate, re-enable, release */
		return from == MOAT_ID_REGISTERED || from == MOAT_ID_DISABLED ||
		       from == MOAT_ID_QUARANTINED;
	case MOAT_ID_DISABLED:
		return from == MOAT_ID_REGISTERED || from == MOAT_ID_ACTIVE ||
		       from == MOAT_ID_QUARANTINED;
	case MOAT_ID_QUARANTINED:
		return from == MOAT_ID_ACTIVE || from == MOAT_ID_DISABLED;
	case MOAT_ID_DECOMMISSIONED:
		return true;
	case MOAT_ID_REGISTERED:
	case MOAT_ID__COUNT:
	default:
		return false;
	}
}

bool moat_id_kind_valid(const char *kind)
{
	return strcmp(kind, "device") == 0 || strcmp(kind, "service") == 0;
}

#define BUILTIN_GROUP "devices"

/* A policy's rules, parsed once per text and shared by every record it
 * applies to. Immutable once made. */
struct regpol {
	atomic_uint refs;
	char *name;
	char *text; /* as stored: a change of text is a new regpol */
	size_t n;
	struct moat_rule *rules;
};

struct regsrc {
	struct regpol *p;
	const char *group; /* the group it applies through; NULL: attached directly */
};

/* One identity as the broker enforces it: one allocation (the sources,
 * then the id and the group names they point to). Immutable once in the
 * table; replaced whole by a change. */
struct regrec {
	atomic_uint refs;
	enum moat_id_state state;
	const char *id;
	size_t n;
	struct regsrc src[];
};

/* A record being built: its sources, and their group names in an arena
 * (offsets: the arena moves as it grows). */
struct recb {
	struct regpol **p;
	size_t *goff; /* SIZE_MAX: attached directly */
	size_t n, cap;
	char *arena;
	size_t alen, acap;
};

/* A string-keyed open-addressing map (linear probing, backward-shift
 * deletion), keyed SipHash: identities reach it from certificates. */
struct sment {
	const char *k;
	void *v;
};

struct smap {
	struct sment *e;
	size_t cap, n;
};

struct moat_regtab {
	unsigned char key[crypto_shorthash_KEYBYTES];
	/* Guards ids, revoked and unknown: readers take it shared to find a
	 * record and reference it; loads take it exclusive only to swap. */
	pthread_rwlock_t lock;
	struct smap ids;	/* id -> struct regrec *; GUARDED_BY(lock) */
	struct smap revoked;	/* serial -> the key itself; GUARDED_BY(lock) */
	struct regrec *unknown; /* group "devices" for unregistered identities (NULL:
				    no such group); GUARDED_BY(lock) */
	/* The loaders' policy cache (name -> struct regpol *, one reference
	 * each): touched only by loads, which the caller serializes. */
	struct smap pols;
};

static uint64_t smap_hash(const struct moat_regtab *t, const char *s)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)s, strlen(s), t->key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static size_t smap_slot(const struct moat_regtab *t, const struct smap *m, const char *k,
			bool *found)
{
	size_t j = smap_hash(t, k) & (m->cap - 1);

	while (m->e[j].k != NULL) {
		if (strcmp(m->e[j].k, k) == 0) {
			*found = true;
			return j;
		}
		j = (j + 1) & (m->cap - 1);
	}
	*found = false;
	return j;
}

static void *smap_get(const struct moat_regtab *t, const struct smap *m, const char *k)
{
	bool found;
	size_t j;

	if (m->cap == 0)
		return NULL;
	j = smap_slot(t, m, k, &found);
	return found ? m->e[j].v : NULL;
}

static bool smap_grow(const struct moat_regtab *t, struct smap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 64, i;
	struct sment *n = calloc(ncap, sizeof(*n));

	if (n == NULL)
		return false;
	for (i = 0; i < m->cap; i++) {
		size_t j;
		if (m->e[i].k == NULL)
			continue;
		j = smap_hash(t, m->e[i].k) & (ncap - 1);
		while (n[j].k != NULL)
			j = (j + 1) & (ncap - 1);
		n[j] = m->e[i];
	}
	free(m->e);
	m->e = n;
	m->cap = ncap;
	return true;
}

/* Make room for one more entry before taking the lock that guards m. */
static bool smap_reserve(const struct moat_regtab *t, struct smap *m)
{
	return (m->n + 1) * 2 <= m->cap || smap_grow(t, m);
}

/* Insert or replace (k must live as long as the entry); returns the value
 * replaced (NULL if none). Room must have been reserved. */
static void *smap_put(const struct moat_regtab *t, struct smap *m, const char *k, void *v)
{
	bool found;
	size_t j = smap_slot(t, m, k, &found);
	void *old = found ? m->e[j].v : NULL;

	if (!found)
		m->n++;
	m->e[j].k = k;
	m->e[j].v = v;
	return old;
}

/* Remove k; returns its value (NULL if absent). */
static void *smap_del(const struct moat_regtab *t, struct smap *m, const char *k)
{
	bool found;
	size_t j, i, cap = m->cap;
	void *old;

	if (cap == 0)
		return NULL;
	j = smap_slot(t, m, k, &found);
	if (!found)
		return NULL;
	old = m->e[j].v;
	m->e[j].k = NULL;
	m->e[j].v = NULL;
	m->n--;
	for (i = (j + 1) & (cap - 1); m->e[i].k != NULL; i = (i + 1) & (cap - 1)) {
		size_t home = smap_hash(t, m->e[i].k) & (cap - 1);
		bool move = (j <= i) ? (home <= j || home > i) : (home <= j && home > i);
		if (move) {
			m->e[j] = m->e[i];
			m->e[i].k = NULL;
			m->e[i].v = NULL;
			j = i;
		}
	}
	return old;
}

/* ------------------------------------------------------------------ */
/* policies and records                                                */

static void pol_unref(struct regpol *p)
{
	if (p != NULL && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
		free(p->name);
		free(p->text);
		free(p->rules);
		free(p);
	}
}

static void rec_unref(struct regrec *r)
{
	size_t i;

	if (r == NULL || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < r->n; i++)
		pol_unref(r->src[i].p);
	free(r);
}

static char *val_dup(const struct moat_val *v)
{
	char *s;

	if (v->type != MOAT_VAL_TEXT || memchr(v->p, '\0', v->len) != NULL)
		return NULL;
	s = malloc(v->len + 1);
	if (s != NULL) {
		memcpy(s, v->p, v->len);
		s[v->len] = '\0';
	}
	return s;
}

static char *str_dup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

/* What a load needs besides the table: where to say what failed. */
struct load {
	struct moat_regtab *t;
	struct smap pols; /* the cache being built (load_all) or the table's */
	char *err;
	size_t errlen;
};

/* Parse a stored policy. A rule that no longer parses fails the load (err
 * names it): a policy is never applied half. */
static moat_err pol_parse(struct load *l, const struct moat_val *name, const struct moat_val *text,
			  struct regpol **out)
{
	struct regpol *p = calloc(1, sizeof(*p));
	char *copy = NULL, *line, *next, why[160];
	moat_err rc = MOAT_E_NOMEM;

	*out = NULL;
	if (p == NULL)
		return rc;
	atomic_init(&p->refs, 1);
	p->name = val_dup(name);
	p->text = val_dup(text);
	copy = val_dup(text);
	p->rules = calloc(MOAT_POLICY_MAX_RULES, sizeof(*p->rules));
	if (p->name == NULL || p->text == NULL || copy == NULL || p->rules == NULL)
		goto fail;
	for (line = copy; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (*line == '\0')
			continue;
		if (p->n >= MOAT_POLICY_MAX_RULES ||
		    moat_rule_parse(line, &p->rules[p->n], why, sizeof(why)) != MOAT_OK) {
			snprintf(l->err, l->errlen, "policy %s: rule '%.80s': %s", p->name, line,
				 p->n >= MOAT_POLICY_MAX_RULES ? "too many rules" : why);
			rc = MOAT_E_CORRUPT;
			goto fail;
		}
		p->n++;
	}
	free(copy);
	*out = p;
	return MOAT_OK;
fail:
	free(copy);
	pol_unref(p);
	return rc;
}

/* The policy (name, text) as a shared object: the cached one while its
 * text is unchanged, else a new one that replaces it in the cache. A new
 * reference in *out. */
static moat_err pol_get(struct load *l, const struct moat_val *name, const struct moat_val *text,
			struct regpol **out)
{
	char key[MOAT_DEVICE_ID_MAX + 1];
	struct regpol *p, *old;
	moat_err rc;

	*out = NULL;
	if (name->type != MOAT_VAL_TEXT || name->len >= sizeof(key) || text->type != MOAT_VAL_TEXT)
		return MOAT_E_CORRUPT;
	memcpy(key, name->p, name->len);
	key[name->len] = '\0';
	p = smap_get(l->t, &l->pols, key);
	if (p != NULL && strlen(p->text) == text->len && memcmp(p->text, text->p, text->len) == 0) {
		atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
		*out = p;
		return MOAT_OK;
	}
	if ((rc = pol_parse(l, name, text, &p)) != MOAT_OK)
		return rc;
	if (!smap_reserve(l->t, &l->pols)) {
		pol_unref(p);
		return MOAT_E_NOMEM;
	}
	old = smap_put(l->t, &l->pols, p->name, p);
	pol_unref(old);
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); /* the caller's */
	*out = p;
	return MOAT_OK;
}

/* Add source p (a new reference is taken) through group (NULL: direct). */
static moat_err recb_add(struct recb *b, struct regpol *p, const char *group)
{
	size_t glen = group != NULL ? strlen(group) + 1 : 0;

	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 4;
		struct regpol **np = realloc(b->p, ncap * sizeof(*np));
		size_t *ng;
		if (np == NULL)
			return MOAT_E_NOMEM;
		b->p = np;
		ng = realloc(b->goff, ncap * sizeof(*ng));
		if (ng == NULL)
			return MOAT_E_NOMEM;
		b->goff = ng;
		b->cap = ncap;
	}
	if (b->alen + glen > b->acap) {
		size_t ncap = b->acap ? b->acap * 2 : 128;
		char *na;
		while (ncap < b->alen + glen)
			ncap *= 2;
		na = realloc(b->arena, ncap);
		if (na == NULL)
			return MOAT_E_NOMEM;
		b->arena = na;
		b->acap = ncap;
	}
	b->goff[b->n] = SIZE_MAX;
	if (group != NULL) {
		memcpy(b->arena + b->alen, group, glen);
		b->goff[b->n] = b->alen;
		b->alen += glen;
	}
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	b->p[b->n++] = p;
	return MOAT_OK;
}

/* Drop what b holds and make it empty (its buffers stay for reuse). */
static void recb_reset(struct recb *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		pol_unref(b->p[i]);
	b->n = 0;
	b->alen = 0;
}

static void recb_free(struct recb *b)
{
	recb_reset(b);
	free(b->p);
	free(b->goff);
	free(b->arena);
	memset(b, 0, sizeof(*b));
}

/* The record of id from b's sources (their references move to it); b is
 * left empty either way. */
static struct regrec *recb_finish(struct recb *b, const char *id, enum moat_id_state st)
{
	size_t idlen = strlen(id) + 1, i;
	struct regrec *r = malloc(sizeof(*r) + b->n * sizeof(r->src[0]) + idlen + b->alen);
	char *strs;

	if (r == NULL) {
		recb_reset(b);
		return NULL;
	}
	atomic_init(&r->refs, 1);
	r->state = st;
	r->n = b->n;
	strs = (char *)&r->src[b->n];
	memcpy(strs, id, idlen);
	r->id = strs;
	if (b->alen > 0)
		memcpy(strs + idlen, b->arena, b->alen);
	for (i = 0; i < b->n; i++) {
		r->src[i].p = b->p[i];
		r->src[i].group = b->goff[i] == SIZE_MAX ? NULL : strs + idlen + b->goff[i];
	}
	b->n = 0; /* the references are the record's now */
	b->alen = 0;
	return r;
}

static moat_err state_of(const struct moat_val *v, enum moat_id_state *st)
{
	char state[32];

	if (v->type != MOAT_VAL_TEXT || v->len >= sizeof(state))
		return MOAT_E_CORRUPT;
	memcpy(state, v->p, v->len);
	state[v->len] = '\0';
	return moat_id_state_parse(state, st) ? MOAT_OK : MOAT_E_CORRUPT;
}

/* ------------------------------------------------------------------ */
/* the table                                                           */

moat_err moat_regtab_new(struct moat_regtab **out)
{
	struct moat_regtab *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (t == NULL)
		return MOAT_E_NOMEM;
	if (pthread_rwlock_init(&t->lock, NULL) != 0) {
		free(t);
		return MOAT_E_NOMEM;
	}
	crypto_shorthash_keygen(t->key);
	*out = t;
	return MOAT_OK;
}

static void ids_free(struct smap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		rec_unref(m->e[i].v);
	free(m->e);
	memset(m, 0, sizeof(*m));
}

static void revoked_free(struct smap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		free(m->e[i].v);
	free(m->e);
	memset(m, 0, sizeof(*m));
}

static void pols_free(struct smap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		pol_unref(m->e[i].v);
	free(m->e);
	memset(m, 0, sizeof(*m));
}

void moat_regtab_free(struct moat_regtab *t)
{
	if (t == NULL)
		return;
	ids_free(&t->ids);
	revoked_free(&t->revoked);
	pols_free(&t->pols);
	rec_unref(t->unknown);
	pthread_rwlock_destroy(&t->lock);
	free(t);
}

size_t moat_regtab_count(struct moat_regtab *t)
{
	size_t n;

	pthread_rwlock_rdlock(&t->lock);
	n = t->ids.n;
	pthread_rwlock_unlock(&t->lock);
	return n;
}

/* --- loading one group's sources (the built-in group) --- */

struct grp_load {
	struct load *l;
	struct recb b;
	const char *group;
};

static moat_err grp_src_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_rules_row row;
	struct grp_load *g = arg;
	struct regpol *p;
	moat_err rc;

	if (moat_reg_rules_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if ((rc = pol_get(g->l, &row.policy, &row.rules, &p)) != MOAT_OK)
		return rc;
	rc = recb_add(&g->b, p, g->group);
	pol_unref(p);
	return rc;
}

/* The record unregistered identities get under unknown_devices = allow: the
 * built-in group's policies; NULL (and MOAT_OK) when the group is gone. */
static moat_err load_unknown(struct load *l, struct moat_store *st, struct regrec **out)
{
	struct moat_val v = moat_val_text(BUILTIN_GROUP, strlen(BUILTIN_GROUP));
	struct grp_load g;
	int64_t n = 0;
	moat_err rc;

	*out = NULL;
	memset(&g, 0, sizeof(g));
	g.l = l;
	g.group = BUILTIN_GROUP;
	rc = moat_store_read_int(st, REG_STMT(GROUP_EXISTS), &v, 1, &n);
	if (rc != MOAT_OK || n == 0)
		return rc;
	rc = moat_store_read(st, REG_STMT(REG_GROUP_SOURCES), &v, 1, grp_src_cb, &g);
	if (rc == MOAT_OK && (*out = recb_finish(&g.b, "", MOAT_ID_ACTIVE)) == NULL)
		rc = MOAT_E_NOMEM;
	recb_free(&g.b);
	return rc;
}

/* --- loading everything (start, SIGHUP) --- */

/* A group's policies while everything loads. */
struct grp {
	char *name;
	struct regpol **p;
	size_t n;
};

/* An identity while everything loads: its groups and direct policies. */
struct tid {
	char *id;
	enum moat_id_state state;
	struct grp **groups;
	size_t n_groups;
	struct regpol **direct;
	size_t n_direct;
};

struct all_load {
	struct load l;
	struct smap groups; /* name -> struct grp * */
	struct tid *ids;    /* ORDER BY id: binary search */
	size_t n_ids, cap_ids;
	struct smap revoked;
};

static bool push_ptr(void ***arr, size_t *n, void *p)
{
	void **na = realloc(*arr, (*n + 1) * sizeof(**arr));

	if (na == NULL)
		return false;
	na[(*n)++] = p;
	*arr = na;
	return true;
}

static struct tid *find_tid(struct all_load *a, const struct moat_val *v)
{
	size_t lo = 0, hi = a->n_ids;

	if (v->type != MOAT_VAL_TEXT)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		size_t len = strlen(a->ids[mid].id);
		int c = memcmp(a->ids[mid].id, v->p, len < v->len ? len : v->len);
		if (c == 0)
			c = len < v->len ? -1 : (len > v->len ? 1 : 0);
		if (c == 0)
			return &a->ids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct grp *grp_of(struct all_load *a, const struct moat_val *v, bool create)
{
	char name[MOAT_DEVICE_ID_MAX + 1];
	struct grp *g;

	if (v->type != MOAT_VAL_TEXT || v->len >= sizeof(name))
		return NULL;
	memcpy(name, v->p, v->len);
	name[v->len] = '\0';
	g = smap_get(a->l.t, &a->groups, name);
	if (g != NULL || !create)
		return g;
	if (!smap_reserve(a->l.t, &a->groups) || (g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	if ((g->name = str_dup(name)) == NULL) {
		free(g);
		return NULL;
	}
	smap_put(a->l.t, &a->groups, g->name, g);
	return g;
}

static moat_err all_policy_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_rules_row row;
	struct all_load *a = arg;
	struct regpol *p;
	moat_err rc;

	if (moat_reg_rules_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	rc = pol_get(&a->l, &row.policy, &row.rules, &p);
	pol_unref(p); /* the cache holds it */
	return rc;
}

static moat_err all_ident_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_ident_state_row row;
	struct all_load *a = arg;
	struct tid *d;
	moat_err rc;

	if (moat_reg_ident_state_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (a->n_ids == a->cap_ids) {
		size_t ncap = a->cap_ids ? a->cap_ids * 2 : 256;
		struct tid *n = realloc(a->ids, ncap * sizeof(*n));
		if (n == NULL)
			return MOAT_E_NOMEM;
		a->ids = n;
		a->cap_ids = ncap;
	}
	d = &a->ids[a->n_ids];
	memset(d, 0, sizeof(*d));
	if ((rc = state_of(&row.state, &d->state)) != MOAT_OK)
		return rc;
	if ((d->id = val_dup(&row.id)) == NULL)
		return MOAT_E_NOMEM;
	a->n_ids++;
	return MOAT_OK;
}

static moat_err all_member_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_member_row row;
	struct all_load *a = arg;
	struct tid *d;
	struct grp *g;

	if (moat_reg_member_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	d = find_tid(a, &row.identity);
	if (d == NULL)
		return MOAT_OK; /* the schema cascades: cannot happen */
	g = grp_of(a, &row.group, false);
	if (g == NULL)
		return MOAT_OK; /* a group with no policy adds nothing */
	return push_ptr((void ***)&d->groups, &d->n_groups, g) ? MOAT_OK : MOAT_E_NOMEM;
}

static moat_err all_attach_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_attach_row row;
	struct all_load *a = arg;
	char name[MOAT_DEVICE_ID_MAX + 1];
	struct regpol *p;
	struct tid *d;
	struct grp *g;

	if (moat_reg_attach_row_decode(cols, ncols, &row) != MOAT_OK ||
	    row.policy.len >= sizeof(name))
		return MOAT_E_CORRUPT;
	memcpy(name, row.policy.p, row.policy.len);
	name[row.policy.len] = '\0';
	p = smap_get(a->l.t, &a->l.pols, name);
	if (p == NULL)
		return MOAT_OK;
	if (row.group.type == MOAT_VAL_TEXT) {
		g = grp_of(a, &row.group, true);
		if (g == NULL)
			return MOAT_E_NOMEM;
		return push_ptr((void ***)&g->p, &g->n, p) ? MOAT_OK : MOAT_E_NOMEM;
	}
	d = find_tid(a, &row.identity);
	if (d == NULL)
		return MOAT_OK;
	return push_ptr((void ***)&d->direct, &d->n_direct, p) ? MOAT_OK : MOAT_E_NOMEM;
}

static moat_err revoked_add(struct moat_regtab *t, struct smap *m, const struct moat_val *v)
{
	char *serial;

	if (!smap_reserve(t, m))
		return MOAT_E_NOMEM;
	if ((serial = val_dup(v)) == NULL)
		return MOAT_E_NOMEM;
	if (smap_get(t, m, serial) != NULL) {
		free(serial);
		return MOAT_OK;
	}
	smap_put(t, m, serial, serial);
	return MOAT_OK;
}

static moat_err all_revoked_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_revoked_row row;
	struct all_load *a = arg;

	if (moat_reg_revoked_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	return revoked_add(a->l.t, &a->revoked, &row.serial);
}

static void all_free(struct all_load *a)
{
	size_t i;

	for (i = 0; i < a->n_ids; i++) {
		free(a->ids[i].id);
		free(a->ids[i].groups);
		free(a->ids[i].direct);
	}
	free(a->ids);
	for (i = 0; i < a->groups.cap; i++) {
		struct grp *g = a->groups.e[i].v;
		if (g == NULL)
			continue;
		free(g->name);
		free(g->p);
		free(g);
	}
	free(a->groups.e);
	revoked_free(&a->revoked);
	pols_free(&a->l.pols);
}

/* The records of every identity, from what all_* collected. */
static moat_err all_build(struct all_load *a, struct smap *ids)
{
	struct recb b;
	size_t i, j, k;
	moat_err rc = MOAT_OK;

	memset(&b, 0, sizeof(b));
	for (i = 0; rc == MOAT_OK && i < a->n_ids; i++) {
		struct tid *d = &a->ids[i];
		struct regrec *r;

		for (j = 0; rc == MOAT_OK && j < d->n_groups; j++)
			for (k = 0; rc == MOAT_OK && k < d->groups[j]->n; k++)
				rc = recb_add(&b, d->groups[j]->p[k], d->groups[j]->name);
		for (j = 0; rc == MOAT_OK && j < d->n_direct; j++)
			rc = recb_add(&b, d->direct[j], NULL);
		if (rc == MOAT_OK && !smap_reserve(a->l.t, ids))
			rc = MOAT_E_NOMEM;
		if (rc != MOAT_OK)
			break;
		if ((r = recb_finish(&b, d->id, d->state)) == NULL)
			rc = MOAT_E_NOMEM;
		else
			smap_put(a->l.t, ids, r->id, r);
	}
	recb_free(&b);
	return rc;
}

moat_err moat_regtab_load_all(struct moat_regtab *t, struct moat_store *st, char *err,
			      size_t errlen)
{
	struct all_load a;
	struct smap ids = {NULL, 0, 0}, old_ids, old_rev, old_pols;
	struct regrec *unknown = NULL, *old_unknown;
	moat_err rc;

	memset(&a, 0, sizeof(a));
	a.l.t = t;
	a.l.err = err;
	a.l.errlen = errlen;
	if (errlen)
		err[0] = '\0';
	/* Policies first (members and attachments refer to them), then
	 * identities (ORDER BY id: binary search), then who is in what. */
	rc = moat_store_read(st, REG_STMT(REG_POLICIES), NULL, 0, all_policy_cb, &a);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_IDENTITIES), NULL, 0, all_ident_cb, &a);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_ATTACH), NULL, 0, all_attach_cb, &a);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_MEMBERS), NULL, 0, all_member_cb, &a);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REVOKED_ALL), NULL, 0, all_revoked_cb, &a);
	if (rc == MOAT_OK)
		rc = all_build(&a, &ids);
	if (rc == MOAT_OK)
		rc = load_unknown(&a.l, st, &unknown);
	if (rc != MOAT_OK) {
		if (errlen && err[0] == '\0')
			snprintf(err, errlen, "cannot load the registry: %s", moat_strerror(rc));
		ids_free(&ids);
		all_free(&a);
		return rc;
	}
	pthread_rwlock_wrlock(&t->lock);
	old_ids = t->ids;
	old_rev = t->revoked;
	old_unknown = t->unknown;
	t->ids = ids;
	t->revoked = a.revoked;
	t->unknown = unknown;
	pthread_rwlock_unlock(&t->lock);
	old_pols = t->pols;
	t->pols = a.l.pols;
	memset(&a.revoked, 0, sizeof(a.revoked));
	memset(&a.l.pols, 0, sizeof(a.l.pols));
	ids_free(&old_ids);
	revoked_free(&old_rev);
	pols_free(&old_pols);
	rec_unref(old_unknown);
	all_free(&a);
	return MOAT_OK;
}

/* --- loading some identities (a change) --- */

struct one_load {
	struct load *l;
	struct recb b;
	enum moat_id_state state;
	bool found;
	struct moat_regtab *t;
	struct smap *revoked; /* serials to add */
};

static moat_err one_state_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_val row;
	struct one_load *o = arg;

	if (moat_reg_name_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	o->found = true;
	return state_of(&row, &o->state);
}

static moat_err one_src_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_reg_id_source_row row;
	struct one_load *o = arg;
	char group[MOAT_DEVICE_ID_MAX + 1];
	struct regpol *p;
	moat_err rc;

	if (moat_reg_id_source_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	if (row.group.type == MOAT_VAL_TEXT) {
		if (row.group.len >= sizeof(group))
			return MOAT_E_CORRUPT;
		memcpy(group, row.group.p, row.group.len);
		group[row.group.len] = '\0';
	}
	if ((rc = pol_get(o->l, &row.policy, &row.rules, &p)) != MOAT_OK)
		return rc;
	rc = recb_add(&o->b, p, row.group.type == MOAT_VAL_TEXT ? group : NULL);
	pol_unref(p);
	return rc;
}

static moat_err one_revoked_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct moat_val row;
	struct one_load *o = arg;

	if (moat_reg_name_row_decode(cols, ncols, &row) != MOAT_OK)
		return MOAT_E_CORRUPT;
	return revoked_add(o->t, o->revoked, &row);
}

/* One identity's record from the store; *out NULL when it has no row. Its
 * revoked serials go to revoked. */
static moat_err load_one(struct load *l, struct moat_store *st, const char *id,
			 struct smap *revoked, struct regrec **out)
{
	struct moat_val v = moat_val_text(id, strlen(id));
	struct one_load o;
	moat_err rc;

	*out = NULL;
	memset(&o, 0, sizeof(o));
	o.l = l;
	o.t = l->t;
	o.revoked = revoked;
	rc = moat_store_read(st, REG_STMT(REG_ID_STATE), &v, 1, one_state_cb, &o);
	if (rc == MOAT_OK && o.found)
		rc = moat_store_read(st, REG_STMT(REG_ID_SOURCES), &v, 1, one_src_cb, &o);
	/* Certificates outlive their identity row: revoked serials count for
	 * unregistered identities too. */
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_ID_REVOKED), &v, 1, one_revoked_cb, &o);
	if (rc == MOAT_OK && o.found && (*out = recb_finish(&o.b, id, o.state)) == NULL)
		rc = MOAT_E_NOMEM;
	recb_free(&o.b);
	return rc;
}

moat_err moat_regtab_load_ids(struct moat_regtab *t, struct moat_store *st, const char *const *ids,
			      size_t n, bool builtin, char *err, size_t errlen)
{
	struct load l = {t, t->pols, err, errlen};
	struct smap rev = {NULL, 0, 0};
	struct regrec **recs = calloc(n + 1, sizeof(*recs)), *unknown = NULL, *old;
	size_t i;
	moat_err rc = recs != NULL ? MOAT_OK : MOAT_E_NOMEM;

	if (errlen)
		err[0] = '\0';
	for (i = 0; rc == MOAT_OK && i < n; i++)
		rc = load_one(&l, st, ids[i], &rev, &recs[i]);
	if (rc == MOAT_OK && builtin)
		rc = load_unknown(&l, st, &unknown);
	t->pols = l.pols; /* the cache may have new policies either way */
	/* Room first: the swap under the lock cannot fail half-way. */
	if (rc == MOAT_OK) {
		pthread_rwlock_wrlock(&t->lock);
		while (rc == MOAT_OK && (t->ids.n + n + 1) * 2 > t->ids.cap)
			rc = smap_grow(t, &t->ids) ? MOAT_OK : MOAT_E_NOMEM;
		while (rc == MOAT_OK && (t->revoked.n + rev.n + 1) * 2 > t->revoked.cap)
			rc = smap_grow(t, &t->revoked) ? MOAT_OK : MOAT_E_NOMEM;
		for (i = 0; rc == MOAT_OK && i < n; i++) {
			if (recs[i] != NULL)
				old = smap_put(t, &t->ids, recs[i]->id, recs[i]);
			else
				old = smap_del(t, &t->ids, ids[i]);
			recs[i] = old; /* unreferenced below, outside the lock */
		}
		for (i = 0; rc == MOAT_OK && i < rev.cap; i++) {
			char *s = rev.e[i].v;
			if (s == NULL || smap_get(t, &t->revoked, s) != NULL)
				continue;
			smap_put(t, &t->revoked, s, s);
			rev.e[i].v = NULL;
		}
		if (rc == MOAT_OK && builtin) {
			old = t->unknown;
			t->unknown = unknown;
			unknown = old;
		}
		pthread_rwlock_unlock(&t->lock);
	}
	if (rc != MOAT_OK && errlen && err[0] == '\0')
		snprintf(err, errlen, "cannot load the registry: %s", moat_strerror(rc));
	for (i = 0; recs != NULL && i < n; i++)
		rec_unref(recs[i]);
	free(recs);
	rec_unref(unknown);
	revoked_free(&rev);
	return rc;
}

/* ------------------------------------------------------------------ */
/* admission                                                           */

bool moat_regtab_decommissioned(struct moat_regtab *t, const char *identity)
{
	struct regrec *r;
	bool d;

	pthread_rwlock_rdlock(&t->lock);
	r = smap_get(t, &t->ids, identity);
	d = r != NULL && r->state == MOAT_ID_DECOMMISSIONED;
	pthread_rwlock_unlock(&t->lock);
	return d;
}

bool moat_regtab_revoked(struct moat_regtab *t, const char *serial)
{
	bool r;

	pthread_rwlock_rdlock(&t->lock);
	r = smap_get(t, &t->revoked, serial) != NULL;
	pthread_rwlock_unlock(&t->lock);
	return r;
}

enum moat_admit moat_regtab_admit(struct moat_regtab *t, const char *identity, const char *serial,
				  bool unknown_allow, struct moat_acl **acl, const char **why)
{
	struct moat_acl_source src[MOAT_ACL_MAX_SOURCES];
	struct regrec *r;
	bool revoked = false, quarantined = false;
	enum moat_admit a = MOAT_ADMIT_OK;
	size_t i;

	*acl = NULL;
	pthread_rwlock_rdlock(&t->lock);
	if (serial != NULL && serial[0] != '\0')
		revoked = smap_get(t, &t->revoked, serial) != NULL;
	r = smap_get(t, &t->ids, identity);
	if (r == NULL && unknown_allow)
		r = t->unknown;
	if (r != NULL)
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	pthread_rwlock_unlock(&t->lock);
	if (revoked) {
		*why = "the certificate is revoked";
		a = MOAT_ADMIT_REVOKED;
		goto out;
	}
	if (r == NULL) {
		*why = "identity is not registered";
		a = MOAT_ADMIT_UNKNOWN;
		goto out;
	}
	switch (r->state) {
	case MOAT_ID_REGISTERED:
		*why = "identity is registered but not enrolled or activated";
		a = MOAT_ADMIT_NOT_ENROLLED;
		goto out;
	case MOAT_ID_DISABLED:
		*why = "identity is disabled";
		a = MOAT_ADMIT_DISABLED;
		goto out;
	case MOAT_ID_DECOMMISSIONED:
		*why = "identity is decommissioned";
		a = MOAT_ADMIT_DECOMMISSIONED;
		goto out;
	case MOAT_ID_QUARANTINED:
		quarantined = true;
		break;
	case MOAT_ID_ACTIVE:
	case MOAT_ID__COUNT:
	default:
		break;
	}
	if (r->n > MOAT_ACL_MAX_SOURCES) {
		*why = "too many policies attached to this identity";
		a = MOAT_ADMIT_ERROR;
		goto out;
	}
	for (i = 0; i < r->n; i++) {
		src[i].rules = r->src[i].p->rules;
		src[i].n = r->src[i].p->n;
		src[i].group = r->src[i].group;
	}
	if (moat_acl_compile(identity, src, r->n, quarantined, acl) != MOAT_OK) {
		*why = "the identity's policies cannot be compiled";
		a = MOAT_ADMIT_ERROR;
		goto out;
	}
	*why = quarantined ? "quarantined" : "ok";
out:
	rec_unref(r);
	return a;
}
