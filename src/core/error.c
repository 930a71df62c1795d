/* Human-readable text for the project's single error enum. */
#include <stddef.h>

#include "core/error.h"

static const char *const messages[MOAT_E__COUNT] = {
    [MOAT_OK] = "success",
    [MOAT_E_NOMEM] = "out of memory",
    [MOAT_E_AGAIN] = "incomplete input or operation would block",
    [MOAT_E_LIMIT] = "limit exceeded",
    [MOAT_E_INVAL] = "invalid argument",
    [MOAT_E_MALFORMED] = "malformed packet",
    [MOAT_E_PROTOCOL] = "protocol error",
    [MOAT_E_TOO_LARGE] = "packet too large",
    [MOAT_E_VERSION] = "unsupported protocol version",
    [MOAT_E_IO] = "input/output error",
    [MOAT_E_CLOSED] = "connection closed",
    [MOAT_E_TLS] = "TLS error",
    [MOAT_E_CRYPTO] = "cryptographic operation failed",
    [MOAT_E_CONFIG] = "configuration error",
    [MOAT_E_EXISTS] = "already exists",
    [MOAT_E_NOTFOUND] = "not found",
    [MOAT_E_DENIED] = "not authorised",
    [MOAT_E_PERM] = "unsafe file permissions",
    [MOAT_E_INTERNAL] = "internal error",
    [MOAT_E_FULL] = "storage full",
    [MOAT_E_BUSY] = "storage busy",
    [MOAT_E_CORRUPT] = "database corrupt or not a database",
};

const char *moat_strerror(moat_err e)
{
	if ((unsigned)e >= MOAT_E__COUNT || messages[e] == NULL)
		return "unknown error";
	return messages[e];
}
