/*
 * The registry as the daemon keeps it: the identity table loaded from the
 * store (all of it at start and on SIGHUP, the identities a change touched
 * otherwise), the HTTPS contexts' manufacturer-CA trust kept in step, and
 * the broker told which sessions to re-admit. reload_lock makes loads and
 * announcements one at a time, so workers see changes in the order they
 * were loaded and an older state never follows a newer one.
 */
#include <stdio.h>

#include "daemon/internal.h"
#include "registry/registry.h"

moat_err moat_daemon_registry_reload(struct moat_daemon *d, bool retrust, char *err, size_t errlen)
{
	moat_err rc, trc;

	pthread_mutex_lock(&d->reload_lock);
	if (retrust)
		d->mca_digest_set = false;
	rc = moat_regtab_load_all(d->reg, d->store, err, errlen);
	if (rc == MOAT_OK) {
		/* The table is new either way: the workers apply it. */
		trc = moat_daemon_https_trust(d, err, errlen);
		if (d->broker != NULL)
			(void)moat_broker_registry_changed(d->broker, NULL);
		rc = trc;
	}
	pthread_mutex_unlock(&d->reload_lock);
	return rc;
}

moat_err moat_daemon_registry_update(struct moat_daemon *d, const struct moat_reg_change *ch,
				     char *err, size_t errlen)
{
	moat_err rc;

	pthread_mutex_lock(&d->reload_lock);
	rc = moat_regtab_load_ids(d->reg, d->store, (const char *const *)ch->ids, ch->n,
				  ch->builtin, err, errlen);
	if (rc == MOAT_OK && d->broker != NULL) {
		/* The built-in group's policies also apply to identities the
		 * registry does not know (unknown_devices = allow): no list names
		 * their sessions, so every session is re-admitted. */
		if (ch->builtin && moat_broker_unknown_allow(d->broker))
			rc = moat_broker_registry_changed(d->broker, NULL);
		else
			rc = moat_broker_registry_changed(d->broker, ch);
		if (rc != MOAT_OK)
			snprintf(err, errlen, "out of memory: every session re-admitted");
	}
	pthread_mutex_unlock(&d->reload_lock);
	return rc;
}
