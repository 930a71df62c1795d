/*
 * TLS session-ticket keys that Moat manages instead of OpenSSL (which makes
 * random keys per SSL_CTX, so every restart and every SIGHUP would
 * invalidate every device's ticket).
 *
 * One key ring is shared by the MQTT listeners' contexts and outlives them
 * (a SIGHUP rebuilds the contexts, not the keys). The newest key seals new
 * tickets; the MOAT_TLS_TICKET_KEYS - 1 before it still open tickets, which
 * are then renewed under the newest. The daemon rotates the ring every
 * MOAT_TLS_TICKET_ROTATE_S and keeps it across restarts only sealed by the
 * key process (src/daemon/tickets.c); export/import are the plaintext of
 * that file.
 *
 * A context the ring is attached to also refuses to resume (full handshake
 * instead) a ticket whose client certificate has expired or is not yet
 * valid (OpenSSL does not re-check validity on resumption), or that another
 * listener or another set of trusted CAs issued; tickets live at most
 * MOAT_TLS_TICKET_LIFETIME_S and never past the certificate's notAfter.
 *
 * Threads: handshakes on any worker read the ring under its read lock;
 * rotation and import (the main thread) take the write lock.
 */
#ifndef MOAT_TLS_TICKETS_H
#define MOAT_TLS_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/error.h"
#include "core/limits.h"

struct moat_tls_tickets;

/* A ring of one fresh random key, current since now (Unix seconds). */
moat_err moat_tls_tickets_new(int64_t now, struct moat_tls_tickets **out);
/* Wipe every key (OPENSSL_cleanse) and free. The contexts it was attached
 * to must be freed first. NULL is a no-op. */
void moat_tls_tickets_free(struct moat_tls_tickets *t);

/*
 * Rotate as often as MOAT_TLS_TICKET_ROTATE_S periods have passed since the
 * current key became current (at most MOAT_TLS_TICKET_KEYS times: then every
 * key is new); a discarded key is wiped. A current key dated in the future
 * (the clock went back) is redated to now. Returns how many keys were made.
 */
unsigned moat_tls_tickets_rotate_due(struct moat_tls_tickets *t, int64_t now);
/* Make a new current key now, whatever the schedule (tests, tools). */
moat_err moat_tls_tickets_rotate(struct moat_tls_tickets *t, int64_t now);
/* When the next rotation is due (Unix seconds). */
int64_t moat_tls_tickets_next_rotation(struct moat_tls_tickets *t);
/* Keys held (1..MOAT_TLS_TICKET_KEYS). */
size_t moat_tls_tickets_count(struct moat_tls_tickets *t);

/*
 * The ring as bytes (limits.h, MOAT_TLS_TICKETS_BLOB_MAX): "MTK1", u64
 * big-endian time the current key became current, u8 count, count keys
 * (16-byte name, 32-byte AES-256-CBC key, 32-byte HMAC-SHA256 key), newest
 * first. out must hold MOAT_TLS_TICKETS_BLOB_MAX bytes; the caller wipes it.
 */
moat_err moat_tls_tickets_export(struct moat_tls_tickets *t, uint8_t *out, size_t cap, size_t *len);
/*
 * Replace the ring with one exported before. The parser is strict:
 * MOAT_E_MALFORMED for a wrong tag, a count outside 1..MOAT_TLS_TICKET_KEYS,
 * a length that is not exactly the count's, a time <= 0 or past
 * MOAT_CA_TIME_MAX, or two keys with one name; t is then unchanged. An
 * accepted input exports back to the same bytes. Does not rotate (call
 * moat_tls_tickets_rotate_due after).
 */
moat_err moat_tls_tickets_import(struct moat_tls_tickets *t, const uint8_t *in, size_t len);

/*
 * Have ctx seal and open its tickets with t, with the ticket checks above
 * and a lifetime of MOAT_TLS_TICKET_LIFETIME_S. label names the listener:
 * tickets are bound to it and to the CA certificates ctx trusts now (load
 * them first), so a ticket made on another listener, or before the trusted
 * CAs changed, gives a full handshake. t must outlive ctx.
 */
moat_err moat_tls_tickets_attach(SSL_CTX *ctx, struct moat_tls_tickets *t, const char *label,
				 char *err, size_t errlen);

/* No resumption at all on ctx: no tickets issued, none accepted. */
moat_err moat_tls_resumption_off(SSL_CTX *ctx, char *err, size_t errlen);

#endif
