/*
 * libFuzzer target for the moat.conf parser: arbitrary bytes through
 * moat_conf_parse_string must never crash, leak or trip an invariant
 * (MOAT_DEBUG builds turn NEVER() into abort()), and every rejection must
 * come with a "name:LINE: ...; fix: ..." message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_conf c;
	char err[512];
	char *text;
	moat_err rc;

	/* The API takes a C string; embedded NULs simply end it early. */
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	rc = moat_conf_parse_string(text, "fuzz.conf", "/var/lib/moat", &c, err, sizeof(err));
	if (rc == MOAT_OK) {
		/* Whatever was accepted must satisfy the documented invariants. */
		if (c.n_listeners == 0 || c.n_listeners > MOAT_MAX_LISTENERS)
			abort();
		for (size_t i = 0; i < c.n_listeners; i++) {
			const struct moat_listener_conf *l = &c.listeners[i];
			if (l->port == 0 || memchr(l->bind, '\0', sizeof(l->bind)) == NULL)
				abort();
			if ((!l->tls || l->policy == MOAT_POLICY_OPEN) &&
			    !moat_addr_is_loopback(l->bind))
				abort();
		}
		if (c.lim.max_packet_size < MOAT_MAX_PACKET_SIZE_MIN ||
		    c.lim.max_packet_size > MOAT_MAX_PACKET_SIZE_MAX ||
		    c.workers > MOAT_MAX_WORKERS)
			abort();
	} else if (rc == MOAT_E_CONFIG) {
		if (strncmp(err, "fuzz.conf:", 10) != 0 || strstr(err, "fix:") == NULL)
			abort();
	} else {
		abort();
	}
	free(text);
	return 0;
}
