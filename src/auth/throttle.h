/*
 * Login throttling by key: after
 * MOAT_THROTTLE_FREE_FAILURES free failures each further failure makes the
 * key wait 1 s, 2 s, 4 s ... up to MOAT_THROTTLE_MAX_WAIT_MS; a key with no
 * failure for MOAT_THROTTLE_FORGET_MS starts again from zero.
 *
 * Memory is bounded: the table holds at most max_keys keys, all allocated
 * when it is created; when it is full the key whose last failure is oldest
 * is forgotten. Times are the caller's monotonic milliseconds.
 *
 * NOT thread-safe: one thread owns a table.
 */
#ifndef MOAT_AUTH_THROTTLE_H
#define MOAT_AUTH_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

struct moat_throttle;

/*
 * A table for at most max_keys keys, in [MOAT_THROTTLE_KEYS_MIN,
 * MOAT_THROTTLE_KEYS_MAX]. NULL if max_keys is out of range, memory ran
 * out, or libsodium could not initialise.
 */
struct moat_throttle *moat_throttle_new(size_t max_keys);

/* Free the table; NULL is a no-op. */
void moat_throttle_free(struct moat_throttle *t);

/*
 * 0 if key may attempt a login at now_ms, else the milliseconds until it
 * may. Forgets key if its failures have expired. Keys longer than
 * MOAT_THROTTLE_KEY_MAX bytes are tracked by their SHA-256.
 */
uint64_t moat_throttle_wait_ms(struct moat_throttle *t, const char *key, uint64_t now_ms);

/* Record a failed attempt by key at now_ms (see the schedule above). */
void moat_throttle_fail(struct moat_throttle *t, const char *key, uint64_t now_ms);

/* A successful login: forget key's failures. */
void moat_throttle_success(struct moat_throttle *t, const char *key);

/* Keys currently tracked (for tests and metrics). */
size_t moat_throttle_count(const struct moat_throttle *t);

/*
 * The login throttle (docs/security.md "Login throttling"). An attempt on
 * an account from an address waits for the longest of:
 *
 *   - the (account, address) pair: the schedule above, so one address
 *     guessing one account waits after five failures;
 *   - the address: the schedule above, so one address guessing many
 *     accounts waits after five failures in all;
 *   - the account: MOAT_THROTTLE_ACCOUNT_FREE_FAILURES failures from any
 *     addresses are free, then each further one makes every address wait
 *     1 s, 2 s, ... up to MOAT_THROTTLE_MAX_WAIT_MS; forgotten after
 *     MOAT_THROTTLE_ACCOUNT_FORGET_MS without failure.
 *
 * So failures from one address never stop the account's owner at another
 * address until that address alone has spent the account's budget, which
 * its own keys make take hours; and guesses spread over many addresses are
 * throttled after the account's budget, well within NIST SP 800-63B's 100.
 * A success forgets the pair and the account, never the address.
 *
 * Each of the two tables holds at most max_keys keys (see above). NOT
 * thread-safe. Addresses must not contain the byte 0x1f.
 */
struct moat_login_throttle;

struct moat_login_throttle *moat_login_throttle_new(size_t max_keys);
void moat_login_throttle_free(struct moat_login_throttle *lt);
/* 0 if account may be tried from addr at now_ms, else the wait in ms. */
uint64_t moat_login_throttle_wait_ms(struct moat_login_throttle *lt, const char *account,
				     const char *addr, uint64_t now_ms);
/* A failed attempt on account from addr at now_ms. */
void moat_login_throttle_fail(struct moat_login_throttle *lt, const char *account, const char *addr,
			      uint64_t now_ms);
/* A successful login on account from addr. */
void moat_login_throttle_success(struct moat_login_throttle *lt, const char *account,
				 const char *addr);

#endif
