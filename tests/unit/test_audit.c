/* The tamper-evident audit log: the entry hash encoding (checked against an
 * independent SHA-256 over a hand-built buffer), checkpoint signatures, key
 * files, the JSON export, and that verification names the first entry of
 * every kind of tampering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "audit/audit.h"
#include "audit/audit_store.h"

#define N 50
#define NCP 4
#define TS0 1795331400000LL /* 2026-11-22T07:10:00Z */

static uint8_t pk[32], sk[64];
static struct moat_audit_entry base[N];
static char details[N][64];
static struct moat_audit_checkpoint base_cps[NCP];

/* A log under test: a copy of the base chain the test then damages. Room
 * for a few inserted rows. */
struct work {
	struct moat_audit_entry e[N + 4];
	size_t n;
	struct moat_audit_checkpoint c[NCP + 2];
	size_t ncp;
	char scratch[N + 4][64];
};

static void fill_entry(struct moat_audit_entry *e, int64_t seq, const char *detail)
{
	memset(e, 0, sizeof(*e));
	e->seq = seq;
	e->ts_ms = TS0 + seq * 1000;
	e->actor = seq % 3 == 0 ? "device:x" : "user:alice";
	e->action = seq % 2 == 0 ? "mqtt.policy_denied" : "auth.login";
	e->target = seq % 2 == 0 ? "d/x/t" : "";
	e->outcome = seq % 5 == 0 ? "denied" : "ok";
	e->peer = "192.0.2.7";
	e->detail = detail;
}

static int setup(void **state)
{
	(void)state;
	static const uint8_t zero[32];
	size_t i;

	if (sodium_init() < 0 || crypto_sign_keypair(pk, sk) != 0)
		return -1;
	for (i = 0; i < N; i++) {
		snprintf(details[i], sizeof(details[i]), "{\"n\":%zu,\"why\":\"test\"}", i + 1);
		fill_entry(&base[i], (int64_t)i + 1, details[i]);
		moat_audit_chain(&base[i], i == 0 ? zero : base[i - 1].hash);
	}
	for (i = 0; i < NCP; i++) {
		int64_t seq = (int64_t)(i + 1) * 10;

		base_cps[i].seq = seq;
		base_cps[i].ts_ms = base[seq - 1].ts_ms + 1;
		memcpy(base_cps[i].head, base[seq - 1].hash, 32);
		moat_audit_checkpoint_sign(&base_cps[i], sk);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sodium_memzero(sk, sizeof(sk));
	return 0;
}

static struct work *work_new(void)
{
	struct work *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	memcpy(w->e, base, sizeof(base));
	w->n = N;
	memcpy(w->c, base_cps, sizeof(base_cps));
	w->ncp = NCP;
	return w;
}

/* Index of entry seq in the undamaged base. */
#define IX(seq) ((size_t)(seq)-1)

static void drop_rows(struct work *w, size_t from, size_t count)
{
	memmove(&w->e[from], &w->e[from + count], (w->n - from - count) * sizeof(w->e[0]));
	w->n -= count;
}

static void renumber_from(struct work *w, size_t from, int64_t delta)
{
	for (; from < w->n; from++)
		w->e[from].seq += delta;
}

/* What a careful attacker without the key does: re-link rows from..n-1. */
static void rechain_from(struct work *w, size_t from)
{
	static const uint8_t zero[32];

	for (; from < w->n; from++)
		moat_audit_chain(&w->e[from], from == 0 ? zero : w->e[from - 1].hash);
}

static void set_detail(struct work *w, size_t i, const char *d)
{
	snprintf(w->scratch[i], sizeof(w->scratch[i]), "%s", d);
	w->e[i].detail = w->scratch[i];
}

static void expect(struct work *w, enum moat_audit_fault fault, int64_t seq)
{
	struct moat_audit_report rep;
	moat_err rc = moat_audit_verify(w->e, w->n, w->c, w->ncp, pk, &rep);

	if (rep.fault != fault || rep.first_bad_seq != seq)
		fail_msg("want %s at %lld, got %s at %lld: %s", moat_audit_fault_name(fault),
			 (long long)seq, moat_audit_fault_name(rep.fault),
			 (long long)rep.first_bad_seq, rep.reason);
	assert_int_equal(rc, fault == MOAT_AUDIT_INTACT ? MOAT_OK : MOAT_E_CORRUPT);
	assert_true(strlen(rep.reason) > 0);
	free(w);
}

/* ---- hash encoding ---- */

static void be(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* The encoding of audit.h, built by hand, hashed by OpenSSL. */
static void reference_hash(const struct moat_audit_entry *e, uint8_t out[32])
{
	const char *s[6] = {e->actor, e->action, e->target, e->outcome, e->peer, e->detail};
	uint8_t buf[1024];
	size_t o = 0, i;

	memcpy(buf, "moat-audit-v1", 14); /* with its NUL */
	o = 14;
	be(buf + o, (uint64_t)e->seq, 8);
	o += 8;
	be(buf + o, (uint64_t)e->ts_ms, 8);
	o += 8;
	for (i = 0; i < 6; i++) {
		size_t n = strlen(s[i]);

		be(buf + o, n, 4);
		o += 4;
		memcpy(buf + o, s[i], n);
		o += n;
	}
	memcpy(buf + o, e->prev, 32);
	o += 32;
	SHA256(buf, o, out);
}

static void hex_of(const uint8_t h[32], char out[65])
{
	sodium_bin2hex(out, 65, h, 32);
}

static void test_hash_vector(void **state)
{
	(void)state;
	struct moat_audit_entry e1, e2;
	uint8_t zero[32] = {0}, ref[32];
	char hex[65];

	memset(&e1, 0, sizeof(e1));
	e1.seq = 1;
	e1.ts_ms = TS0 + 123;
	e1.actor = "user:alice";
	e1.action = "auth.login";
	e1.target = "";
	e1.outcome = "ok";
	e1.peer = "192.0.2.7";
	e1.detail = "{\"method\":\"password\"}";
	moat_audit_chain(&e1, zero);
	e2 = e1;
	e2.seq = 2;
	e2.ts_ms = -1; /* negative times encode as two's complement */
	e2.action = "user.create";
	e2.target = "user:bob";
	e2.detail = "{}";
	moat_audit_chain(&e2, e1.hash);
	assert_memory_equal(e2.prev, e1.hash, 32);

	/* The real check: an independent implementation of the encoding. */
	reference_hash(&e1, ref);
	assert_memory_equal(e1.hash, ref, 32);
	reference_hash(&e2, ref);
	assert_memory_equal(e2.hash, ref, 32);

	/* Pinned so the encoding can never drift silently (also reproduced with
	 * Python hashlib from docs/audit.md). */
	hex_of(e1.hash, hex);
	assert_string_equal(hex,
			    "1c422e15c26280ed5d2356b98aee7398896a58111c2d17503730f9e5918e7aad");
	hex_of(e2.hash, hex);
	assert_string_equal(hex,
			    "89bbc99a98ee135ef0abf8823facdff322cb21be945153799ad9e7036335bdc1");
}

static void test_hash_unambiguous(void **state)
{
	(void)state;
	struct moat_audit_entry a = base[4], b = base[4];
	uint8_t ha[32], hb[32];

	/* The same bytes split differently between fields. */
	a.actor = "user:ab";
	a.action = "c";
	b.actor = "user:a";
	b.action = "bc";
	moat_audit_entry_hash(&a, ha);
	moat_audit_entry_hash(&b, hb);
	assert_memory_not_equal(ha, hb, 32);

	/* NULL hashes as "". */
	a = base[4];
	b = base[4];
	a.target = NULL;
	b.target = "";
	moat_audit_entry_hash(&a, ha);
	moat_audit_entry_hash(&b, hb);
	assert_memory_equal(ha, hb, 32);

	/* Every field is covered. */
	moat_audit_entry_hash(&base[4], ha);
	{
		struct moat_audit_entry v[9];
		size_t i;

		for (i = 0; i < 9; i++)
			v[i] = base[4];
		v[0].seq++;
		v[1].ts_ms++;
		v[2].actor = "system";
		v[3].action = "auth.logout";
		v[4].target = "x";
		v[5].outcome = "failed";
		v[6].peer = "";
		v[7].detail = "{}";
		v[8].prev[31] ^= 1;
		for (i = 0; i < 9; i++) {
			moat_audit_entry_hash(&v[i], hb);
			if (memcmp(ha, hb, 32) == 0)
				fail_msg("field %zu is not hashed", i);
		}
	}
}

/* ---- checkpoints ---- */

static void test_checkpoint_roundtrip(void **state)
{
	(void)state;
	struct moat_audit_checkpoint c = base_cps[1], d;
	uint8_t pk2[32], sk2[64];

	assert_true(moat_audit_checkpoint_ok(&c, pk));
	d = c;
	d.seq++;
	assert_false(moat_audit_checkpoint_ok(&d, pk));
	d = c;
	d.ts_ms++;
	assert_false(moat_audit_checkpoint_ok(&d, pk));
	d = c;
	d.head[0] ^= 1;
	assert_false(moat_audit_checkpoint_ok(&d, pk));
	d = c;
	d.sig[10] ^= 0x40;
	assert_false(moat_audit_checkpoint_ok(&d, pk));
	memset(d.sig, 0, sizeof(d.sig));
	assert_false(moat_audit_checkpoint_ok(&d, pk));

	/* Another key's signature over the same checkpoint. */
	crypto_sign_keypair(pk2, sk2);
	d = c;
	moat_audit_checkpoint_sign(&d, sk2);
	assert_false(moat_audit_checkpoint_ok(&d, pk));
	assert_true(moat_audit_checkpoint_ok(&d, pk2));
	/* Deterministic: re-signing gives the same signature. */
	d = c;
	moat_audit_checkpoint_sign(&d, sk);
	assert_memory_equal(d.sig, c.sig, 64);
	sodium_memzero(sk2, sizeof(sk2));
}

/* The signed message, built by hand and checked with libsodium directly. */
static void test_checkpoint_message(void **state)
{
	(void)state;
	const struct moat_audit_checkpoint *c = &base_cps[0];
	uint8_t msg[25 + 8 + 8 + 32];

	memcpy(msg, "moat-audit-checkpoint-v1", 25);
	be(msg + 25, (uint64_t)c->seq, 8);
	be(msg + 33, (uint64_t)c->ts_ms, 8);
	memcpy(msg + 41, c->head, 32);
	assert_int_equal(crypto_sign_verify_detached(c->sig, msg, sizeof(msg), pk), 0);
}

/* ---- verification ---- */

static void test_intact(void **state)
{
	(void)state;
	struct work *w = work_new();
	struct moat_audit_report rep;

	assert_int_equal(moat_audit_verify(w->e, w->n, w->c, w->ncp, pk, &rep), MOAT_OK);
	assert_int_equal(rep.fault, MOAT_AUDIT_INTACT);
	assert_int_equal(rep.first_bad_seq, 0);
	assert_int_equal(rep.entries, N);
	assert_int_equal(rep.checkpoints, NCP);
	assert_int_equal(rep.sealed_seq, 40);
	assert_int_equal(rep.unsealed, 10);
	free(w);

	/* No checkpoints at all: the chain alone. */
	w = work_new();
	assert_int_equal(moat_audit_verify(w->e, w->n, NULL, 0, NULL, &rep), MOAT_OK);
	assert_int_equal(rep.sealed_seq, 0);
	assert_int_equal(rep.unsealed, N);
	free(w);
}

static void test_empty(void **state)
{
	(void)state;
	struct work *w = work_new();
	struct moat_audit_report rep;

	assert_int_equal(moat_audit_verify(NULL, 0, NULL, 0, pk, &rep), MOAT_OK);
	assert_int_equal(rep.fault, MOAT_AUDIT_INTACT);
	assert_int_equal(rep.entries, 0);

	/* Every row deleted, a checkpoint left: truncated at 1. */
	w->n = 0;
	w->ncp = 1;
	expect(w, MOAT_AUDIT_TRUNCATED, 1);
}

static void test_modified_not_rehashed(void **state)
{
	(void)state;
	struct work *w = work_new();

	set_detail(w, IX(17), "{\"n\":17,\"why\":\"forged\"}");
	expect(w, MOAT_AUDIT_MODIFIED, 17);

	w = work_new();
	w->e[IX(1)].actor = "system";
	expect(w, MOAT_AUDIT_MODIFIED, 1);

	w = work_new();
	w->e[IX(33)].ts_ms += 1;
	expect(w, MOAT_AUDIT_MODIFIED, 33);

	/* The last row is checked against its own hash even when unsealed. */
	w = work_new();
	w->e[IX(50)].outcome = "ok";
	expect(w, MOAT_AUDIT_MODIFIED, 50);

	/* The stored hash itself changed: entry 17 no longer matches it, and
	 * that is reported before entry 18's broken link. */
	w = work_new();
	w->e[IX(17)].hash[0] ^= 1;
	expect(w, MOAT_AUDIT_MODIFIED, 17);
}

static void test_modified_rehashed(void **state)
{
	(void)state;
	struct work *w = work_new();

	/* Re-hashed in place: detected through entry 18's prev. */
	set_detail(w, IX(17), "{\"n\":17,\"why\":\"forged\"}");
	moat_audit_chain(&w->e[IX(17)], w->e[IX(16)].hash);
	expect(w, MOAT_AUDIT_MODIFIED, 17);

	/* A sealed entry, re-hashed, with every later row dropped so no link
	 * gives it away: the checkpoint for 40 does. Entries after the last
	 * confirmed checkpoint (30) are suspect. */
	w = work_new();
	set_detail(w, IX(40), "{}");
	moat_audit_chain(&w->e[IX(40)], w->e[IX(39)].hash);
	w->n = 40;
	expect(w, MOAT_AUDIT_MODIFIED, 31);

	/* The limit docs/audit.md states: the newest unsealed entry, rewritten
	 * and re-hashed, is undetectable offline. */
	w = work_new();
	set_detail(w, IX(50), "{}");
	moat_audit_chain(&w->e[IX(50)], w->e[IX(49)].hash);
	expect(w, MOAT_AUDIT_INTACT, 0);
}

static void test_removed(void **state)
{
	(void)state;
	struct work *w = work_new();

	drop_rows(w, IX(17), 1);
	expect(w, MOAT_AUDIT_REMOVED, 17);

	w = work_new();
	drop_rows(w, IX(17), 3);
	expect(w, MOAT_AUDIT_REMOVED, 17);

	/* Removed and the later rows renumbered to close the gap. */
	w = work_new();
	drop_rows(w, IX(17), 1);
	renumber_from(w, IX(17), -1);
	expect(w, MOAT_AUDIT_REMOVED, 17);

	/* ... and the whole rest re-linked: the chain is consistent again,
	 * but the checkpoint for 20 no longer matches; 10 still does. */
	w = work_new();
	drop_rows(w, IX(17), 1);
	renumber_from(w, IX(17), -1);
	rechain_from(w, IX(17));
	expect(w, MOAT_AUDIT_MODIFIED, 11);
}

static void test_removed_first(void **state)
{
	(void)state;
	struct work *w = work_new();

	drop_rows(w, 0, 1);
	expect(w, MOAT_AUDIT_REMOVED, 1);

	w = work_new();
	drop_rows(w, 0, 1);
	renumber_from(w, 0, -1);
	expect(w, MOAT_AUDIT_REMOVED, 1);

	/* Renumbered and re-hashed, but still linked to the deleted entry. */
	w = work_new();
	drop_rows(w, 0, 1);
	renumber_from(w, 0, -1);
	moat_audit_entry_hash(&w->e[0], w->e[0].hash);
	expect(w, MOAT_AUDIT_REMOVED, 1);
}

static void test_reordered(void **state)
{
	(void)state;
	struct work *w = work_new();
	struct moat_audit_entry t;

	/* Two adjacent rows' contents swapped, seq columns included, so the
	 * rows come back in the other order. */
	t = w->e[IX(17)];
	w->e[IX(17)] = w->e[IX(18)];
	w->e[IX(18)] = t;
	expect(w, MOAT_AUDIT_REORDERED, 17);

	/* Contents swapped but the seq columns left in place (what ORDER BY
	 * seq returns after an UPDATE of both rows). */
	w = work_new();
	t = w->e[IX(17)];
	w->e[IX(17)] = w->e[IX(18)];
	w->e[IX(18)] = t;
	w->e[IX(17)].seq = 17;
	w->e[IX(18)].seq = 18;
	expect(w, MOAT_AUDIT_REORDERED, 17);

	/* A row duplicated. */
	w = work_new();
	memmove(&w->e[IX(22)], &w->e[IX(21)], (N - IX(21)) * sizeof(w->e[0]));
	w->n++;
	expect(w, MOAT_AUDIT_REORDERED, 21);

	/* A forged row inserted after 20, linked and hashed, the rest
	 * renumbered: the first untrustworthy entry is the forged one. */
	w = work_new();
	memmove(&w->e[IX(22)], &w->e[IX(21)], (N - IX(21)) * sizeof(w->e[0]));
	w->n++;
	fill_entry(&w->e[IX(21)], 21, "{\"forged\":true}");
	moat_audit_chain(&w->e[IX(21)], w->e[IX(20)].hash);
	renumber_from(w, IX(22), 1);
	expect(w, MOAT_AUDIT_REORDERED, 21);
}

static void test_truncated(void **state)
{
	(void)state;
	struct work *w = work_new();
	struct moat_audit_report rep;

	/* Rows sealed by the checkpoint for 40 are gone. */
	w->n = 34;
	expect(w, MOAT_AUDIT_TRUNCATED, 35);

	w = work_new();
	w->n = 39;
	expect(w, MOAT_AUDIT_TRUNCATED, 40);

	/* Dropped after the last checkpoint: cannot be proven (docs/audit.md),
	 * only the unsealed count shrinks. */
	w = work_new();
	w->n = 44;
	assert_int_equal(moat_audit_verify(w->e, w->n, w->c, w->ncp, pk, &rep), MOAT_OK);
	assert_int_equal(rep.sealed_seq, 40);
	assert_int_equal(rep.unsealed, 4);
	w->n = 40;
	assert_int_equal(moat_audit_verify(w->e, w->n, w->c, w->ncp, pk, &rep), MOAT_OK);
	assert_int_equal(rep.unsealed, 0);
	free(w);

	/* Truncated and the later checkpoints deleted too: also undetectable
	 * offline, which is why exported checkpoints are kept elsewhere. */
	w = work_new();
	w->n = 25;
	w->ncp = 2;
	expect(w, MOAT_AUDIT_INTACT, 0);
}

static void test_bad_checkpoint(void **state)
{
	(void)state;
	struct work *w = work_new();
	uint8_t pk2[32], sk2[64];

	w->c[1].sig[0] ^= 1;
	expect(w, MOAT_AUDIT_BAD_CHECKPOINT, 20);

	/* Signed by another key. */
	w = work_new();
	crypto_sign_keypair(pk2, sk2);
	moat_audit_checkpoint_sign(&w->c[2], sk2);
	expect(w, MOAT_AUDIT_BAD_CHECKPOINT, 30);
	sodium_memzero(sk2, sizeof(sk2));

	/* A checkpoint moved to another entry without re-signing. */
	w = work_new();
	w->c[3].seq = 45;
	memcpy(w->c[3].head, w->e[IX(45)].hash, 32);
	expect(w, MOAT_AUDIT_BAD_CHECKPOINT, 45);

	/* A forged checkpoint claiming more entries than exist. */
	w = work_new();
	w->c[3].seq = 60;
	expect(w, MOAT_AUDIT_BAD_CHECKPOINT, 60);
}

static void test_fault_order(void **state)
{
	(void)state;
	struct work *w = work_new();

	/* An entry fault before a bad checkpoint wins. */
	set_detail(w, IX(15), "{}");
	w->c[1].sig[0] ^= 1;
	expect(w, MOAT_AUDIT_MODIFIED, 15);

	/* A bad checkpoint before an entry fault wins. */
	w = work_new();
	w->c[0].sig[0] ^= 1;
	set_detail(w, IX(15), "{}");
	expect(w, MOAT_AUDIT_BAD_CHECKPOINT, 10);

	/* Same seq: the entry fault. */
	w = work_new();
	set_detail(w, IX(20), "{}");
	w->c[1].sig[0] ^= 1;
	expect(w, MOAT_AUDIT_MODIFIED, 20);

	/* Re-hashed entry 20: its link from 21 and the checkpoint for 20
	 * both break; the entry is named exactly. */
	w = work_new();
	set_detail(w, IX(20), "{}");
	moat_audit_chain(&w->e[IX(20)], w->e[IX(19)].hash);
	expect(w, MOAT_AUDIT_MODIFIED, 20);
}

static void test_verify_args(void **state)
{
	(void)state;
	struct moat_audit_report rep;

	assert_int_equal(moat_audit_verify(NULL, 3, NULL, 0, pk, &rep), MOAT_E_INVAL);
	assert_int_equal(moat_audit_verify(base, N, base_cps, NCP, NULL, &rep), MOAT_E_INVAL);
	assert_int_equal(moat_audit_verify(base, N, base_cps, NCP, pk, NULL), MOAT_E_INVAL);
}

static void test_fault_names(void **state)
{
	(void)state;
	assert_string_equal(moat_audit_fault_name(MOAT_AUDIT_INTACT), "intact");
	assert_string_equal(moat_audit_fault_name(MOAT_AUDIT_MODIFIED), "modified");
	assert_string_equal(moat_audit_fault_name(MOAT_AUDIT_REMOVED), "removed");
	assert_string_equal(moat_audit_fault_name(MOAT_AUDIT_REORDERED), "reordered");
	assert_string_equal(moat_audit_fault_name(MOAT_AUDIT_TRUNCATED), "truncated");
	assert_string_equal(moat_audit_fault_name(MOAT_AUDIT_BAD_CHECKPOINT), "bad_checkpoint");
	assert_string_equal(moat_audit_fault_name((enum moat_audit_fault)99), "unknown");
}

/* ---- key files ---- */

static void path_in(char *out, size_t len, const char *dir, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static void rm_dir(const char *dir)
{
	char p[512];

	path_in(p, sizeof(p), dir, "audit.key");
	unlink(p);
	path_in(p, sizeof(p), dir, "audit.pub");
	unlink(p);
	path_in(p, sizeof(p), dir, "seal.key");
	unlink(p);
	path_in(p, sizeof(p), dir, "moat.db");
	unlink(p);
	path_in(p, sizeof(p), dir, "moat.db-wal");
	unlink(p);
	path_in(p, sizeof(p), dir, "moat.db-shm");
	unlink(p);
	rmdir(dir);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void test_key_files(void **state)
{
	(void)state;
	char d1[] = "/tmp/moat-audit-XXXXXX", d2[] = "/tmp/moat-audit-XXXXXX";
	char kp[512], pp[512], pp2[512], err[512];
	uint8_t lsk[64], lpk[32], ppk[32], lsk2[64], lpk2[32];
	struct moat_audit_checkpoint c = base_cps[0];
	struct stat st;

	assert_non_null(mkdtemp(d1));
	assert_non_null(mkdtemp(d2));
	path_in(kp, sizeof(kp), d1, "audit.key");
	path_in(pp, sizeof(pp), d1, "audit.pub");
	path_in(pp2, sizeof(pp2), d2, "audit.pub");

	assert_int_equal(moat_audit_key_create(d1, err, sizeof(err)), MOAT_OK);
	assert_int_equal(stat(kp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(pp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	/* Load, sign, verify with the public key file alone. */
	assert_int_equal(moat_audit_key_load(d1, lsk, lpk, err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_audit_pub_load(pp, ppk, err, sizeof(err)), MOAT_OK);
	assert_memory_equal(lpk, ppk, 32);
	moat_audit_checkpoint_sign(&c, lsk);
	assert_true(moat_audit_checkpoint_ok(&c, ppk));

	/* Never overwritten. */
	assert_int_equal(moat_audit_key_create(d1, err, sizeof(err)), MOAT_E_EXISTS);
	assert_int_equal(moat_audit_key_load(d1, lsk2, lpk2, err, sizeof(err)), MOAT_OK);
	assert_memory_equal(lsk, lsk2, 64);

	/* Readable by others: refused, with the fix in the message. */
	assert_int_equal(chmod(kp, 0644), 0);
	assert_int_equal(moat_audit_key_load(d1, lsk2, lpk2, err, sizeof(err)), MOAT_E_PERM);
	assert_non_null(strstr(err, "chmod 600"));
	assert_int_equal(chmod(kp, 0640), 0);
	assert_int_equal(moat_audit_key_load(d1, lsk2, lpk2, err, sizeof(err)), MOAT_E_PERM);
	assert_int_equal(chmod(kp, 0600), 0);

	/* Another install's public key next to this key. */
	assert_int_equal(moat_audit_key_create(d2, err, sizeof(err)), MOAT_OK);
	assert_int_equal(unlink(pp), 0);
	assert_int_equal(link(pp2, pp), 0);
	assert_int_equal(moat_audit_key_load(d1, lsk2, lpk2, err, sizeof(err)), MOAT_E_CRYPTO);
	assert_int_equal(unlink(pp), 0);

	/* A missing public key. */
	assert_int_equal(moat_audit_key_load(d1, lsk2, lpk2, err, sizeof(err)), MOAT_E_NOTFOUND);
	rm_dir(d1);
	rm_dir(d2);
	sodium_memzero(lsk, sizeof(lsk));
	sodium_memzero(lsk2, sizeof(lsk2));
}

static void test_key_files_hostile(void **state)
{
	(void)state;
	char d[] = "/tmp/moat-audit-XXXXXX";
	char kp[512], pp[512], err[512], text[512], b64[128];
	uint8_t lsk[64], lpk[32], tsk[64], tpk[32];

	assert_non_null(mkdtemp(d));
	path_in(kp, sizeof(kp), d, "audit.key");
	path_in(pp, sizeof(pp), d, "audit.pub");

	/* A symlink planted where the key goes: not followed on create. */
	assert_int_equal(symlink("/tmp/moat-audit-nowhere", kp), 0);
	assert_int_equal(moat_audit_key_create(d, err, sizeof(err)), MOAT_E_EXISTS);
	assert_int_equal(access("/tmp/moat-audit-nowhere", F_OK), -1);
	assert_int_equal(access(pp, F_OK), -1); /* nothing half made */
	unlink(kp);

	/* ... nor on load. */
	assert_int_equal(moat_audit_key_create(d, err, sizeof(err)), MOAT_OK);
	{
		char real[512];

		path_in(real, sizeof(real), d, "real.key");
		assert_int_equal(rename(kp, real), 0);
		assert_int_equal(symlink(real, kp), 0);
		assert_int_equal(moat_audit_key_load(d, lsk, lpk, err, sizeof(err)), MOAT_E_PERM);
		unlink(kp);
		assert_int_equal(rename(real, kp), 0);
	}

	/* A key whose second half does not follow from its seed. */
	crypto_sign_keypair(tpk, tsk);
	tsk[40] ^= 1;
	sodium_bin2base64(b64, sizeof(b64), tsk, 64, sodium_base64_VARIANT_ORIGINAL);
	snprintf(text, sizeof(text), "# comment\n%s\n", b64);
	unlink(kp);
	write_text(kp, text, 0600);
	assert_int_equal(moat_audit_key_load(d, lsk, lpk, err, sizeof(err)), MOAT_E_CRYPTO);

	/* Not a key file. */
	write_text(kp, "# nothing here\n", 0600);
	assert_int_equal(moat_audit_key_load(d, lsk, lpk, err, sizeof(err)), MOAT_E_MALFORMED);
	write_text(kp, "AAAA\n", 0600);
	assert_int_equal(moat_audit_key_load(d, lsk, lpk, err, sizeof(err)), MOAT_E_MALFORMED);
	snprintf(text, sizeof(text), "%s\n%s\n", b64, b64);
	write_text(kp, text, 0600);
	assert_int_equal(moat_audit_key_load(d, lsk, lpk, err, sizeof(err)), MOAT_E_MALFORMED);
	write_text(pp, "not base64 !!\n", 0644);
	assert_int_equal(moat_audit_pub_load(pp, lpk, err, sizeof(err)), MOAT_E_MALFORMED);

	/* CRLF and blanks around the line are fine. */
	crypto_sign_keypair(tpk, tsk);
	sodium_bin2base64(b64, sizeof(b64), tpk, 32, sodium_base64_VARIANT_ORIGINAL);
	snprintf(text, sizeof(text), "# pub\r\n\r\n  %s \r\n", b64);
	write_text(pp, text, 0644);
	assert_int_equal(moat_audit_pub_load(pp, lpk, err, sizeof(err)), MOAT_OK);
	assert_memory_equal(lpk, tpk, 32);
	rm_dir(d);
	sodium_memzero(tsk, sizeof(tsk));
}

/* ---- JSON export ---- */

/* The sealing key file: the audit key's format and checks. */
static void test_seal_key_file(void **state)
{
	(void)state;
	char d[] = "/tmp/moat-audit-XXXXXX";
	char kp[512], err[512];
	uint8_t k1[MOAT_SEAL_KEY_LEN], k2[MOAT_SEAL_KEY_LEN];
	struct stat st;

	assert_non_null(mkdtemp(d));
	path_in(kp, sizeof(kp), d, "seal.key");
	assert_int_equal(moat_seal_key_load(d, k1, err, sizeof(err)), MOAT_E_NOTFOUND);
	assert_int_equal(moat_seal_key_create(d, err, sizeof(err)), MOAT_OK);
	assert_int_equal(stat(kp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(moat_seal_key_load(d, k1, err, sizeof(err)), MOAT_OK);
	/* Never overwritten. */
	assert_int_equal(moat_seal_key_create(d, err, sizeof(err)), MOAT_E_EXISTS);
	assert_int_equal(moat_seal_key_load(d, k2, err, sizeof(err)), MOAT_OK);
	assert_memory_equal(k1, k2, sizeof(k1));
	assert_int_equal(chmod(kp, 0644), 0);
	assert_int_equal(moat_seal_key_load(d, k2, err, sizeof(err)), MOAT_E_PERM);
	assert_non_null(strstr(err, "chmod 600"));
	/* Not a 32-byte key. */
	unlink(kp);
	write_text(kp, "# x\nAAAA\n", 0600);
	assert_int_equal(moat_seal_key_load(d, k2, err, sizeof(err)), MOAT_E_MALFORMED);
	rm_dir(d);
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
}

/* A signer standing in for the key process. */
struct signer {
	uint8_t sk[MOAT_AUDIT_SK_LEN];
	moat_err fail;
	unsigned calls;
};

static moat_err signer_cb(void *arg, struct moat_audit_checkpoint *c)
{
	struct signer *s = arg;

	s->calls++;
	if (s->fail != MOAT_OK)
		return s->fail;
	moat_audit_checkpoint_sign(c, s->sk);
	return MOAT_OK;
}

/* The appender holds no key: it asks its signer, checks the signature
 * against audit.pub, and a write whose checkpoint is not signed, or signed
 * by another key, does not land. */
static void test_log_signer(void **state)
{
	(void)state;
	char d[] = "/tmp/moat-audit-XXXXXX";
	char db[512], err[512];
	uint8_t log_pk[MOAT_AUDIT_PK_LEN], other_pk[MOAT_AUDIT_PK_LEN];
	uint8_t good[MOAT_AUDIT_SK_LEN], other[MOAT_AUDIT_SK_LEN];
	struct moat_store_opts o;
	struct moat_store *st = NULL;
	struct moat_audit_log log;
	struct moat_audit_report rep;
	struct moat_store_batch *b = NULL;
	struct moat_audit_event ev = {"system", "test.event", "", "ok", "", NULL};
	struct signer s;

	assert_non_null(mkdtemp(d));
	assert_int_equal(moat_audit_key_create(d, err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_audit_key_load(d, good, log_pk, err, sizeof(err)), MOAT_OK);
	assert_int_equal(crypto_sign_keypair(other_pk, other), 0);
	path_in(db, sizeof(db), d, "moat.db");
	memset(&o, 0, sizeof(o));
	o.path = db;
	o.durability = MOAT_STORE_STRICT;
	assert_int_equal(moat_store_open(&o, &st, err, sizeof(err)), MOAT_OK);

	assert_int_equal(moat_audit_log_open(&log, st, d, NULL, NULL, err, sizeof(err)),
			 MOAT_E_INVAL);
	memset(&s, 0, sizeof(s));
	memcpy(s.sk, good, sizeof(good));
	assert_int_equal(moat_audit_log_open(&log, st, d, signer_cb, &s, err, sizeof(err)),
			 MOAT_OK);
	assert_int_equal(moat_audit_log_write(&log, &b, &ev), MOAT_OK);
	assert_int_equal(s.calls, 1);

	/* Another key: refused before it is stored. */
	memcpy(s.sk, other, sizeof(other));
	assert_int_equal(moat_audit_log_write(&log, &b, &ev), MOAT_E_CRYPTO);
	/* The key process gone. */
	s.fail = MOAT_E_CLOSED;
	assert_int_equal(moat_audit_log_write(&log, &b, &ev), MOAT_E_CLOSED);
	s.fail = MOAT_OK;
	memcpy(s.sk, good, sizeof(good));
	assert_int_equal(moat_audit_log_write(&log, &b, &ev), MOAT_OK);
	moat_audit_log_close(&log);

	/* Only the two signed entries landed, and they verify. */
	assert_int_equal(moat_audit_verify_store(st, log_pk, &rep, err, sizeof(err)), MOAT_OK);
	assert_int_equal(rep.entries, 2);
	assert_int_equal(rep.sealed_seq, 2);
	moat_store_close(st);
	rm_dir(d);
	sodium_memzero(good, sizeof(good));
	sodium_memzero(other, sizeof(other));
	sodium_memzero(s.sk, sizeof(s.sk));
}

static void test_json_export(void **state)
{
	(void)state;
	struct moat_audit_entry e = base[16];
	static const char prefix[] = "{\"seq\":17,\"ts\":\"2026-11-22T07:10:00.123Z\",\"ts_ms\":";
	json_t *j, *v;
	char *s = NULL, hex[65];

	e.ts_ms = TS0 + 123;
	e.peer = "198.51.100.4";
	assert_int_equal(moat_audit_entry_json(&e, &s), MOAT_OK);
	assert_null(strchr(s, '\n'));
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_int_equal(json_integer_value(json_object_get(j, "seq")), 17);
	assert_string_equal(json_string_value(json_object_get(j, "ts")),
			    "2026-11-22T07:10:00.123Z");
	assert_int_equal(json_integer_value(json_object_get(j, "ts_ms")), TS0 + 123);
	assert_string_equal(json_string_value(json_object_get(j, "actor")), e.actor);
	assert_string_equal(json_string_value(json_object_get(j, "action")), e.action);
	assert_string_equal(json_string_value(json_object_get(j, "target")), e.target);
	assert_string_equal(json_string_value(json_object_get(j, "outcome")), e.outcome);
	assert_string_equal(json_string_value(json_object_get(j, "peer")), "198.51.100.4");
	v = json_object_get(j, "detail");
	assert_true(json_is_object(v));
	assert_int_equal(json_integer_value(json_object_get(v, "n")), 17);
	hex_of(e.prev, hex);
	assert_string_equal(json_string_value(json_object_get(j, "prev")), hex);
	hex_of(e.hash, hex);
	assert_string_equal(json_string_value(json_object_get(j, "hash")), hex);
	/* Keys in the documented order. */
	assert_true(strncmp(s, prefix, strlen(prefix)) == 0);
	assert_non_null(strstr(s, "\"peer\":\"198.51.100.4\",\"detail\":{\"n\":17,"));
	json_decref(j);
	free(s);

	/* Not JSON, or JSON that would not re-serialise to the same bytes:
	 * kept as the exact string that was hashed. */
	e.detail = "not json";
	assert_int_equal(moat_audit_entry_json(&e, &s), MOAT_OK);
	j = json_loads(s, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "detail")), "not json");
	json_decref(j);
	free(s);
	e.detail = "{ \"a\": 1 }";
	assert_int_equal(moat_audit_entry_json(&e, &s), MOAT_OK);
	j = json_loads(s, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "detail")), "{ \"a\": 1 }");
	json_decref(j);
	free(s);

	/* Before 1970, and bytes that are not UTF-8. */
	e.ts_ms = -1;
	e.actor = "user:\xff\x41";
	assert_int_equal(moat_audit_entry_json(&e, &s), MOAT_OK);
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "ts")),
			    "1969-12-31T23:59:59.999Z");
	assert_string_equal(json_string_value(json_object_get(j, "actor")),
			    "user:\xef\xbf\xbd\x41");
	json_decref(j);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hash_vector),
	    cmocka_unit_test(test_hash_unambiguous),
	    cmocka_unit_test(test_checkpoint_roundtrip),
	    cmocka_unit_test(test_checkpoint_message),
	    cmocka_unit_test(test_intact),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_modified_not_rehashed),
	    cmocka_unit_test(test_modified_rehashed),
	    cmocka_unit_test(test_removed),
	    cmocka_unit_test(test_removed_first),
	    cmocka_unit_test(test_reordered),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_bad_checkpoint),
	    cmocka_unit_test(test_fault_order),
	    cmocka_unit_test(test_verify_args),
	    cmocka_unit_test(test_fault_names),
	    cmocka_unit_test(test_key_files),
	    cmocka_unit_test(test_key_files_hostile),
	    cmocka_unit_test(test_seal_key_file),
	    cmocka_unit_test(test_log_signer),
	    cmocka_unit_test(test_json_export),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
