/*
 * The audit signing key on disk: dir/audit.key (0600, the Ed25519 secret key)
 * and dir/audit.pub (0644, its public key), each one comment line and one
 * line of base64 (format in audit.h). The sealing key, dir/seal.key (0600,
 * 32 random bytes), uses the same format and the same checks. Only `moat
 * init`, the offline commands and the key process (pki/ca.h) read or write
 * the secret files; `moat serve`'s serving process never does.
 *
 * Files are created exclusively and never through a symlink, so a key is
 * never overwritten and an attacker-planted link cannot redirect it. The
 * secret key is only ever held in stack buffers that are wiped on every path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "audit/audit_store.h"
#include "core/file.h"
#include "core/limits.h"

#define KEY_NAME "audit.key"
#define PUB_NAME "audit.pub"
#define SEAL_NAME "seal.key"

#define KEY_HEADER                                                                                 \
	"# Moat audit log signing key: Ed25519 secret key (libsodium: 32-byte seed, 32-byte "      \
	"public key), base64. Keep it private: whoever holds it can re-sign the log.\n"
#define PUB_HEADER "# Moat audit log public key: Ed25519, 32 bytes, base64. Keep a copy offline.\n"
#define SEAL_HEADER                                                                                \
	"# Moat sealing key: 32 bytes (XChaCha20-Poly1305), base64. It opens the secrets the "     \
	"server keeps sealed in moat.db (TOTP seeds); without it they are lost.\n"

/* base64 (with padding) of 64 and 32 bytes, plus the NUL sodium writes. */
#define SK_B64_SIZE sodium_base64_ENCODED_LEN(MOAT_AUDIT_SK_LEN, sodium_base64_VARIANT_ORIGINAL)
#define PK_B64_SIZE sodium_base64_ENCODED_LEN(MOAT_AUDIT_PK_LEN, sodium_base64_VARIANT_ORIGINAL)

static void key_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void key_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static moat_err path_join(char out[MOAT_MAX_PATH], const char *dir, const char *name, char *err,
			  size_t errlen)
{
	int n = snprintf(out, MOAT_MAX_PATH, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= MOAT_MAX_PATH) {
		key_fail(err, errlen, "audit: path too long: %s/%s", dir, name);
		return MOAT_E_LIMIT;
	}
	return MOAT_OK;
}

moat_err moat_audit_key_create(const char *dir, char *err, size_t errlen)
{
	char key_path[MOAT_MAX_PATH], pub_path[MOAT_MAX_PATH];
	uint8_t sk[MOAT_AUDIT_SK_LEN], pk[MOAT_AUDIT_PK_LEN];
	char text[sizeof(KEY_HEADER) + SK_B64_SIZE + 1];
	char b64[SK_B64_SIZE];
	bool key_made = false;
	int n;
	moat_err rc;

	if ((rc = path_join(key_path, dir, KEY_NAME, err, errlen)) != MOAT_OK ||
	    (rc = path_join(pub_path, dir, PUB_NAME, err, errlen)) != MOAT_OK)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (sodium_init() < 0 || crypto_sign_keypair(pk, sk) != 0) {
		key_fail(err, errlen, "audit: cannot generate a key pair");
		goto out;
	}
	sodium_bin2base64(b64, sizeof(b64), sk, sizeof(sk), sodium_base64_VARIANT_ORIGINAL);
	n = snprintf(text, sizeof(text), "%s%s\n", KEY_HEADER, b64);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		rc = MOAT_E_INTERNAL;
		key_fail(err, errlen, "audit: key text does not fit");
		goto out;
	}
	rc = moat_file_create(key_path, 0600, text, (size_t)n, err, errlen);
	if (rc)
		goto out;
	key_made = true;
	sodium_bin2base64(b64, sizeof(b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
	n = snprintf(text, sizeof(text), "%s%s\n", PUB_HEADER, b64);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		rc = MOAT_E_INTERNAL;
		key_fail(err, errlen, "audit: public key text does not fit");
		goto out;
	}
	rc = moat_file_create(pub_path, 0644, text, (size_t)n, err, errlen);
	if (rc)
		goto out;
	rc = moat_dir_sync(dir, err, errlen);
	if (rc)
		unlink(pub_path);
out:
	/* A key without its public half is useless and would block the next
	 * attempt; remove what this call created. */
	if (rc != MOAT_OK && key_made)
		unlink(key_path);
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(text, sizeof(text));
	return rc;
}

/*
 * Read a whole key file (at most MOAT_AUDIT_KEYFILE_MAX bytes) into buf,
 * NUL-terminated. O_NOFOLLOW and fstat on the open file: the mode checked is
 * the mode of the file read. `secret` refuses group/other access.
 */
static moat_err file_read(const char *path, bool secret, char *buf, size_t cap, char *err,
			  size_t errlen)
{
	struct stat st;
	size_t len = 0;
	int fd;
	moat_err rc = MOAT_E_IO;

	fd = open(path, O_RDONLY | O_CLOEXEC | (secret ? O_NOFOLLOW : 0));
	if (fd < 0) {
		if (errno == ENOENT)
			rc = MOAT_E_NOTFOUND;
		else if (errno == ELOOP)
			rc = MOAT_E_PERM;
		key_fail(err, errlen, "audit: cannot open %s: %s%s", path, strerror(errno),
			 errno == ELOOP ? " (a symlink; refusing to follow it)" : "");
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		key_fail(err, errlen, "audit: cannot stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = MOAT_E_PERM;
		key_fail(err, errlen, "audit: %s is not a regular file", path);
		goto out;
	}
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		rc = MOAT_E_PERM;
		key_fail(err, errlen,
			 "audit: %s is accessible by group or others (mode %03o); fix: chmod 600 "
			 "%s",
			 path, (unsigned)(st.st_mode & 0777), path);
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			key_fail(err, errlen, "audit: cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == cap - 1) {
			rc = MOAT_E_MALFORMED;
			key_fail(err, errlen, "audit: %s is too large for a key file", path);
			goto out;
		}
	}
	buf[len] = '\0';
	rc = MOAT_OK;
out:
	close(fd);
	return rc;
}

/*
 * The one non-comment line of a key file, decoded: exactly `want` bytes of
 * standard base64. Blank lines and lines starting with '#' are ignored.
 */
static moat_err key_decode(const char *path, const char *text, uint8_t *out, size_t want, char *err,
			   size_t errlen)
{
	const char *p = text, *b64 = NULL;
	size_t b64_len = 0, bin_len = 0;
	const char *end = NULL;

	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		size_t s = 0;

		/* Tolerate an editor's CRLF and surrounding blanks. */
		while (s < len && (p[s] == ' ' || p[s] == '\t'))
			s++;
		while (len > s && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > s && p[s] != '#') {
			if (b64 != NULL)
				goto bad;
			b64 = p + s;
			b64_len = len - s;
		}
		p = eol != NULL ? eol + 1 : p + strlen(p);
	}
	if (b64 == NULL)
		goto bad;
	if (sodium_base642bin(out, want, b64, b64_len, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != want || end != b64 + b64_len)
		goto bad;
	return MOAT_OK;
bad:
	sodium_memzero(out, want);
	key_fail(err, errlen,
		 "audit: %s is not a Moat audit key file (want one line of base64 of %zu bytes)",
		 path, want);
	return MOAT_E_MALFORMED;
}

moat_err moat_audit_pub_load(const char *path, uint8_t pk[MOAT_AUDIT_PK_LEN], char *err,
			     size_t errlen)
{
	char text[MOAT_AUDIT_KEYFILE_MAX];
	uint8_t k[MOAT_AUDIT_PK_LEN];
	moat_err rc;

	rc = file_read(path, false, text, sizeof(text), err, errlen);
	if (rc)
		return rc;
	rc = key_decode(path, text, k, sizeof(k), err, errlen);
	if (rc)
		return rc;
	memcpy(pk, k, sizeof(k));
	return MOAT_OK;
}

moat_err moat_audit_key_load(const char *dir, uint8_t sk[MOAT_AUDIT_SK_LEN],
			     uint8_t pk[MOAT_AUDIT_PK_LEN], char *err, size_t errlen)
{
	char key_path[MOAT_MAX_PATH], pub_path[MOAT_MAX_PATH];
	char text[MOAT_AUDIT_KEYFILE_MAX];
	uint8_t k[MOAT_AUDIT_SK_LEN], seed[crypto_sign_SEEDBYTES];
	uint8_t k2[MOAT_AUDIT_SK_LEN], pk2[MOAT_AUDIT_PK_LEN], pub[MOAT_AUDIT_PK_LEN];
	moat_err rc;

	if ((rc = path_join(key_path, dir, KEY_NAME, err, errlen)) != MOAT_OK ||
	    (rc = path_join(pub_path, dir, PUB_NAME, err, errlen)) != MOAT_OK)
		goto out;
	if ((rc = file_read(key_path, true, text, sizeof(text), err, errlen)) != MOAT_OK)
		goto out;
	if ((rc = key_decode(key_path, text, k, sizeof(k), err, errlen)) != MOAT_OK)
		goto out;
	if ((rc = moat_audit_pub_load(pub_path, pub, err, errlen)) != MOAT_OK)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (sodium_init() < 0) {
		key_fail(err, errlen, "audit: libsodium failed to initialise");
		goto out;
	}
	/* Re-derive the pair from the seed: a damaged second half would make
	 * signatures that verify against no public key we hold. */
	crypto_sign_ed25519_sk_to_seed(seed, k);
	if (crypto_sign_seed_keypair(pk2, k2, seed) != 0 || sodium_memcmp(k2, k, sizeof(k)) != 0) {
		key_fail(err, errlen,
			 "audit: %s is damaged: its public half does not match its seed", key_path);
		goto out;
	}
	if (memcmp(pk2, pub, sizeof(pub)) != 0) {
		key_fail(err, errlen,
			 "audit: %s does not belong to %s (a key from another install?)", key_path,
			 pub_path);
		goto out;
	}
	memcpy(sk, k, sizeof(k));
	memcpy(pk, pub, sizeof(pub));
	rc = MOAT_OK;
out:
	sodium_memzero(text, sizeof(text));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(k2, sizeof(k2));
	sodium_memzero(seed, sizeof(seed));
	return rc;
}

moat_err moat_seal_key_create(const char *dir, char *err, size_t errlen)
{
	char path[MOAT_MAX_PATH];
	uint8_t key[MOAT_SEAL_KEY_LEN];
	char b64[sodium_base64_ENCODED_LEN(MOAT_SEAL_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	char text[sizeof(SEAL_HEADER) + sizeof(b64) + 1];
	int n;
	moat_err rc;

	if ((rc = path_join(path, dir, SEAL_NAME, err, errlen)) != MOAT_OK)
		goto out;
	rc = MOAT_E_CRYPTO;
	if (sodium_init() < 0) {
		key_fail(err, errlen, "seal: libsodium failed to initialise");
		goto out;
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	n = snprintf(text, sizeof(text), "%s%s\n", SEAL_HEADER, b64);
	if (n < 0 || (size_t)n >= sizeof(text)) {
		rc = MOAT_E_INTERNAL;
		key_fail(err, errlen, "seal: key text does not fit");
		goto out;
	}
	rc = moat_file_create(path, 0600, text, (size_t)n, err, errlen);
	if (rc)
		goto out;
	rc = moat_dir_sync(dir, err, errlen);
	if (rc)
		unlink(path);
out:
	sodium_memzero(key, sizeof(key));
	sodium_memzero(b64, sizeof(b64));
	sodium_memzero(text, sizeof(text));
	return rc;
}

moat_err moat_seal_key_load(const char *dir, uint8_t key[MOAT_SEAL_KEY_LEN], char *err,
			    size_t errlen)
{
	char path[MOAT_MAX_PATH];
	char text[MOAT_AUDIT_KEYFILE_MAX];
	uint8_t k[MOAT_SEAL_KEY_LEN];
	moat_err rc;

	if ((rc = path_join(path, dir, SEAL_NAME, err, errlen)) != MOAT_OK)
		goto out;
	if ((rc = file_read(path, true, text, sizeof(text), err, errlen)) != MOAT_OK)
		goto out;
	if ((rc = key_decode(path, text, k, sizeof(k), err, errlen)) != MOAT_OK)
		goto out;
	memcpy(key, k, sizeof(k));
out:
	sodium_memzero(text, sizeof(text));
	sodium_memzero(k, sizeof(k));
	return rc;
}

moat_err moat_audit_file_signer_open(struct moat_audit_file_signer *fs, const char *dir, char *err,
				     size_t errlen)
{
	uint8_t pk[MOAT_AUDIT_PK_LEN];

	return moat_audit_key_load(dir, fs->sk, pk, err, errlen);
}

moat_err moat_audit_file_sign(void *arg, struct moat_audit_checkpoint *c)
{
	struct moat_audit_file_signer *fs = arg;

	moat_audit_checkpoint_sign(c, fs->sk);
	return MOAT_OK;
}

void moat_audit_file_signer_close(struct moat_audit_file_signer *fs)
{
	sodium_memzero(fs->sk, sizeof(fs->sk));
}
