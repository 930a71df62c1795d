/*
 * The configuration at start and on SIGHUP. A reload is all or nothing:
 * a key this process cannot change (listeners, workers, durability, the
 * [tls] paths, ...) refuses the whole reload and names itself; otherwise
 * the TLS files are read again, the limits go to the workers, the log
 * level and unknown_devices apply at once, and the registry is reloaded
 * (registrations made offline take effect).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "daemon/internal.h"

moat_err moat_daemon_check_private(const char *path, unsigned mask, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return MOAT_E_IO;
	}
	if (st.st_mode & mask) {
		snprintf(err, errlen,
			 "%s is accessible by group or others (mode %03o); fix: chmod %s %s", path,
			 (unsigned)(st.st_mode & 0777), S_ISDIR(st.st_mode) ? "700" : "600", path);
		return MOAT_E_PERM;
	}
	return MOAT_OK;
}

moat_err moat_daemon_conf_load(struct moat_daemon *d, struct moat_conf *conf, char *err,
			       size_t errlen)
{
	moat_err rc = moat_conf_load(d->conf_path, d->dir, conf, err, errlen);

	if (rc != MOAT_OK)
		return rc;
	return moat_daemon_check_private(conf->tls_key, 077, err, errlen);
}

moat_err moat_daemon_reload(struct moat_daemon *d, char *err, size_t errlen)
{
	struct moat_conf *nc = calloc(1, sizeof(*nc));
	struct moat_listener nl[MOAT_MAX_LISTENERS];
	char key[MOAT_MAX_LISTENER_NAME + 48];
	moat_err rc = MOAT_E_NOMEM;

	if (nc == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((rc = moat_daemon_conf_load(d, nc, err, errlen)) != MOAT_OK)
		goto out;
	/* All or nothing: the running configuration is never half old, half
	 * new. */
	if (moat_conf_needs_restart(&d->conf, nc, key, sizeof(key))) {
		rc = MOAT_E_CONFIG;
		snprintf(err, errlen,
			 "%s changed: it needs a restart; nothing was reloaded, the running "
			 "configuration is kept",
			 key);
		goto out;
	}
	if ((rc = moat_daemon_listeners_build(nc, d->tickets, nl, err, errlen)) != MOAT_OK)
		goto out;
	moat_daemon_listeners_swap(d, nl, nc->n_listeners);
	moat_broker_set_limits(d->broker, &nc->lim);
	d->conf.lim = nc->lim;
	d->conf.log_level = nc->log_level;
	moat_log_set_level((enum moat_log_level)nc->log_level);
	/* Every admission reads unknown_devices; the registry reload below
	 * re-admits live sessions with it, so a switch to refuse disconnects
	 * unregistered identities at once. */
	d->conf.unknown_allow = nc->unknown_allow;
	moat_broker_set_unknown_allow(d->broker, nc->unknown_allow);
	rc = moat_daemon_registry_reload(d, true, err, errlen);
out:
	free(nc);
	return rc;
}
