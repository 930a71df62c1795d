/*
 * The serving process's seccomp filter (docs/security.md): once moat serve
 * has forked the key process and started its threads, no thread of it may
 * run another program, trace or read another process, create a process,
 * load kernel code or change namespaces and mounts. Everything else the
 * broker, the store and the API need stays allowed: it is a deny list, the
 * key process (src/pki/ca_proc.c) has the strict allow list.
 */
#ifndef MOAT_CORE_SANDBOX_H
#define MOAT_CORE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Install the filter on every thread of the process (TSYNC). *on says
 * whether it is in force: false on a kernel without seccomp and in
 * sanitizer builds (their exit-time leak check forks and traces; logged).
 * An error when the kernel has seccomp but refused the filter. */
moat_err moat_sandbox_serve(bool *on, char *err, size_t errlen);

#endif
