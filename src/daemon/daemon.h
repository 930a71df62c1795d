/*
 * `moat serve` as one module: start-up, configuration, the store, the
 * identity table, the listeners' TLS contexts, the key process, the broker,
 * the management API and its HTTPS thread, signals and the main thread's
 * chores. Threads and who owns what: docs/architecture.md.
 */
#ifndef MOAT_DAEMON_H
#define MOAT_DAEMON_H

#include <stddef.h>

#include "core/error.h"

/* Run on the data directory dir until SIGTERM or SIGINT (SIGHUP reloads).
 * MOAT_OK after a clean stop; otherwise err says what kept it from
 * starting. Call from a process that has no thread yet: the key process is
 * forked first. */
moat_err moat_daemon_run(const char *dir, char *err, size_t errlen);

#endif
