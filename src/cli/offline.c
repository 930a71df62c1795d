/* What offline registry commands share (cli.h): the store's registry
 * service with an audit log signed by the key file. */
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/reactor.h"

static void actor_name(char *out, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());

	if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
		snprintf(out, len, "cli:%.80s", pw->pw_name);
	else
		snprintf(out, len, "cli:uid-%lu", (unsigned long)geteuid());
}

moat_err moat_cli_offline_open(struct moat_cli_offline *o, struct moat_store *st, const char *dir,
			       char *err, size_t errlen)
{
	moat_err rc;

	memset(o, 0, sizeof(*o));
	if ((rc = moat_audit_file_signer_open(&o->signer, dir, err, errlen)) != MOAT_OK)
		return rc;
	o->signer_open = true;
	rc = moat_audit_log_open(&o->log, st, dir, moat_audit_file_sign, &o->signer, err, errlen);
	if (rc != MOAT_OK) {
		moat_cli_offline_close(o);
		return rc;
	}
	o->log_open = true;
	actor_name(o->actor, sizeof(o->actor));
	o->rx.store = st;
	o->rx.audit = &o->log;
	o->rx.actor = o->actor;
	o->rx.peer = "";
	o->rx.now = moat_wall_ms();
	return MOAT_OK;
}

void moat_cli_offline_close(struct moat_cli_offline *o)
{
	if (o->log_open)
		moat_audit_log_close(&o->log);
	if (o->signer_open)
		moat_audit_file_signer_close(&o->signer);
	o->log_open = o->signer_open = false;
}
