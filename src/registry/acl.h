/*
 * The policy engine of the device registry: rules, their text form, and the
 * compiled per-identity ACL the broker consults on every PUBLISH, SUBSCRIBE
 * and delivery. Pure: no I/O, no database, no locks.
 *
 * A policy is a list of allow/deny rules over topic filters that may name
 * ${device} (the identity) and ${group} (the group the policy is attached
 * through). Deny wins; no matching allow rule means deny. A compiled ACL is
 * immutable and reference counted, so worker threads share it without
 * locking and a policy change swaps in a new one.
 */
#ifndef MOAT_REGISTRY_ACL_H
#define MOAT_REGISTRY_ACL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/limits.h"

enum moat_rule_effect { MOAT_RULE_ALLOW = 0, MOAT_RULE_DENY = 1 };

/* Actions a rule applies to: a bit set; both is 3. */
enum { MOAT_RULE_PUBLISH = 1, MOAT_RULE_SUBSCRIBE = 2 };

struct moat_rule {
	enum moat_rule_effect effect;
	unsigned actions;		       /* MOAT_RULE_PUBLISH | MOAT_RULE_SUBSCRIBE */
	char filter[MOAT_RULE_FILTER_MAX + 1]; /* MQTT filter, may hold ${device} / ${group} */
};

/* Longest text form of a rule, without its NUL: "allow subscribe <filter>". */
#define MOAT_RULE_TEXT_MAX (5u + 1u + 9u + 1u + MOAT_RULE_FILTER_MAX)

/*
 * Validate a rule as it is stored and sent over the API: effect is allow or
 * deny; actions is publish, subscribe or both; the filter is NUL-terminated,
 * 1..MOAT_RULE_FILTER_MAX bytes, uses '$' only in the variables ${device}
 * and ${group} or as a leading "$moat" level, and is a valid MQTT filter
 * once each variable is replaced by a sample id. MOAT_E_LIMIT when the
 * filter is too long, MOAT_E_INVAL for anything else wrong; on failure `why`
 * (may be NULL) gets one sentence saying what.
 */
moat_err moat_rule_check(const struct moat_rule *r, char *why, size_t whylen);

/*
 * Parse the text form used by the CLI and the store: "<effect> <action>
 * <filter>" with exactly one space between the words, effect "allow" or
 * "deny", action "publish", "subscribe" or "pubsub" (lower case), and the
 * filter verbatim to the end of the text (topics may contain spaces). The
 * result must pass moat_rule_check. *out is written only on MOAT_OK; on
 * failure `why` gets a sentence.
 */
moat_err moat_rule_parse(const char *text, struct moat_rule *out, char *why, size_t whylen);

/*
 * Write the text form of a rule (the form moat_rule_parse reads back) into
 * out, NUL-terminated and truncated to outlen like snprintf. Returns the
 * length of the full text without its NUL (at most MOAT_RULE_TEXT_MAX), or 0
 * when the effect, actions or filter termination are invalid (out then
 * holds "").
 */
size_t moat_rule_format(const struct moat_rule *r, char *out, size_t outlen);

/*
 * One policy attached through one binding: its rules and the group name to
 * substitute for ${group} (NULL or "" when attached to a service identity;
 * a rule using ${group} then never matches, whether allow or deny).
 */
struct moat_acl_source {
	const struct moat_rule *rules;
	size_t n;
	const char *group;
};

/* A compiled ACL: immutable and reference counted, shared read-only by
 * threads. */
struct moat_acl;

/*
 * Compile the ACL of one identity: check every rule (moat_rule_check),
 * substitute ${device} with the identity and ${group} with each source's
 * group, and pre-split the filters into levels so evaluation neither
 * allocates nor substitutes. The identity and non-empty group names must be
 * usable as one topic level: 1..MOAT_MAX_CLIENT_ID_LEN bytes, no '/', '+',
 * '#' or NUL, not starting with '$' (else MOAT_E_INVAL, so a name can never
 * widen a rule). quarantined: the sources are ignored and the ACL allows
 * only publishing under "$moat/q/<identity>/" and nothing else.
 * MOAT_E_LIMIT for more than MOAT_ACL_MAX_SOURCES sources, more than
 * MOAT_POLICY_MAX_RULES rules in one source, or a substituted filter longer
 * than MOAT_MAX_TOPIC_LEN; MOAT_E_INVAL for an invalid rule (the whole
 * compile fails: silently dropping a deny rule would widen access);
 * MOAT_E_NOMEM. *out (refcount 1) is set only on MOAT_OK.
 */
moat_err moat_acl_compile(const char *identity, const struct moat_acl_source *src, size_t nsrc,
			  bool quarantined, struct moat_acl **out);

/* Take a reference (atomic; any thread). */
void moat_acl_ref(struct moat_acl *a);

/* Drop a reference (atomic; any thread); frees the ACL when it was the
 * last. NULL is a no-op. */
void moat_acl_unref(struct moat_acl *a);

/*
 * May this identity publish to the concrete topic? True iff some allow rule
 * with PUBLISH matches the topic and no deny rule with PUBLISH does. False
 * for an invalid topic name or a NULL ACL. No allocation; O(rules x levels).
 */
bool moat_acl_may_publish(const struct moat_acl *a, const char *topic, size_t len);

/*
 * May this identity subscribe with the filter? Shared subscriptions
 * "$share/<g>/<f>" are checked on f (malformed ones are refused). True iff
 * some allow SUBSCRIBE rule's filter covers it (every topic the filter can
 * match is matched by the rule) and no deny SUBSCRIBE rule's filter
 * intersects it (some topic is matched by both): deny wins. False for an
 * invalid filter or a NULL ACL.
 */
bool moat_acl_may_subscribe(const struct moat_acl *a, const char *filter, size_t len);

/*
 * May a message on the concrete topic be delivered to this identity (the
 * check behind quarantine and live policy changes, made per message)? True
 * iff some allow SUBSCRIBE rule matches the topic and no deny SUBSCRIBE rule
 * does. False for an invalid topic name or a NULL ACL.
 */
bool moat_acl_may_receive(const struct moat_acl *a, const char *topic, size_t len);

/* Rules in the compiled ACL: those of all sources, less the ${group} rules
 * of sources without a group (they can never match); 1 when quarantined. */
size_t moat_acl_rule_count(const struct moat_acl *a);

/*
 * Filter algebra (MQTT 4.7), on plain filters ("$share/" is not stripped).
 * Both answer false when either argument is not a valid filter. Both keep
 * the rule that a filter whose first level is a wildcard matches no topic
 * starting with '$', and that "a/#" matches "a".
 *
 * covers: is every topic `inner` can match also matched by `outer`? Agrees
 * with moat_topic_filter_covers.
 */
bool moat_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen);

/* intersects: is some valid topic name matched by both filters? Symmetric. */
bool moat_filter_intersects(const char *a, size_t alen, const char *b, size_t blen);

/*
 * The built-in policy "device-default", the broker's historical default:
 * allow publish d/${device}/#, allow subscribe c/${device}/#, allow
 * subscribe d/${device}/#. Returns a static array and sets *n to its length.
 * One difference from the old prefix check in src/mqtt/policy.c: '#' also
 * matches its parent level (MQTT 4.7.1.2), so the device may now also
 * publish to and subscribe to "d/<id>" and subscribe to "c/<id>".
 */
const struct moat_rule *moat_acl_device_default(size_t *n);

#endif
