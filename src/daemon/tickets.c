/*
 * The TLS session-ticket keys of `moat serve` (src/tls/tickets.h) across
 * restarts: DIR/tls-tickets.sealed holds the key ring sealed by the key
 * process (MOAT_KEY_SECRETS, bound to its own associated data), never in
 * plaintext. At start the file is unsealed; a missing, unreadable, corrupt
 * or unsealable file is logged and replaced with fresh keys (devices then do
 * full handshakes; nothing fails). The main thread rotates the ring when due
 * and writes the file again (0600, atomically). The plaintext is wiped
 * after every use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/file.h"
#include "core/log.h"
#include "core/reactor.h"
#include "daemon/internal.h"
#include "pki/ca.h"
#include "tls/tickets.h"

#define TICKETS_FILE "tls-tickets.sealed"
/* The associated data: a blob sealed for anything else does not open
 * here, and this one opens nowhere else. */
#define TICKETS_AD "moat:tls-ticket-keys:v1"
#define TICKETS_SEALED_MAX (MOAT_TLS_TICKETS_BLOB_MAX + MOAT_KEY_SEAL_OVERHEAD)

static int64_t wall_s(void)
{
	return moat_wall_ms() / 1000;
}

static moat_err tickets_path(const struct moat_daemon *d, char *path, size_t len)
{
	int n = snprintf(path, len, "%s/" TICKETS_FILE, d->dir);

	return n < 0 || (size_t)n >= len ? MOAT_E_LIMIT : MOAT_OK;
}

/* Read the sealed file (at most TICKETS_SEALED_MAX bytes). MOAT_E_NOTFOUND
 * when there is none. */
static moat_err tickets_read(const char *path, uint8_t *buf, size_t cap, size_t *len, char *err,
			     size_t errlen)
{
	struct stat st;
	size_t got = 0;
	moat_err rc = MOAT_E_IO;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		return errno == ENOENT ? MOAT_E_NOTFOUND : MOAT_E_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		goto out;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > cap) {
		snprintf(err, errlen, "size %lld is not that of a sealed key ring",
			 (long long)st.st_size);
		rc = MOAT_E_CORRUPT;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "short read");
			goto out;
		}
		got += (size_t)n;
	}
	*len = got;
	rc = MOAT_OK;
out:
	close(fd);
	return rc;
}

/* Seal the ring and replace the file. */
static moat_err tickets_save(struct moat_daemon *d, char *err, size_t errlen)
{
	uint8_t plain[MOAT_TLS_TICKETS_BLOB_MAX];
	uint8_t sealed[TICKETS_SEALED_MAX];
	char path[MOAT_MAX_PATH];
	size_t plen = 0, slen = 0;
	moat_err rc;

	if ((rc = tickets_path(d, path, sizeof(path))) != MOAT_OK) {
		snprintf(err, errlen, "data directory path too long");
		goto out;
	}
	if ((rc = moat_tls_tickets_export(d->tickets, plain, sizeof(plain), &plen)) != MOAT_OK) {
		snprintf(err, errlen, "cannot export the ticket keys");
		goto out;
	}
	rc = moat_ca_seal(d->keys, MOAT_KEY_SECRETS, (const uint8_t *)TICKETS_AD,
			  sizeof(TICKETS_AD) - 1, plain, plen, sealed, sizeof(sealed), &slen, err,
			  errlen);
	if (rc != MOAT_OK)
		goto out;
	rc = moat_file_replace(path, 0600, sealed, slen, err, errlen);
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	return rc;
}

/* Load the sealed ring into d->tickets; a reason in err when it cannot. */
static moat_err tickets_load(struct moat_daemon *d, char *err, size_t errlen)
{
	uint8_t plain[MOAT_TLS_TICKETS_BLOB_MAX];
	uint8_t sealed[TICKETS_SEALED_MAX];
	char path[MOAT_MAX_PATH];
	size_t slen = 0, plen = 0;
	moat_err rc;

	if ((rc = tickets_path(d, path, sizeof(path))) != MOAT_OK) {
		snprintf(err, errlen, "data directory path too long");
		goto out;
	}
	if ((rc = tickets_read(path, sealed, sizeof(sealed), &slen, err, errlen)) != MOAT_OK)
		goto out;
	rc = moat_ca_unseal(d->keys, MOAT_KEY_SECRETS, (const uint8_t *)TICKETS_AD,
			    sizeof(TICKETS_AD) - 1, sealed, slen, plain, sizeof(plain), &plen, err,
			    errlen);
	if (rc != MOAT_OK)
		goto out;
	if ((rc = moat_tls_tickets_import(d->tickets, plain, plen)) != MOAT_OK)
		snprintf(err, errlen, "the unsealed key ring is malformed");
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	return rc;
}

moat_err moat_daemon_tickets_start(struct moat_daemon *d, char *err, size_t errlen)
{
	char why[512] = "";
	unsigned made;
	moat_err rc;

	if ((rc = moat_tls_tickets_new(wall_s(), &d->tickets)) != MOAT_OK) {
		snprintf(err, errlen, "cannot make TLS ticket keys: %s", moat_strerror(rc));
		return rc;
	}
	rc = tickets_load(d, why, sizeof(why));
	if (rc == MOAT_E_NOTFOUND) {
		log_info("tls_ticket_keys", "source=new file=" TICKETS_FILE);
	} else if (rc != MOAT_OK) {
		/* Fresh keys (made above): every device does one full
		 * handshake; nothing else is lost. */
		log_warn("tls_ticket_keys_reset",
			 "file=" TICKETS_FILE " error=\"%s: %s\" note=\"replaced with new keys; "
			 "devices do full handshakes\"",
			 moat_strerror(rc), why);
	}
	made = moat_tls_tickets_rotate_due(d->tickets, wall_s());
	if (rc == MOAT_OK)
		log_info("tls_ticket_keys", "source=file keys=%zu rotated=%u",
			 moat_tls_tickets_count(d->tickets), made);
	if (rc != MOAT_OK || made > 0) {
		if (tickets_save(d, why, sizeof(why)) != MOAT_OK)
			log_error("tls_ticket_keys_save",
				  "file=" TICKETS_FILE
				  " error=\"%s\" note=\"tickets will not survive a restart\"",
				  why);
	}
	return MOAT_OK;
}

uint64_t moat_daemon_tickets_wait_ms(struct moat_daemon *d)
{
	int64_t due = moat_tls_tickets_next_rotation(d->tickets) - wall_s();

	/* A second late rather than early: the rotation is then surely due. */
	return due <= 0 ? 0 : (uint64_t)due * 1000u + 1000u;
}

void moat_daemon_tickets_chore(struct moat_daemon *d)
{
	char err[512];
	unsigned made = moat_tls_tickets_rotate_due(d->tickets, wall_s());

	if (made == 0)
		return;
	if (tickets_save(d, err, sizeof(err)) != MOAT_OK) {
		log_error("tls_ticket_keys_save",
			  "file=" TICKETS_FILE
			  " error=\"%s\" note=\"tickets will not survive a restart\"",
			  err);
		return;
	}
	log_info("tls_ticket_keys_rotated", "keys=%zu", moat_tls_tickets_count(d->tickets));
}

void moat_daemon_tickets_free(struct moat_daemon *d)
{
	moat_tls_tickets_free(d->tickets);
	d->tickets = NULL;
}
