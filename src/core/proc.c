/* Process-wide signal mask and the single-thread check (proc.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>

#include "core/proc.h"

static void serve_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

void moat_proc_block_signals(void)
{
	sigset_t set;

	serve_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int moat_proc_wait_signal(uint64_t timeout_ms)
{
	struct timespec ts;
	sigset_t set;
	int sig = 0;

	serve_signals(&set);
	if (timeout_ms == UINT64_MAX) {
		while (sigwait(&set, &sig) != 0)
			;
		return sig;
	}
	ts.tv_sec = (time_t)(timeout_ms / 1000u);
	ts.tv_nsec = (long)(timeout_ms % 1000u) * 1000000L;
	for (;;) {
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig > 0)
			return sig;
		if (errno == EAGAIN)
			return 0;
		/* EINTR: a signal we do not wait for; the remaining time is
		 * not tracked, the caller's deadline is (it waits again). */
		if (errno != EINTR)
			return 0;
	}
}

moat_err moat_proc_single_threaded(char *err, size_t errlen)
{
	char line[128];
	FILE *f = fopen("/proc/self/status", "re");
	long threads = -1;

	if (f == NULL) {
		snprintf(err, errlen, "cannot read /proc/self/status to count threads");
		return MOAT_E_IO;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Threads:", 8) == 0) {
			char *end;
			threads = strtol(line + 8, &end, 10);
			break;
		}
	}
	fclose(f);
	if (threads < 0) {
		snprintf(err, errlen, "no thread count in /proc/self/status");
		return MOAT_E_IO;
	}
	if (threads != 1) {
		snprintf(err, errlen,
			 "the process already has %ld threads; the key process must be forked "
			 "before any thread starts",
			 threads);
		return MOAT_E_INTERNAL;
	}
	return MOAT_OK;
}
