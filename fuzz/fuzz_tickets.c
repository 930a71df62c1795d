/*
 * libFuzzer target for the session-ticket key ring's byte form (the
 * plaintext of DIR/tls-tickets.sealed, tickets.c). moat_tls_tickets_import
 * must accept exactly the canonical form: on MOAT_OK the ring exports back
 * to the same bytes and holds 1..MOAT_TLS_TICKET_KEYS keys; on refusal it is
 * MOAT_E_MALFORMED and the ring is unchanged. Rotation afterwards must keep
 * the ring within its bounds. Any broken property aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "tls/tickets.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

#define T0 1700000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_tls_tickets *t = NULL;
	uint8_t before[MOAT_TLS_TICKETS_BLOB_MAX], after[MOAT_TLS_TICKETS_BLOB_MAX];
	size_t blen = 0, alen = 0;
	moat_err rc;

	if (size > 4 * MOAT_TLS_TICKETS_BLOB_MAX)
		return 0;
	CHECK(moat_tls_tickets_new(T0, &t) == MOAT_OK);
	CHECK(moat_tls_tickets_export(t, before, sizeof(before), &blen) == MOAT_OK);
	rc = moat_tls_tickets_import(t, data, size);
	CHECK(moat_tls_tickets_export(t, after, sizeof(after), &alen) == MOAT_OK);
	if (rc == MOAT_OK) {
		CHECK(alen == size && memcmp(after, data, size) == 0);
		CHECK(moat_tls_tickets_count(t) >= 1 &&
		      moat_tls_tickets_count(t) <= MOAT_TLS_TICKET_KEYS);
		(void)moat_tls_tickets_rotate_due(t, T0 + 5 * (int64_t)MOAT_TLS_TICKET_ROTATE_S);
		CHECK(moat_tls_tickets_count(t) >= 1 &&
		      moat_tls_tickets_count(t) <= MOAT_TLS_TICKET_KEYS);
	} else {
		CHECK(rc == MOAT_E_MALFORMED);
		CHECK(alen == blen && memcmp(after, before, blen) == 0);
	}
	moat_tls_tickets_free(t);
	return 0;
}
