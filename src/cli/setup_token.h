/* One-time setup tokens: the only way to create the first administrator. */
#ifndef MOAT_CLI_SETUP_TOKEN_H
#define MOAT_CLI_SETUP_TOKEN_H

#include <stddef.h>

#include "core/error.h"

/* Store a new token's hash in DIR's database (created if needed) and write
 * the token to out. Refuses (MOAT_E_EXISTS) once an operator exists. */
moat_err moat_setup_token_issue(const char *dir, char *out, size_t outlen, char *err,
				size_t errlen);

#endif
