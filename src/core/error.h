/*
 * The one error type of Moat. Every fallible function returns a moat_err;
 * MOAT_OK is zero so `if (rc)` reads naturally.
 */
#ifndef MOAT_ERROR_H
#define MOAT_ERROR_H

enum moat_err {
	MOAT_OK = 0,
	MOAT_E_NOMEM,	  /* allocation failed */
	MOAT_E_AGAIN,	  /* need more input / would block */
	MOAT_E_LIMIT,	  /* a configured or compiled limit was hit */
	MOAT_E_INVAL,	  /* invalid argument or value */
	MOAT_E_MALFORMED, /* wire data violates the encoding */
	MOAT_E_PROTOCOL,  /* well-formed but breaks protocol rules */
	MOAT_E_TOO_LARGE, /* packet larger than allowed */
	MOAT_E_VERSION,	  /* unsupported protocol version */
	MOAT_E_IO,	  /* system call failed */
	MOAT_E_CLOSED,	  /* peer closed the connection */
	MOAT_E_TLS,	  /* TLS failure */
	MOAT_E_CRYPTO,	  /* key or certificate operation failed */
	MOAT_E_CONFIG,	  /* configuration error */
	MOAT_E_EXISTS,	  /* target already exists */
	MOAT_E_NOTFOUND,  /* no such thing */
	MOAT_E_DENIED,	  /* not authorised */
	MOAT_E_PERM,	  /* file permissions unsafe */
	MOAT_E_INTERNAL,  /* invariant broken (bug) */
	MOAT_E_FULL,	  /* storage full: nothing more can be persisted */
	MOAT_E_BUSY,	  /* storage locked by someone else beyond the timeout */
	MOAT_E_CORRUPT,	  /* database corrupt or not a Moat database */
	MOAT_E__COUNT
};

typedef enum moat_err moat_err;

const char *moat_strerror(moat_err e);

#endif
