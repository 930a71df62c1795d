/*
 * The client-id -> (worker, session) registry: the one global map of the
 * broker, taken only when a client connects or a session ends, never on the
 * publish path. Open addressing with linear probing and tombstone-free
 * backward-shift deletion.
 */
#include <stdlib.h>
#include <string.h>

#include "mqtt/broker.h"

static uint64_t reg_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static bool reg_grow(struct moat_broker *b)
{
	size_t ncap = b->reg_cap ? b->reg_cap * 2 : 1024, i;
	struct moat_regent **n = calloc(ncap, sizeof(*n));

	if (n == NULL)
		return false;
	for (i = 0; i < b->reg_cap; i++) {
		struct moat_regent *e = b->reg[i];
		size_t j;
		if (e == NULL)
			continue;
		j = reg_hash(e->client_id, strlen(e->client_id)) & (ncap - 1);
		while (n[j] != NULL)
			j = (j + 1) & (ncap - 1);
		n[j] = e;
	}
	free(b->reg);
	b->reg = n;
	b->reg_cap = ncap;
	return true;
}

static size_t reg_find(struct moat_broker *b, const char *cid, size_t len, bool *found)
{
	size_t j = reg_hash(cid, len) & (b->reg_cap - 1);

	while (b->reg[j] != NULL) {
		if (strlen(b->reg[j]->client_id) == len &&
		    memcmp(b->reg[j]->client_id, cid, len) == 0) {
			*found = true;
			return j;
		}
		j = (j + 1) & (b->reg_cap - 1);
	}
	*found = false;
	return j;
}

bool moat_registry_claim(struct moat_broker *b, const char *cid, size_t len, unsigned worker,
			 uint64_t session_id, unsigned *owner, uint64_t *owner_sid)
{
	bool found, claimed = false;
	size_t j;
	struct moat_regent *e;

	pthread_mutex_lock(&b->reg_lock);
	if ((b->reg_n + 1) * 2 > b->reg_cap && !reg_grow(b)) {
		/* Out of memory: treat as owned by the caller but unregistered;
		 * takeover across workers degrades, nothing else breaks. */
		*owner = worker;
		*owner_sid = session_id;
		goto out;
	}
	j = reg_find(b, cid, len, &found);
	if (found) {
		*owner = b->reg[j]->worker;
		*owner_sid = b->reg[j]->session_id;
		goto out;
	}
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL) {
		*owner = worker;
		*owner_sid = session_id;
		goto out;
	}
	e->client_id = (char *)(e + 1);
	memcpy(e->client_id, cid, len);
	e->client_id[len] = '\0';
	e->worker = worker;
	e->session_id = session_id;
	b->reg[j] = e;
	b->reg_n++;
	*owner = worker;
	*owner_sid = session_id;
	claimed = true;
out:
	pthread_mutex_unlock(&b->reg_lock);
	return claimed;
}

void moat_registry_release(struct moat_broker *b, const char *cid, size_t len, uint64_t session_id)
{
	bool found;
	size_t j, k;

	pthread_mutex_lock(&b->reg_lock);
	if (b->reg_cap == 0)
		goto out;
	j = reg_find(b, cid, len, &found);
	if (!found || b->reg[j]->session_id != session_id)
		goto out;
	free(b->reg[j]);
	b->reg[j] = NULL;
	b->reg_n--;
	/* Backward-shift the cluster so lookups never stop early. */
	k = (j + 1) & (b->reg_cap - 1);
	while (b->reg[k] != NULL) {
		struct moat_regent *e = b->reg[k];
		size_t home = reg_hash(e->client_id, strlen(e->client_id)) & (b->reg_cap - 1);
		bool move = (j <= k) ? (home <= j || home > k) : (home <= j && home > k);
		if (move) {
			b->reg[j] = e;
			b->reg[k] = NULL;
			j = k;
		}
		k = (k + 1) & (b->reg_cap - 1);
	}
out:
	pthread_mutex_unlock(&b->reg_lock);
}

void moat_registry_free(struct moat_broker *b)
{
	size_t i;

	for (i = 0; i < b->reg_cap; i++)
		free(b->reg[i]);
	free(b->reg);
	b->reg = NULL;
	b->reg_cap = b->reg_n = 0;
}

void moat_registry_rebind(struct moat_broker *b, const char *cid, size_t len, unsigned worker,
			  uint64_t session_id)
{
	bool found;
	size_t j;
	unsigned owner;
	uint64_t sid;

	pthread_mutex_lock(&b->reg_lock);
	if (b->reg_cap != 0) {
		j = reg_find(b, cid, len, &found);
		if (found) {
			b->reg[j]->worker = worker;
			b->reg[j]->session_id = session_id;
			pthread_mutex_unlock(&b->reg_lock);
			return;
		}
	}
	pthread_mutex_unlock(&b->reg_lock);
	(void)moat_registry_claim(b, cid, len, worker, session_id, &owner, &sid);
}

struct moat_session *moat_registry_find_session(struct moat_broker *b, const char *cid, size_t len)
{
	struct moat_session *s = NULL;
	bool found;
	size_t j;

	pthread_mutex_lock(&b->reg_lock);
	if (b->reg_cap != 0) {
		j = reg_find(b, cid, len, &found);
		if (found)
			s = moat_worker_find_session(&b->workers[b->reg[j]->worker],
						     b->reg[j]->session_id);
	}
	pthread_mutex_unlock(&b->reg_lock);
	return s;
}
