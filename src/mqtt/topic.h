/*
 * Topic names and filters: validation, shared-subscription parsing and
 * single filter/topic matching (used by policies). Pure functions.
 */
#ifndef MOAT_MQTT_TOPIC_H
#define MOAT_MQTT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* A topic name a client may publish to: non-empty, <= MOAT_MAX_TOPIC_LEN,
 * <= MOAT_MAX_TOPIC_LEVELS levels, no '+', '#' or U+0000. (UTF-8 validity is
 * the codec's job.) */
bool moat_topic_name_valid(const char *t, size_t len);

/* A topic filter: as above, but '+' must occupy a whole level and '#' must be
 * the whole last level. */
bool moat_topic_filter_valid(const char *f, size_t len);

/*
 * "$share/{group}/{filter}": on a valid shared subscription, sets the group
 * and the inner filter (views into f) and returns true. A malformed one
 * ("$share/", "$share/g", group with '+'/'#', empty group, invalid inner
 * filter) sets *malformed. Non-shared filters return false with *malformed
 * false.
 */
bool moat_topic_shared_parse(const char *f, size_t len, const char **group, size_t *glen,
			     const char **filter, size_t *flen, bool *malformed);

/* Does filter f match topic t? Follows MQTT 4.7, including: a filter whose
 * first character is a wildcard never matches a topic starting with '$';
 * "a/#" matches "a". */
bool moat_topic_matches(const char *f, size_t flen, const char *t, size_t tlen);

/* Is every topic that filter `inner` can match also matched by `outer`?
 * (Policy check for subscriptions: a device may subscribe to `inner` only if
 * an allowed filter covers it.) Conservative: false when unsure. */
bool moat_topic_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen);

#endif
