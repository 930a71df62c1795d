/* The operator auth primitives: password hashing and policy, the common
 * password list, TOTP (RFC 6238 vectors, window, replay), tokens, recovery
 * codes and the login throttle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/password.h"
#include "auth/secret.h"
#include "auth/throttle.h"
#include "auth/totp.h"

static moat_err policy(const char *pw, const char *user)
{
	char why[160];
	moat_err rc;

	memset(why, 'x', sizeof(why));
	rc = moat_password_check_policy(pw, strlen(pw), user, why, sizeof(why));
	if (rc == MOAT_OK)
		assert_string_equal(why, "");
	else
		assert_true(strlen(why) > 10); /* a sentence for the user */
	return rc;
}

/* --- passwords (each hash costs ~0.1-0.3 s: keep these few) --- */

static void test_password_roundtrip(void **state)
{
	(void)state;
	static const char pw[] = "violet tractor swims 42 ways";
	char hash[MOAT_PASSWORD_HASH_MAX];

	assert_int_equal(moat_password_hash(pw, strlen(pw), hash), MOAT_OK);
	assert_true(strncmp(hash, "$argon2id$", 10) == 0);
	assert_non_null(memchr(hash, '\0', sizeof(hash)));
	assert_true(moat_password_verify(hash, pw, strlen(pw)));
	assert_false(moat_password_verify(hash, pw, strlen(pw) - 1));
	assert_false(moat_password_verify(hash, "violet tractor swims 43 ways", strlen(pw)));
	assert_false(moat_password_needs_rehash(hash));
	/* Embedded NUL bytes are part of the password. */
	assert_int_equal(moat_password_hash("a\0b", 3, hash), MOAT_OK);
	assert_true(moat_password_verify(hash, "a\0b", 3));
	assert_false(moat_password_verify(hash, "a\0c", 3));
	assert_false(moat_password_verify(hash, "a", 1));
}

static void test_password_malformed(void **state)
{
	(void)state;
	char hash[MOAT_PASSWORD_HASH_MAX], big[MOAT_PASSWORD_MAX_BYTES + 1];

	assert_false(moat_password_verify("", "x", 1));
	assert_false(moat_password_verify("not a hash", "x", 1));
	assert_false(moat_password_verify("$argon2id$v=19$m=65536,t=2,p=1$garbage", "x", 1));
	assert_false(moat_password_verify(NULL, "x", 1));
	/* Not NUL-terminated within the buffer: refused without reading on. */
	memset(hash, '$', sizeof(hash));
	assert_false(moat_password_verify(hash, "x", 1));
	assert_true(moat_password_needs_rehash(hash));
	assert_true(moat_password_needs_rehash("not a hash"));
	assert_true(moat_password_needs_rehash(NULL));
	/* An older, cheaper hash wants upgrading. */
	assert_true(moat_password_needs_rehash(
	    "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"));
	memset(big, 'a', sizeof(big));
	assert_int_equal(moat_password_hash(big, sizeof(big), hash), MOAT_E_LIMIT);
	assert_int_equal(moat_password_hash(NULL, 0, hash), MOAT_E_INVAL);
}

static void test_password_dummy_verify(void **state)
{
	(void)state;
	/* Nothing to observe but that it runs, twice (the hash is made once). */
	moat_password_dummy_verify("guess", 5);
	moat_password_dummy_verify("another guess", 13);
	moat_password_dummy_verify(NULL, 0);
}

/* --- policy --- */

static void test_policy_length(void **state)
{
	(void)state;
	char s[3 * 64 + 1], big[MOAT_PASSWORD_MAX_BYTES + 2];
	size_t i;

	/* 11 two-byte characters are 22 bytes but 11 characters: too short. */
	s[0] = '\0';
	for (i = 0; i < 11; i++)
		strncat(s, "\xc3\xa9", sizeof(s) - strlen(s) - 1);
	assert_int_equal(policy(s, NULL), MOAT_E_INVAL);
	strncat(s, "\xc3\xa9", sizeof(s) - strlen(s) - 1);
	assert_int_equal(policy(s, NULL), MOAT_OK);
	/* Three-byte (CJK) and four-byte (emoji) characters count once. */
	s[0] = '\0';
	for (i = 0; i < 11; i++)
		strncat(s, "\xe6\x9c\xa8", sizeof(s) - strlen(s) - 1);
	assert_int_equal(policy(s, NULL), MOAT_E_INVAL);
	strncat(s, "\xf0\x9f\x90\xb1", sizeof(s) - strlen(s) - 1);
	assert_int_equal(policy(s, NULL), MOAT_OK);

	assert_int_equal(policy("vx9-kq2-mzt", NULL), MOAT_E_INVAL); /* 11 */
	assert_int_equal(policy("vx9-kq2-mzt7", NULL), MOAT_OK);     /* 12 */

	memset(big, 'k', sizeof(big));
	big[MOAT_PASSWORD_MAX_BYTES] = '\0';
	big[3] = ' ';
	assert_int_equal(policy(big, NULL), MOAT_OK); /* 128 bytes */
	big[MOAT_PASSWORD_MAX_BYTES] = 'k';
	big[MOAT_PASSWORD_MAX_BYTES + 1] = '\0';
	assert_int_equal(policy(big, NULL), MOAT_E_INVAL); /* 129 */
	assert_int_equal(moat_password_check_policy(NULL, 0, NULL, NULL, 0), MOAT_E_INVAL);
}

static void test_policy_utf8(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "abcdefghijk\xc3\x28",	   /* bad continuation */
	    "abcdefghijk\xc0\xaf",	   /* overlong '/' */
	    "abcdefghijk\xe0\x80\xaf",	   /* overlong, 3 bytes */
	    "abcdefghijk\xed\xa0\x80",	   /* surrogate */
	    "abcdefghijk\xf4\x90\x80\x80", /* above U+10FFFF */
	    "abcdefghijk\xf5\x80\x80\x80", /* invalid lead */
	    "abcdefghijkl\xe2\x82",	   /* truncated at the end */
	    "abcdefghijk\x80",		   /* lone continuation */
	    "abcdefghijk\xff",
	    "abcdefghijk\x01",	   /* C0 control */
	    "abcdefghijk\tz",	   /* tab is a control too */
	    "abcdefghijk\x7f",	   /* DEL */
	    "abcdefghijk\xc2\x85", /* C1 control (NEL) */
	};
	char why[8];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (policy(bad[i], NULL) != MOAT_E_INVAL)
			fail_msg("accepted bad[%zu]", i);
	}
	/* An embedded NUL is a control character. */
	assert_int_equal(moat_password_check_policy("abcdefg\0hijklm", 14, NULL, NULL, 0),
			 MOAT_E_INVAL);
	/* why is truncated, still terminated. */
	assert_int_equal(moat_password_check_policy("short", 5, NULL, why, sizeof(why)),
			 MOAT_E_INVAL);
	assert_int_equal(strlen(why), sizeof(why) - 1);
	/* Valid non-ASCII is fine. */
	assert_int_equal(policy("gr\xc3\xbc\xc3\x9f"
				"e aus K\xc3\xb6ln 1",
				NULL),
			 MOAT_OK);
}

static void test_policy_username(void **state)
{
	(void)state;
	assert_int_equal(policy("myAlicePassphrase77", "alice"), MOAT_E_INVAL);
	assert_int_equal(policy("ALICE-in-the-city-9", "Alice"), MOAT_E_INVAL);
	assert_int_equal(policy("operator.on.call", "operator.on.call"), MOAT_E_INVAL);
	assert_int_equal(policy("myAlicePassphrase77", "bob"), MOAT_OK);
	/* Short usernames only block an exact match. */
	assert_int_equal(policy("totally calm walrus", "al"), MOAT_OK);
	assert_int_equal(policy("totally calm walrus", NULL), MOAT_OK);
	assert_int_equal(policy("totally calm walrus", ""), MOAT_OK);
}

static void test_policy_common(void **state)
{
	(void)state;
	static const char *const common[] = {
	    "password1234",  "Password1234", "qwertyuiop12", "1q2w3e4r5t6y",
	    "administrator", "123456789012", "111111111111", "PasswordPassword",
	    "iloveyou1234",  "!@#$%^&*()_+", "Password123!", "password123!",
	    "P@ssw0rd2024!", "!!monkey2024", "Dragon123456", "letmein!!!!!",
	    "2024sunshine",  "QWERTY123456", "Welcome2025!", "correcthorsebatterystaple",
	};
	static const char *const fine[] = {
	    "violet tractor swims 42 ways",
	    "monkey business at the zoo", /* a common word inside a passphrase */
	    "password manager keeps this",
	    "zebra1234567", /* core shorter than half */
	    "Tr0ub4dor&3xyz",
	};
	size_t i;

	for (i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
		if (policy(common[i], NULL) != MOAT_E_INVAL)
			fail_msg("accepted common '%s'", common[i]);
	}
	for (i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
		if (policy(fine[i], "someone") != MOAT_OK)
			fail_msg("refused '%s'", fine[i]);
	}
}

static void test_common_list(void **state)
{
	(void)state;
	size_t i, n = moat_common_passwords_len;
	const char *s;

	assert_true(n >= 1000);
	for (i = 0; i < n; i++) {
		s = moat_common_passwords[i];
		assert_true(s[0] != '\0');
		for (; *s != '\0'; s++) {
			if (*s >= 'A' && *s <= 'Z')
				fail_msg("not lowercase: '%s'", moat_common_passwords[i]);
		}
		/* Strictly ordered: sorted and unique, so bsearch finds all. */
		if (i > 0 && strcmp(moat_common_passwords[i - 1], moat_common_passwords[i]) >= 0)
			fail_msg("out of order: '%s' '%s'", moat_common_passwords[i - 1],
				 moat_common_passwords[i]);
		s = moat_common_passwords[i];
		if (!moat_password_is_common(s, strlen(s)))
			fail_msg("bsearch misses '%s'", s);
	}
	assert_true(moat_password_is_common("password", 8));
	assert_true(moat_password_is_common("123456", 6));
	assert_true(moat_password_is_common("passwordx", 8)); /* length bounds the key */
	assert_false(moat_password_is_common("Password", 8)); /* callers lowercase */
	assert_false(moat_password_is_common("passwor", 7));
	assert_false(moat_password_is_common("zz-not-in-the-list", 18));
	assert_false(moat_password_is_common("", 0));
	assert_false(moat_password_is_common(NULL, 4));
}

/* --- TOTP --- */

static const uint8_t rfc_secret[] = "12345678901234567890";
#define RFC_LEN 20u

static void test_totp_rfc6238(void **state)
{
	(void)state;
	static const struct {
		int64_t t;
		const char *code;
	} v[] = {
	    {59, "287082"},	    {1111111109, "081804"}, {1111111111, "050471"},
	    {1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"},
	};
	char code[MOAT_TOTP_DIGITS + 1];
	int64_t step;
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, v[i].t, code), MOAT_OK);
		assert_string_equal(code, v[i].code);
		assert_int_equal(
		    moat_totp_verify(rfc_secret, RFC_LEN, v[i].code, v[i].t, -1, &step), MOAT_OK);
		assert_int_equal(step, v[i].t / 30);
	}
}

static void test_totp_window(void **state)
{
	(void)state;
	const int64_t now = 1111111111; /* step 37037037, 1 s into it */
	char code[MOAT_TOTP_DIGITS + 1];
	int64_t step, d;

	for (d = -2; d <= 2; d++) {
		assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, now + d * 30, code), MOAT_OK);
		step = -7;
		if (d >= -1 && d <= 1) {
			assert_int_equal(
			    moat_totp_verify(rfc_secret, RFC_LEN, code, now, -1, &step), MOAT_OK);
			assert_int_equal(step, now / 30 + d);
		} else {
			assert_int_equal(
			    moat_totp_verify(rfc_secret, RFC_LEN, code, now, -1, &step),
			    MOAT_E_DENIED);
			assert_int_equal(step, -7); /* untouched on failure */
		}
	}
	/* Near the epoch there is no step -1. */
	assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, 0, code), MOAT_OK);
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, code, 5, -1, &step), MOAT_OK);
	assert_int_equal(step, 0);
}

static void test_totp_replay(void **state)
{
	(void)state;
	const int64_t now = 1234567890;
	char code[MOAT_TOTP_DIGITS + 1], prev[MOAT_TOTP_DIGITS + 1];
	int64_t step, again;

	assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, now, code), MOAT_OK);
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, code, now, -1, &step), MOAT_OK);
	/* The same code, even seconds later in the same step: refused. */
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, code, now + 5, step, &again),
			 MOAT_E_DENIED);
	/* An older code still inside the window: refused too. */
	assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, now - 30, prev), MOAT_OK);
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, prev, now, step, &again),
			 MOAT_E_DENIED);
	/* The next step's code is fresh. */
	assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, now + 30, code), MOAT_OK);
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, code, now + 30, step, &again),
			 MOAT_OK);
	assert_int_equal(again, step + 1);
}

static void test_totp_bad_input(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",	      "28708",	"2870822", "28708a",	   " 287082",
	    "287 82", "-28708", "+28708",  "２８７０８２",
	};
	uint8_t shortkey[MOAT_TOTP_SECRET_MIN - 1];
	char code[MOAT_TOTP_DIGITS + 1];
	int64_t step;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (moat_totp_verify(rfc_secret, RFC_LEN, bad[i], 59, -1, &step) != MOAT_E_INVAL)
			fail_msg("accepted code '%s'", bad[i]);
	}
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, NULL, 59, -1, &step), MOAT_E_INVAL);
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, "287082", -1, -1, &step),
			 MOAT_E_INVAL);
	assert_int_equal(moat_totp_verify(rfc_secret, RFC_LEN, "287082", INT64_MAX, -1, &step),
			 MOAT_E_INVAL);
	memset(shortkey, 1, sizeof(shortkey));
	assert_int_equal(moat_totp_verify(shortkey, sizeof(shortkey), "287082", 59, -1, &step),
			 MOAT_E_INVAL);
	assert_int_equal(moat_totp_code(shortkey, sizeof(shortkey), 59, code), MOAT_E_INVAL);
	assert_int_equal(moat_totp_code(rfc_secret, RFC_LEN, -1, code), MOAT_E_INVAL);
}

static void test_totp_base32(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} v[] = {
	    /* RFC 4648 section 10, without padding */
	    {"", ""},
	    {"f", "MY"},
	    {"fo", "MZXQ"},
	    {"foo", "MZXW6"},
	    {"foob", "MZXW6YQ"},
	    {"fooba", "MZXW6YTB"},
	    {"foobar", "MZXW6YTBOI"},
	};
	static const uint8_t all[] = {0x00, 0x44, 0x32, 0x14, 0xc7, 0x42, 0x54, 0xb6, 0x35, 0xcf,
				      0x84, 0x65, 0x3a, 0x56, 0xd7, 0xc6, 0x75, 0xbe, 0x77, 0xdf};
	char out[64];
	size_t i;

	assert_int_equal(moat_totp_base32(rfc_secret, RFC_LEN, out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(
		    moat_totp_base32((const uint8_t *)v[i].in, strlen(v[i].in), out, sizeof(out)),
		    MOAT_OK);
		assert_string_equal(out, v[i].out);
	}
	/* Every 5-bit value once, in order: the whole alphabet. */
	assert_int_equal(moat_totp_base32(all, sizeof(all), out, sizeof(out)), MOAT_OK);
	assert_string_equal(out, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
	assert_int_equal(moat_totp_base32(rfc_secret, RFC_LEN, out, 32), MOAT_E_LIMIT);
	assert_int_equal(moat_totp_base32(rfc_secret, RFC_LEN, out, 33), MOAT_OK);
}

static void test_totp_uri(void **state)
{
	(void)state;
	char out[256];

	assert_int_equal(
	    moat_totp_uri(rfc_secret, RFC_LEN, "Moat Lab", "ops@example.com", out, sizeof(out)),
	    MOAT_OK);
	assert_string_equal(out, "otpauth://totp/Moat%20Lab:ops%40example.com"
				 "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Moat%20Lab"
				 "&algorithm=SHA1&digits=6&period=30");
	assert_int_equal(moat_totp_uri(rfc_secret, RFC_LEN, "a&b=c?d/e#f", "j.doe-1_~%\xc3\xa9",
				       out, sizeof(out)),
			 MOAT_OK);
	assert_string_equal(out,
			    "otpauth://totp/a%26b%3Dc%3Fd%2Fe%23f:j.doe-1_~%25%C3%A9"
			    "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=a%26b%3Dc%3Fd%2Fe%23f"
			    "&algorithm=SHA1&digits=6&period=30");
	assert_int_equal(moat_totp_uri(rfc_secret, RFC_LEN, "Moat:Lab", "ops", out, sizeof(out)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_totp_uri(rfc_secret, RFC_LEN, "Moat", "o:ps", out, sizeof(out)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_totp_uri(rfc_secret, RFC_LEN, "", "ops", out, sizeof(out)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_totp_uri(rfc_secret, RFC_LEN, "Moat", "o\nps", out, sizeof(out)),
			 MOAT_E_INVAL);
	assert_int_equal(moat_totp_uri(rfc_secret, 10, "Moat", "ops", out, sizeof(out)),
			 MOAT_E_INVAL);
	/* Too small: refused, and no half-written secret left behind. */
	assert_int_equal(moat_totp_uri(rfc_secret, RFC_LEN, "Moat", "ops", out, 60), MOAT_E_LIMIT);
	assert_null(memchr(out, 'G', 60));
}

static void test_totp_secret_new(void **state)
{
	(void)state;
	uint8_t a[MOAT_TOTP_SECRET_LEN], b[MOAT_TOTP_SECRET_LEN];
	char code[MOAT_TOTP_DIGITS + 1];
	int64_t step;

	assert_int_equal(moat_totp_secret_new(a), MOAT_OK);
	assert_int_equal(moat_totp_secret_new(b), MOAT_OK);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(moat_totp_code(a, sizeof(a), 1700000000, code), MOAT_OK);
	assert_int_equal(moat_totp_verify(a, sizeof(a), code, 1700000000, -1, &step), MOAT_OK);
}

/* --- tokens, hashes, recovery codes --- */

static bool is_b64url(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_token(void **state)
{
	(void)state;
	enum { N = 200, W = 8 + MOAT_SECRET_TOKEN_B64_LEN + 1 };
	static char tok[N][W];
	char small[W - 1];
	size_t i, j;

	assert_int_equal(MOAT_SECRET_TOKEN_B64_LEN, 43);
	for (i = 0; i < N; i++) {
		assert_int_equal(moat_secret_token("moat_at_", tok[i], W), MOAT_OK);
		assert_int_equal(strlen(tok[i]), W - 1);
		assert_true(strncmp(tok[i], "moat_at_", 8) == 0);
		for (j = 8; j < W - 1; j++)
			assert_true(is_b64url(tok[i][j]));
	}
	qsort(tok, N, W, cmp_str);
	for (i = 1; i < N; i++)
		assert_true(strcmp(tok[i - 1], tok[i]) != 0);

	assert_int_equal(moat_secret_token("moat_at_", small, sizeof(small)), MOAT_E_LIMIT);
	assert_int_equal(moat_secret_token("", small, sizeof(small)), MOAT_OK);
	assert_int_equal(strlen(small), MOAT_SECRET_TOKEN_B64_LEN);
	assert_int_equal(moat_secret_token("moat st", tok[0], W), MOAT_E_INVAL);
	assert_int_equal(moat_secret_token(NULL, tok[0], W), MOAT_E_INVAL);
}

static void test_secret_hash_hex(void **state)
{
	(void)state;
	uint8_t d[MOAT_SECRET_HASH_LEN];
	char hex[2 * MOAT_SECRET_HASH_LEN + 1];

	moat_secret_hash("abc", 3, d);
	assert_int_equal(moat_secret_hex(d, sizeof(d), hex, sizeof(hex)), MOAT_OK);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	moat_secret_hash("", 0, d);
	assert_int_equal(moat_secret_hex(d, sizeof(d), hex, sizeof(hex)), MOAT_OK);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_int_equal(moat_secret_hex(d, sizeof(d), hex, sizeof(hex) - 1), MOAT_E_LIMIT);
	assert_int_equal(moat_secret_hex(d, 0, hex, 1), MOAT_OK);
	assert_string_equal(hex, "");
}

static void test_recovery_codes(void **state)
{
	(void)state;
	enum { N = 500 };
	static const char alphabet[] = "23456789abcdefghjkmnpqrstuvwxyz";
	static char codes[N][MOAT_RECOVERY_CODE_LEN + 1];
	size_t seen[256] = {0};
	size_t i, j;

	assert_int_equal(strlen(alphabet), 31);
	assert_int_equal(moat_recovery_codes(codes, N), MOAT_OK);
	for (i = 0; i < N; i++) {
		assert_int_equal(strlen(codes[i]), MOAT_RECOVERY_CODE_LEN);
		for (j = 0; j < MOAT_RECOVERY_CODE_LEN; j++) {
			char c = codes[i][j];

			if (j == 5) {
				assert_int_equal(c, '-');
				continue;
			}
			if (strchr(alphabet, c) == NULL)
				fail_msg("'%c' in %s", c, codes[i]);
			seen[(unsigned char)c]++;
		}
	}
	/* 5000 draws from 31 letters: each appears (expected ~161 times). */
	for (i = 0; i < 31; i++)
		assert_true(seen[(unsigned char)alphabet[i]] > 50);
	qsort(codes, N, sizeof(codes[0]), cmp_str);
	for (i = 1; i < N; i++)
		assert_true(strcmp(codes[i - 1], codes[i]) != 0);
	assert_int_equal(moat_recovery_codes(codes, 0), MOAT_E_INVAL);
}

static void test_recovery_normalise(void **state)
{
	(void)state;
	char a[MOAT_RECOVERY_CODE_LEN + 1], b[MOAT_RECOVERY_CODE_LEN + 1];
	uint8_t ha[MOAT_SECRET_HASH_LEN], hb[MOAT_SECRET_HASH_LEN];

	assert_int_equal(moat_recovery_normalise("ABCDE-FGHIJ", a, sizeof(a)), MOAT_OK);
	assert_string_equal(a, "abcdefghij");
	assert_int_equal(moat_recovery_normalise(" abcde fghij\t", b, sizeof(b)), MOAT_OK);
	assert_string_equal(b, "abcdefghij");
	moat_secret_hash(a, strlen(a), ha);
	moat_secret_hash(b, strlen(b), hb);
	assert_memory_equal(ha, hb, sizeof(ha));
	assert_int_equal(moat_recovery_normalise("a-b-c-d-e-f-g-h-i-j", b, sizeof(b)), MOAT_OK);
	assert_string_equal(b, "abcdefghij");
	/* Too long: never a truncated code that would match a real one. */
	assert_int_equal(moat_recovery_normalise("abcde-fghij-kl", b, sizeof(b)), MOAT_E_LIMIT);
	assert_string_equal(b, "");
	assert_int_equal(moat_recovery_normalise("abc", b, 0), MOAT_E_LIMIT);
}

/* --- throttle --- */

static void fail_n(struct moat_throttle *t, const char *key, unsigned n, uint64_t now)
{
	while (n-- > 0)
		moat_throttle_fail(t, key, now);
}

static void test_throttle_schedule(void **state)
{
	(void)state;
	struct moat_throttle *t = moat_throttle_new(16);
	uint64_t now = 1000000, expect = 1000;
	unsigned i;

	assert_non_null(t);
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 0);
	for (i = 0; i < MOAT_THROTTLE_FREE_FAILURES; i++) {
		moat_throttle_fail(t, "alice", now);
		assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 0);
	}
	/* 1 s, 2 s, 4 s ... each measured from the failure. */
	for (i = 0; i < 15; i++) {
		moat_throttle_fail(t, "alice", now);
		assert_int_equal(moat_throttle_wait_ms(t, "alice", now), expect);
		assert_int_equal(moat_throttle_wait_ms(t, "alice", now + expect / 2),
				 expect - expect / 2);
		assert_int_equal(moat_throttle_wait_ms(t, "alice", now + expect), 0);
		now += expect;
		expect *= 2;
		if (expect > MOAT_THROTTLE_MAX_WAIT_MS)
			expect = MOAT_THROTTLE_MAX_WAIT_MS;
	}
	assert_int_equal(expect, MOAT_THROTTLE_MAX_WAIT_MS);
	/* Other keys are unaffected. */
	assert_int_equal(moat_throttle_wait_ms(t, "bob", now), 0);
	assert_int_equal(moat_throttle_count(t), 1);
	moat_throttle_free(t);
}

static void test_throttle_forget_and_success(void **state)
{
	(void)state;
	struct moat_throttle *t = moat_throttle_new(16);
	uint64_t now = 5000;

	assert_non_null(t);
	fail_n(t, "alice", MOAT_THROTTLE_FREE_FAILURES + 3, now);
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 4000);
	/* Remembered until an hour after the last failure... */
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now + MOAT_THROTTLE_FORGET_MS - 1), 0);
	moat_throttle_fail(t, "alice", now + MOAT_THROTTLE_FORGET_MS - 1);
	now += MOAT_THROTTLE_FORGET_MS - 1;
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 8000);
	/* ...then forgotten: the count starts again from zero. */
	now += MOAT_THROTTLE_FORGET_MS;
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 0);
	assert_int_equal(moat_throttle_count(t), 0);
	fail_n(t, "alice", MOAT_THROTTLE_FREE_FAILURES, now);
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 0);
	moat_throttle_fail(t, "alice", now);
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 1000);
	/* A failure after the hour, without a wait_ms in between, also
	 * starts from zero. */
	now += MOAT_THROTTLE_FORGET_MS;
	moat_throttle_fail(t, "alice", now);
	assert_int_equal(moat_throttle_wait_ms(t, "alice", now), 0);

	/* Success clears. */
	fail_n(t, "bob", MOAT_THROTTLE_FREE_FAILURES + 2, now);
	assert_int_equal(moat_throttle_wait_ms(t, "bob", now), 2000);
	moat_throttle_success(t, "bob");
	assert_int_equal(moat_throttle_wait_ms(t, "bob", now), 0);
	fail_n(t, "bob", MOAT_THROTTLE_FREE_FAILURES, now);
	assert_int_equal(moat_throttle_wait_ms(t, "bob", now), 0);
	moat_throttle_success(t, "nobody");
	/* A clock that steps back forgives nothing. */
	moat_throttle_fail(t, "bob", now);
	assert_int_equal(moat_throttle_wait_ms(t, "bob", now - 10), 1010);
	moat_throttle_free(t);
}

static void test_throttle_eviction(void **state)
{
	(void)state;
	struct moat_throttle *t = moat_throttle_new(3);
	char key[32];
	unsigned i;

	assert_non_null(t);
	fail_n(t, "a", 6, 1000);
	fail_n(t, "b", 6, 1001);
	fail_n(t, "c", 6, 1002);
	assert_int_equal(moat_throttle_count(t), 3);
	/* A new key at a full table forgets the oldest failure: "a". */
	fail_n(t, "d", 6, 1003);
	assert_int_equal(moat_throttle_count(t), 3);
	assert_int_equal(moat_throttle_wait_ms(t, "a", 1003), 0);
	assert_int_equal(moat_throttle_wait_ms(t, "b", 1003), 998);
	assert_int_equal(moat_throttle_wait_ms(t, "c", 1003), 999);
	assert_int_equal(moat_throttle_wait_ms(t, "d", 1003), 1000);
	/* A recent failure protects an old key. */
	moat_throttle_fail(t, "b", 1004);
	fail_n(t, "e", 1, 1005);
	assert_int_equal(moat_throttle_wait_ms(t, "c", 1005), 0);
	assert_int_equal(moat_throttle_wait_ms(t, "b", 1005), 1999);
	moat_throttle_free(t);

	/* A flood of keys stays bounded; the newest keys all survive. */
	t = moat_throttle_new(100);
	assert_non_null(t);
	for (i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "user%u", i);
		fail_n(t, key, 6, 10000 + i);
		assert_true(moat_throttle_count(t) <= 100);
	}
	assert_int_equal(moat_throttle_count(t), 100);
	for (i = 4900; i < 5000; i++) {
		snprintf(key, sizeof(key), "user%u", i);
		assert_int_equal(moat_throttle_wait_ms(t, key, 10000 + i), 1000);
	}
	snprintf(key, sizeof(key), "user%u", 4899);
	assert_int_equal(moat_throttle_wait_ms(t, key, 14899), 0);
	moat_throttle_free(t);
}

static void test_throttle_table_consistency(void **state)
{
	(void)state;
	/* Fill, delete every other key, refill: exercises the probe-chain
	 * repair after deletions. */
	struct moat_throttle *t = moat_throttle_new(1000);
	char key[32];
	unsigned i;

	assert_non_null(t);
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%u.%u", i / 256, i % 256);
		fail_n(t, key, 6, 50000);
	}
	assert_int_equal(moat_throttle_count(t), 1000);
	for (i = 0; i < 1000; i += 2) {
		snprintf(key, sizeof(key), "10.0.%u.%u", i / 256, i % 256);
		moat_throttle_success(t, key);
	}
	assert_int_equal(moat_throttle_count(t), 500);
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%u.%u", i / 256, i % 256);
		assert_int_equal(moat_throttle_wait_ms(t, key, 50000), i % 2 ? 1000 : 0);
	}
	for (i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "fresh%u", i);
		fail_n(t, key, 7, 50000);
	}
	assert_int_equal(moat_throttle_count(t), 1000);
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%u.%u", i / 256, i % 256);
		assert_int_equal(moat_throttle_wait_ms(t, key, 50000), i % 2 ? 1000 : 0);
	}
	for (i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "fresh%u", i);
		assert_int_equal(moat_throttle_wait_ms(t, key, 50000), 2000);
	}
	moat_throttle_free(t);
}

/* --- the login throttle: pairs, addresses, accounts --- */

/* One address guessing one account, waiting out every wait: after 20
 * failures (and long after) the owner at another address is never
 * stopped; reaching the account's budget alone takes that address hours. */
static void test_login_throttle_other_address(void **state)
{
	(void)state;
	struct moat_login_throttle *lt = moat_login_throttle_new(1000);
	uint64_t start = 5000000, now = start, w;
	unsigned failures = 0;

	assert_non_null(lt);
	while (failures <= MOAT_THROTTLE_ACCOUNT_FREE_FAILURES) {
		w = moat_login_throttle_wait_ms(lt, "admin", "127.0.0.2", now);
		if (failures >= MOAT_THROTTLE_FREE_FAILURES + 1)
			assert_true(w > 0); /* the guesser waits */
		now += w;
		assert_int_equal(moat_login_throttle_wait_ms(lt, "admin", "127.0.0.2", now), 0);
		moat_login_throttle_fail(lt, "admin", "127.0.0.2", now);
		failures++;
		if (failures <= MOAT_THROTTLE_ACCOUNT_FREE_FAILURES)
			assert_int_equal(moat_login_throttle_wait_ms(lt, "admin", "127.0.0.3", now),
					 0);
	}
	/* 5 free, 1 s ... 512 s, then 15 min a try: about nine hours. */
	assert_true(now - start > 8u * 3600u * 1000u);
	/* Now the account's budget is spent: every address waits. */
	assert_true(moat_login_throttle_wait_ms(lt, "admin", "127.0.0.3", now) > 0);
	/* Other accounts from the other address were never touched. */
	assert_int_equal(moat_login_throttle_wait_ms(lt, "alice", "127.0.0.3", now), 0);
	moat_login_throttle_free(lt);
}

/* Twenty failures from one address in a burst: that address waits, for
 * that account and (as one address guessing) for others; the owner at
 * another address does not. */
static void test_login_throttle_burst(void **state)
{
	(void)state;
	struct moat_login_throttle *lt = moat_login_throttle_new(1000);
	unsigned i;

	assert_non_null(lt);
	for (i = 0; i < 20; i++)
		moat_login_throttle_fail(lt, "admin", "127.0.0.2", 1000);
	assert_true(moat_login_throttle_wait_ms(lt, "admin", "127.0.0.2", 1000) > 0);
	assert_true(moat_login_throttle_wait_ms(lt, "bob", "127.0.0.2", 1000) > 0);
	assert_int_equal(moat_login_throttle_wait_ms(lt, "admin", "127.0.0.3", 1000), 0);
	/* The owner's success forgets the account and the owner's pair; the
	 * guessing address keeps waiting. */
	moat_login_throttle_success(lt, "admin", "127.0.0.3");
	assert_true(moat_login_throttle_wait_ms(lt, "admin", "127.0.0.2", 1000) > 0);
	/* A success of its own does not clear an address's count either. */
	moat_login_throttle_success(lt, "mallory", "127.0.0.2");
	assert_true(moat_login_throttle_wait_ms(lt, "bob", "127.0.0.2", 1000) > 0);
	moat_login_throttle_free(lt);
}

/* Guesses spread over many addresses, each within its own free failures:
 * the account is throttled for every address at its budget, at most 100
 * failures in all (NIST SP 800-63B), and its waits grow from there. */
static void test_login_throttle_many_addresses(void **state)
{
	(void)state;
	struct moat_login_throttle *lt = moat_login_throttle_new(1000);
	char addr[32];
	unsigned failures = 0, i;
	uint64_t now = 1000, w;

	assert_non_null(lt);
	for (i = 0; i < 1000; i++) {
		snprintf(addr, sizeof(addr), "10.1.%u.%u", (i / 4) / 250, (i / 4) % 250);
		if (moat_login_throttle_wait_ms(lt, "admin", addr, now) > 0)
			break;
		moat_login_throttle_fail(lt, "admin", addr, now);
		failures++;
		now++;
	}
	assert_true(failures <= 100);
	assert_int_equal(failures, MOAT_THROTTLE_ACCOUNT_FREE_FAILURES + 1);
	/* A fresh address, the owner's too, waits the account's wait. */
	w = moat_login_throttle_wait_ms(lt, "admin", "192.0.2.1", now);
	assert_true(w > 0 && w <= MOAT_THROTTLE_BASE_WAIT_MS);
	/* Waiting it out allows one more try, whose failure doubles it. */
	now += w;
	assert_int_equal(moat_login_throttle_wait_ms(lt, "admin", "192.0.2.2", now), 0);
	moat_login_throttle_fail(lt, "admin", "192.0.2.2", now);
	assert_int_equal(moat_login_throttle_wait_ms(lt, "admin", "192.0.2.3", now),
			 2u * MOAT_THROTTLE_BASE_WAIT_MS);
	/* Other accounts are not affected. */
	assert_int_equal(moat_login_throttle_wait_ms(lt, "alice", "192.0.2.3", now), 0);
	/* An hour later the addresses are forgotten, the account is not. */
	now += MOAT_THROTTLE_FORGET_MS;
	assert_int_equal(moat_login_throttle_wait_ms(lt, "alice", "10.1.0.0", now), 0);
	moat_login_throttle_fail(lt, "admin", "192.0.2.4", now);
	assert_true(moat_login_throttle_wait_ms(lt, "admin", "192.0.2.5", now) > 0);
	/* A success (the owner got through) forgets it. */
	moat_login_throttle_success(lt, "admin", "192.0.2.6");
	assert_int_equal(moat_login_throttle_wait_ms(lt, "admin", "192.0.2.5", now), 0);
	/* Failures keep the account's count, however far apart they are
	 * within a day; after a day without failure it starts from zero. */
	for (i = 0; i < MOAT_THROTTLE_ACCOUNT_FREE_FAILURES + 1; i++) {
		snprintf(addr, sizeof(addr), "10.2.%u.%u", i / 250, i % 250);
		moat_login_throttle_fail(lt, "bob", addr, now);
	}
	assert_int_equal(moat_login_throttle_wait_ms(lt, "bob", "192.0.2.7", now),
			 MOAT_THROTTLE_BASE_WAIT_MS);
	now += MOAT_THROTTLE_FORGET_MS + 1;
	assert_int_equal(moat_login_throttle_wait_ms(lt, "bob", "192.0.2.7", now), 0);
	moat_login_throttle_fail(lt, "bob", "192.0.2.7", now);
	assert_int_equal(moat_login_throttle_wait_ms(lt, "bob", "192.0.2.8", now),
			 2u * MOAT_THROTTLE_BASE_WAIT_MS);
	now += MOAT_THROTTLE_ACCOUNT_FORGET_MS;
	moat_login_throttle_fail(lt, "bob", "192.0.2.9", now);
	assert_int_equal(moat_login_throttle_wait_ms(lt, "bob", "192.0.2.10", now), 0);
	moat_login_throttle_free(lt);
}

static void test_throttle_keys(void **state)
{
	(void)state;
	struct moat_throttle *t = moat_throttle_new(8);
	char a[300], b[300], c[MOAT_THROTTLE_KEY_MAX + 1];

	assert_non_null(t);
	memset(a, 'x', sizeof(a));
	a[sizeof(a) - 1] = '\0';
	memcpy(b, a, sizeof(b));
	b[sizeof(b) - 2] = 'y';
	/* Long keys differing only at the end stay distinct. */
	fail_n(t, a, 6, 100);
	assert_int_equal(moat_throttle_wait_ms(t, a, 100), 1000);
	assert_int_equal(moat_throttle_wait_ms(t, b, 100), 0);
	moat_throttle_fail(t, a, 100);
	assert_int_equal(moat_throttle_wait_ms(t, a, 100), 2000);
	/* Exactly MOAT_THROTTLE_KEY_MAX bytes is kept as it is. */
	memset(c, 'x', sizeof(c));
	c[MOAT_THROTTLE_KEY_MAX] = '\0';
	fail_n(t, c, 6, 100);
	assert_int_equal(moat_throttle_wait_ms(t, c, 100), 1000);
	assert_int_equal(moat_throttle_count(t), 2);
	fail_n(t, "", 6, 100);
	assert_int_equal(moat_throttle_wait_ms(t, "", 100), 1000);
	moat_throttle_free(t);

	assert_null(moat_throttle_new(0));
	assert_null(moat_throttle_new(MOAT_THROTTLE_KEYS_MAX + 1));
	moat_throttle_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_password_roundtrip),
	    cmocka_unit_test(test_password_malformed),
	    cmocka_unit_test(test_password_dummy_verify),
	    cmocka_unit_test(test_policy_length),
	    cmocka_unit_test(test_policy_utf8),
	    cmocka_unit_test(test_policy_username),
	    cmocka_unit_test(test_policy_common),
	    cmocka_unit_test(test_common_list),
	    cmocka_unit_test(test_totp_rfc6238),
	    cmocka_unit_test(test_totp_window),
	    cmocka_unit_test(test_totp_replay),
	    cmocka_unit_test(test_totp_bad_input),
	    cmocka_unit_test(test_totp_base32),
	    cmocka_unit_test(test_totp_uri),
	    cmocka_unit_test(test_totp_secret_new),
	    cmocka_unit_test(test_token),
	    cmocka_unit_test(test_secret_hash_hex),
	    cmocka_unit_test(test_recovery_codes),
	    cmocka_unit_test(test_recovery_normalise),
	    cmocka_unit_test(test_throttle_schedule),
	    cmocka_unit_test(test_throttle_forget_and_success),
	    cmocka_unit_test(test_throttle_eviction),
	    cmocka_unit_test(test_throttle_table_consistency),
	    cmocka_unit_test(test_throttle_keys),
	    cmocka_unit_test(test_login_throttle_other_address),
	    cmocka_unit_test(test_login_throttle_burst),
	    cmocka_unit_test(test_login_throttle_many_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
