/*
 * Topic tries.
 *
 * struct moat_subtrie maps topic filters to subscriptions. Each node holds
 * the entries of the filter that ends there, keyed by an opaque owner (the
 * session) so one owner has at most one entry per filter. Matching walks the
 * topic level by level; its work is bounded by MOAT_MAX_TOPIC_LEVELS and the
 * trie's fan-out, never by the number of subscribers that do not match.
 *
 * struct moat_rettree maps topic names to retained messages and answers
 * "which retained topics does this filter match" for new subscriptions.
 *
 * Neither is thread-safe: each worker owns its own (docs/architecture.md).
 * Keys are byte strings with explicit lengths (not NUL-terminated).
 */
#ifndef MOAT_MQTT_TRIE_H
#define MOAT_MQTT_TRIE_H

#include <stddef.h>

#include "core/error.h"

struct moat_subtrie;

struct moat_subtrie *moat_subtrie_new(void);
/* Frees the trie; calls free_cb(owner, value) for every remaining entry. */
void moat_subtrie_free(struct moat_subtrie *t, void (*free_cb)(void *owner, void *value));

/* Add or replace owner's entry for filter. If it replaced one, *old (if
 * non-NULL) receives the previous value, else NULL. */
moat_err moat_subtrie_insert(struct moat_subtrie *t, const char *filter, size_t len, void *owner,
			     void *value, void **old);

/* Remove owner's entry for filter; *old receives its value. MOAT_E_NOTFOUND
 * when there was none. Empty nodes are pruned. */
moat_err moat_subtrie_remove(struct moat_subtrie *t, const char *filter, size_t len, void *owner,
			     void **old);

typedef void (*moat_subtrie_match_cb)(void *owner, void *value, void *ctx);

/* Call cb for every entry whose filter matches topic (MQTT 4.7 rules;
 * '$'-topics are not matched by a leading '+' or '#'). */
void moat_subtrie_match(const struct moat_subtrie *t, const char *topic, size_t len,
			moat_subtrie_match_cb cb, void *ctx);

/* Number of entries. */
size_t moat_subtrie_count(const struct moat_subtrie *t);

struct moat_rettree;

struct moat_rettree *moat_rettree_new(void);
void moat_rettree_free(struct moat_rettree *t, void (*free_cb)(void *value));
/* Set topic's value (NULL removes it). *old receives the previous value. */
moat_err moat_rettree_set(struct moat_rettree *t, const char *topic, size_t len, void *value,
			  void **old);
void *moat_rettree_get(const struct moat_rettree *t, const char *topic, size_t len);

typedef void (*moat_rettree_match_cb)(const char *topic, size_t len, void *value, void *ctx);
/* Call cb for each retained topic matched by filter. */
void moat_rettree_match(const struct moat_rettree *t, const char *filter, size_t len,
			moat_rettree_match_cb cb, void *ctx);
size_t moat_rettree_count(const struct moat_rettree *t);

#endif
