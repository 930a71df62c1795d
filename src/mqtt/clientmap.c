/*
 * The client-id -> (worker, session) map: the one global map of the broker,
 * taken only when a client connects or a session ends, never on the publish
 * path. Open addressing with linear probing and tombstone-free
 * backward-shift deletion. Client ids are chosen by clients, so the hash is
 * keyed (SipHash-2-4 with a key drawn at start): nobody can pick ids that
 * collide and turn lookups into linear scans under the lock.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mqtt/internal.h"

_Static_assert(sizeof(((struct moat_broker *)0)->cmap_key) == crypto_shorthash_KEYBYTES,
	       "the client map key is a SipHash key");

static uint64_t cmap_hash(const struct moat_broker *b, const char *s, size_t n)
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, (const unsigned char *)s, n, b->cmap_key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static bool cmap_grow(struct moat_broker *b)
{
	size_t ncap = b->cmap_cap ? b->cmap_cap * 2 : 1024, i;
	struct moat_cmap_ent **n = calloc(ncap, sizeof(*n));

	if (n == NULL)
		return false;
	for (i = 0; i < b->cmap_cap; i++) {
		struct moat_cmap_ent *e = b->cmap[i];
		size_t j;
		if (e == NULL)
			continue;
		j = cmap_hash(b, e->client_id, strlen(e->client_id)) & (ncap - 1);
		while (n[j] != NULL)
			j = (j + 1) & (ncap - 1);
		n[j] = e;
	}
	free(b->cmap);
	b->cmap = n;
	b->cmap_cap = ncap;
	return true;
}

static size_t cmap_find(struct moat_broker *b, const char *cid, size_t len, bool *found)
{
	size_t j = cmap_hash(b, cid, len) & (b->cmap_cap - 1);

	while (b->cmap[j] != NULL) {
		if (strlen(b->cmap[j]->client_id) == len &&
		    memcmp(b->cmap[j]->client_id, cid, len) == 0) {
			*found = true;
			return j;
		}
		j = (j + 1) & (b->cmap_cap - 1);
	}
	*found = false;
	return j;
}

bool moat_clientmap_claim(struct moat_broker *b, const char *cid, size_t len, unsigned worker,
			  uint64_t session_id, unsigned *owner, uint64_t *owner_sid)
{
	bool found, claimed = false;
	size_t j;
	struct moat_cmap_ent *e;

	pthread_mutex_lock(&b->cmap_lock);
	if ((b->cmap_n + 1) * 2 > b->cmap_cap && !cmap_grow(b)) {
		/* Out of memory: treat as owned by the caller but unregistered;
		 * takeover across workers degrades, nothing else breaks. */
		*owner = worker;
		*owner_sid = session_id;
		goto out;
	}
	j = cmap_find(b, cid, len, &found);
	if (found) {
		*owner = b->cmap[j]->worker;
		*owner_sid = b->cmap[j]->session_id;
		goto out;
	}
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL) {
		*owner = worker;
		*owner_sid = session_id;
		goto out;
	}
	memcpy(e->client_id, cid, len);
	e->client_id[len] = '\0';
	e->worker = worker;
	e->session_id = session_id;
	b->cmap[j] = e;
	b->cmap_n++;
	*owner = worker;
	*owner_sid = session_id;
	claimed = true;
out:
	pthread_mutex_unlock(&b->cmap_lock);
	return claimed;
}

void moat_clientmap_release(struct moat_broker *b, const char *cid, size_t len, uint64_t session_id)
{
	bool found;
	size_t j, k;

	pthread_mutex_lock(&b->cmap_lock);
	if (b->cmap_cap == 0)
		goto out;
	j = cmap_find(b, cid, len, &found);
	if (!found || b->cmap[j]->session_id != session_id)
		goto out;
	free(b->cmap[j]);
	b->cmap[j] = NULL;
	b->cmap_n--;
	/* Backward-shift the cluster so lookups never stop early. */
	k = (j + 1) & (b->cmap_cap - 1);
	while (b->cmap[k] != NULL) {
		struct moat_cmap_ent *e = b->cmap[k];
		size_t home = cmap_hash(b, e->client_id, strlen(e->client_id)) & (b->cmap_cap - 1);
		bool move = (j <= k) ? (home <= j || home > k) : (home <= j && home > k);
		if (move) {
			b->cmap[j] = e;
			b->cmap[k] = NULL;
			j = k;
		}
		k = (k + 1) & (b->cmap_cap - 1);
	}
out:
	pthread_mutex_unlock(&b->cmap_lock);
}

void moat_clientmap_free(struct moat_broker *b)
{
	size_t i;

	for (i = 0; i < b->cmap_cap; i++)
		free(b->cmap[i]);
	free(b->cmap);
	b->cmap = NULL;
	b->cmap_cap = b->cmap_n = 0;
}

void moat_clientmap_rebind(struct moat_broker *b, const char *cid, size_t len, unsigned worker,
			   uint64_t session_id)
{
	bool found;
	size_t j;
	unsigned owner;
	uint64_t sid;

	pthread_mutex_lock(&b->cmap_lock);
	if (b->cmap_cap != 0) {
		j = cmap_find(b, cid, len, &found);
		if (found) {
			b->cmap[j]->worker = worker;
			b->cmap[j]->session_id = session_id;
			pthread_mutex_unlock(&b->cmap_lock);
			return;
		}
	}
	pthread_mutex_unlock(&b->cmap_lock);
	(void)moat_clientmap_claim(b, cid, len, worker, session_id, &owner, &sid);
}

bool moat_clientmap_lookup(struct moat_broker *b, const char *cid, size_t len, unsigned *worker,
			   uint64_t *session_id)
{
	bool found = false;
	size_t j;

	pthread_mutex_lock(&b->cmap_lock);
	if (b->cmap_cap != 0) {
		j = cmap_find(b, cid, len, &found);
		if (found) {
			*worker = b->cmap[j]->worker;
			*session_id = b->cmap[j]->session_id;
		}
	}
	pthread_mutex_unlock(&b->cmap_lock);
	return found;
}

struct moat_session *moat_clientmap_find_session(struct moat_broker *b, const char *cid, size_t len)
{
	struct moat_session *s = NULL;
	bool found;
	size_t j;

	pthread_mutex_lock(&b->cmap_lock);
	if (b->cmap_cap != 0) {
		j = cmap_find(b, cid, len, &found);
		if (found)
			s = moat_worker_find_session(&b->workers[b->cmap[j]->worker],
						     b->cmap[j]->session_id);
	}
	pthread_mutex_unlock(&b->cmap_lock);
	return s;
}
