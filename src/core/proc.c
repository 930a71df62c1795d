/* Process-wide signal mask and the single-thread check (proc.h). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int moat_proc_wait_signal(void)
{
	sigset_t set;
	int sig = 0;

	serve_signals(&set);
	while (sigwait(&set, &sig) != 0)
		;
	return sig;
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
