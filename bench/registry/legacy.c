/*
 * The registry snapshot as it was before per-identity events (main at
 * 2f04d8d, src/registry/registry.c), kept here only so that moat-regbench
 * measures the old full reload against the new per-identity one with the
 * code that really ran. Renamed (legacy_*) and otherwise unchanged: every
 * registry change loaded all of this and every worker re-admitted every
 * session from it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/registry.h"
#include "regbench.h"
#include "registry/schema.h"

struct rs_policy {
	char *name;
	struct moat_rule *rules;
	size_t n;
};

struct rs_group {
	char *name;
	size_t *policies; /* indices into policies */
	size_t n;
};

struct rs_ident {
	char *id;
	enum moat_id_state state;
	size_t *groups; /* indices into groups */
	size_t n_groups;
	size_t *policies; /* directly attached */
	size_t n_policies;
};

struct legacy_snap {
	atomic_uint refs;
	struct rs_ident *ids;
	size_t n_ids, cap_ids;
	struct rs_group *groups;
	size_t n_groups, cap_groups;
	struct rs_policy *policies;
	size_t n_policies, cap_policies;
	size_t devices_group; /* index of "devices", or SIZE_MAX */
	char **revoked;	      /* sorted serials */
	size_t n_revoked, cap_revoked;
	/* load state */
	moat_err rc;
	char *err;
	size_t errlen;
};

static char *text_dup(const struct moat_val *v)
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

static bool grow(void **p, size_t *cap, size_t n, size_t size)
{
	void *np;
	size_t ncap;

	if (n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 16;
	np = realloc(*p, ncap * size);
	if (np == NULL)
		return false;
	*p = np;
	*cap = ncap;
	return true;
}

static bool push_index(size_t **arr, size_t *n, size_t v)
{
	size_t *na = realloc(*arr, (*n + 1) * sizeof(**arr));

	if (na == NULL)
		return false;
	na[(*n)++] = v;
	*arr = na;
	return true;
}

/* Rows arrive ORDER BY id/name: binary search works on what is loaded. */
static size_t find_ident(const struct legacy_snap *s, const char *id)
{
	size_t lo = 0, hi = s->n_ids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->ids[mid].id, id);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

static size_t find_group(const struct legacy_snap *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_groups; i++)
		if (strcmp(s->groups[i].name, name) == 0)
			return i;
	return SIZE_MAX;
}

static size_t find_policy(const struct legacy_snap *s, const char *name)
{
	size_t lo = 0, hi = s->n_policies;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->policies[mid].name, name);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

static moat_err ident_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct legacy_snap *s = arg;
	struct rs_ident *d;
	char state[32];
	size_t n;

	if (ncols != 3 || cols[2].type != MOAT_VAL_TEXT)
		return MOAT_E_CORRUPT;
	if (!grow((void **)&s->ids, &s->cap_ids, s->n_ids, sizeof(*s->ids)))
		return MOAT_E_NOMEM;
	d = &s->ids[s->n_ids];
	memset(d, 0, sizeof(*d));
	n = cols[2].len < sizeof(state) - 1 ? cols[2].len : sizeof(state) - 1;
	memcpy(state, cols[2].p, n);
	state[n] = '\0';
	if (!moat_id_state_parse(state, &d->state))
		return MOAT_E_CORRUPT;
	d->id = text_dup(&cols[0]);
	if (d->id == NULL)
		return MOAT_E_NOMEM;
	s->n_ids++;
	return MOAT_OK;
}

static moat_err policy_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct legacy_snap *s = arg;
	struct rs_policy *p;
	char *text, *line, *next;
	char why[160];

	if (ncols != 2)
		return MOAT_E_CORRUPT;
	if (!grow((void **)&s->policies, &s->cap_policies, s->n_policies, sizeof(*s->policies)))
		return MOAT_E_NOMEM;
	p = &s->policies[s->n_policies];
	memset(p, 0, sizeof(*p));
	p->name = text_dup(&cols[0]);
	text = text_dup(&cols[1]);
	if (p->name == NULL || text == NULL) {
		free(p->name);
		free(text);
		return MOAT_E_NOMEM;
	}
	s->n_policies++;
	p->rules = calloc(MOAT_POLICY_MAX_RULES, sizeof(*p->rules));
	if (p->rules == NULL) {
		free(text);
		return MOAT_E_NOMEM;
	}
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (*line == '\0')
			continue;
		if (p->n >= MOAT_POLICY_MAX_RULES ||
		    moat_rule_parse(line, &p->rules[p->n], why, sizeof(why)) != MOAT_OK) {
			snprintf(s->err, s->errlen, "policy %s: rule '%.80s': %s", p->name, line,
				 p->n >= MOAT_POLICY_MAX_RULES ? "too many rules" : why);
			free(text);
			return MOAT_E_CORRUPT;
		}
		p->n++;
	}
	free(text);
	return MOAT_OK;
}

static moat_err group_of(struct legacy_snap *s, const struct moat_val *v, size_t *out)
{
	char name[128];
	size_t n;

	if (v->type != MOAT_VAL_TEXT || v->len >= sizeof(name))
		return MOAT_E_CORRUPT;
	n = v->len;
	memcpy(name, v->p, n);
	name[n] = '\0';
	*out = find_group(s, name);
	if (*out != SIZE_MAX)
		return MOAT_OK;
	if (!grow((void **)&s->groups, &s->cap_groups, s->n_groups, sizeof(*s->groups)))
		return MOAT_E_NOMEM;
	memset(&s->groups[s->n_groups], 0, sizeof(s->groups[0]));
	s->groups[s->n_groups].name = text_dup(v);
	if (s->groups[s->n_groups].name == NULL)
		return MOAT_E_NOMEM;
	*out = s->n_groups++;
	return MOAT_OK;
}

static moat_err member_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct legacy_snap *s = arg;
	char id[MOAT_DEVICE_ID_MAX + 1];
	size_t g, d;
	moat_err rc;

	if (ncols != 2 || cols[0].type != MOAT_VAL_TEXT || cols[0].len >= sizeof(id))
		return MOAT_E_CORRUPT;
	memcpy(id, cols[0].p, cols[0].len);
	id[cols[0].len] = '\0';
	if ((rc = group_of(s, &cols[1], &g)) != MOAT_OK)
		return rc;
	d = find_ident(s, id);
	if (d == SIZE_MAX)
		return MOAT_OK; /* cascade guarantees this cannot happen; ignore */
	return push_index(&s->ids[d].groups, &s->ids[d].n_groups, g) ? MOAT_OK : MOAT_E_NOMEM;
}

static moat_err attach_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct legacy_snap *s = arg;
	char name[128], id[MOAT_DEVICE_ID_MAX + 1];
	size_t p, g, d;
	moat_err rc;

	if (ncols != 3 || cols[0].type != MOAT_VAL_TEXT || cols[0].len >= sizeof(name))
		return MOAT_E_CORRUPT;
	memcpy(name, cols[0].p, cols[0].len);
	name[cols[0].len] = '\0';
	p = find_policy(s, name);
	if (p == SIZE_MAX)
		return MOAT_OK;
	if (cols[1].type == MOAT_VAL_TEXT) {
		if ((rc = group_of(s, &cols[1], &g)) != MOAT_OK)
			return rc;
		return push_index(&s->groups[g].policies, &s->groups[g].n, p) ? MOAT_OK
									      : MOAT_E_NOMEM;
	}
	if (cols[2].type != MOAT_VAL_TEXT || cols[2].len >= sizeof(id))
		return MOAT_E_CORRUPT;
	memcpy(id, cols[2].p, cols[2].len);
	id[cols[2].len] = '\0';
	d = find_ident(s, id);
	if (d == SIZE_MAX)
		return MOAT_OK;
	return push_index(&s->ids[d].policies, &s->ids[d].n_policies, p) ? MOAT_OK : MOAT_E_NOMEM;
}

static moat_err revoked_cb(void *arg, const struct moat_val *cols, size_t ncols)
{
	struct legacy_snap *s = arg;
	char *serial;

	if (ncols != 2)
		return MOAT_E_CORRUPT;
	if (!grow((void **)&s->revoked, &s->cap_revoked, s->n_revoked, sizeof(*s->revoked)))
		return MOAT_E_NOMEM;
	serial = text_dup(&cols[0]);
	if (serial == NULL)
		return MOAT_E_NOMEM;
	s->revoked[s->n_revoked++] = serial;
	return MOAT_OK;
}

bool legacy_snap_revoked(const struct legacy_snap *s, const char *serial)
{
	size_t lo = 0, hi = s->n_revoked;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->revoked[mid], serial);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

bool legacy_snap_decommissioned(const struct legacy_snap *s, const char *identity)
{
	size_t d = find_ident(s, identity);

	return d != SIZE_MAX && s->ids[d].state == MOAT_ID_DECOMMISSIONED;
}

static void snap_free(struct legacy_snap *s)
{
	size_t i;

	for (i = 0; i < s->n_revoked; i++)
		free(s->revoked[i]);
	free(s->revoked);
	for (i = 0; i < s->n_ids; i++) {
		free(s->ids[i].id);
		free(s->ids[i].groups);
		free(s->ids[i].policies);
	}
	for (i = 0; i < s->n_groups; i++) {
		free(s->groups[i].name);
		free(s->groups[i].policies);
	}
	for (i = 0; i < s->n_policies; i++) {
		free(s->policies[i].name);
		free(s->policies[i].rules);
	}
	free(s->ids);
	free(s->groups);
	free(s->policies);
	free(s);
}

moat_err legacy_snap_load(struct moat_store *st, struct legacy_snap **out, char *err, size_t errlen)
{
	struct legacy_snap *s = calloc(1, sizeof(*s));
	moat_err rc = MOAT_E_NOMEM;

	*out = NULL;
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	atomic_init(&s->refs, 1);
	s->err = err;
	s->errlen = errlen;
	if (errlen)
		err[0] = '\0';
	/* Policies and identities first: memberships and attachments refer to
	 * them by binary search. */
	rc = moat_store_read(st, REG_STMT(REG_POLICIES), NULL, 0, policy_cb, s);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_IDENTITIES), NULL, 0, ident_cb, s);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_MEMBERS), NULL, 0, member_cb, s);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REG_ATTACH), NULL, 0, attach_cb, s);
	if (rc == MOAT_OK)
		rc = moat_store_read(st, REG_STMT(REVOKED_ALL), NULL, 0, revoked_cb, s);
	if (rc != MOAT_OK) {
		if (errlen && err[0] == '\0')
			snprintf(err, errlen, "cannot load the registry: %s", moat_strerror(rc));
		snap_free(s);
		return rc;
	}
	s->devices_group = find_group(s, "devices");
	s->err = NULL;
	s->errlen = 0;
	*out = s;
	return MOAT_OK;
}

void legacy_snap_ref(struct legacy_snap *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void legacy_snap_unref(struct legacy_snap *s)
{
	if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		snap_free(s);
}

size_t legacy_snap_count(const struct legacy_snap *s)
{
	return s->n_ids;
}

static bool add_group_sources(const struct legacy_snap *s, size_t g, struct moat_acl_source *src,
			      size_t *n)
{
	size_t k;

	for (k = 0; k < s->groups[g].n; k++) {
		const struct rs_policy *p = &s->policies[s->groups[g].policies[k]];
		if (*n >= MOAT_ACL_MAX_SOURCES)
			return false;
		src[*n].rules = p->rules;
		src[*n].n = p->n;
		src[*n].group = s->groups[g].name;
		(*n)++;
	}
	return true;
}

enum moat_admit legacy_snap_admit(const struct legacy_snap *s, const char *identity,
				  const char *serial, bool unknown_allow, struct moat_acl **acl,
				  const char **why)
{
	struct moat_acl_source src[MOAT_ACL_MAX_SOURCES];
	const struct rs_ident *d;
	size_t i, n = 0, di = find_ident(s, identity);
	bool quarantined = false;

	*acl = NULL;
	if (serial != NULL && serial[0] != '\0' && legacy_snap_revoked(s, serial)) {
		*why = "the certificate is revoked";
		return MOAT_ADMIT_REVOKED;
	}
	if (di == SIZE_MAX) {
		if (!unknown_allow || s->devices_group == SIZE_MAX) {
			*why = "identity is not registered";
			return MOAT_ADMIT_UNKNOWN;
		}
		if (!add_group_sources(s, s->devices_group, src, &n))
			goto too_big;
		goto compile;
	}
	d = &s->ids[di];
	switch (d->state) {
	case MOAT_ID_REGISTERED:
		*why = "identity is registered but not enrolled or activated";
		return MOAT_ADMIT_NOT_ENROLLED;
	case MOAT_ID_DISABLED:
		*why = "identity is disabled";
		return MOAT_ADMIT_DISABLED;
	case MOAT_ID_DECOMMISSIONED:
		*why = "identity is decommissioned";
		return MOAT_ADMIT_DECOMMISSIONED;
	case MOAT_ID_QUARANTINED:
		quarantined = true;
		break;
	case MOAT_ID_ACTIVE:
	case MOAT_ID__COUNT:
	default:
		break;
	}
	for (i = 0; i < d->n_groups; i++)
		if (!add_group_sources(s, d->groups[i], src, &n))
			goto too_big;
	for (i = 0; i < d->n_policies; i++) {
		const struct rs_policy *p = &s->policies[d->policies[i]];
		if (n >= MOAT_ACL_MAX_SOURCES)
			goto too_big;
		src[n].rules = p->rules;
		src[n].n = p->n;
		src[n].group = NULL;
		n++;
	}
compile:
	if (moat_acl_compile(identity, src, n, quarantined, acl) != MOAT_OK) {
		*why = "the identity's policies cannot be compiled";
		return MOAT_ADMIT_ERROR;
	}
	*why = quarantined ? "quarantined" : "ok";
	return MOAT_ADMIT_OK;
too_big:
	*why = "too many policies attached to this identity";
	return MOAT_ADMIT_ERROR;
}
