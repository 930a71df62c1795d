/*
 * Process-wide rules of `moat serve`, in one place: which signals the
 * threads block (only the main thread takes them, with sigwait), and the
 * check that the process still has one thread (forking a child that must
 * not inherit another thread's locks or secrets).
 */
#ifndef MOAT_CORE_PROC_H
#define MOAT_CORE_PROC_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Block SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every
 * thread it creates afterwards) and ignore SIGPIPE. Call before the first
 * pthread_create; moat_proc_wait_signal then takes them. */
void moat_proc_block_signals(void);

/* Wait for one of the blocked signals, at most timeout_ms (UINT64_MAX:
 * forever); returns its number, or 0 when the time ran out. */
int moat_proc_wait_signal(uint64_t timeout_ms);

/* MOAT_OK when the process has exactly one thread (from
 * /proc/self/status); MOAT_E_INTERNAL with a sentence in err otherwise, or
 * MOAT_E_IO when that cannot be read. */
moat_err moat_proc_single_threaded(char *err, size_t errlen);

#endif
