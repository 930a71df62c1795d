/*
 * The serving process's seccomp filter (src/core/sandbox.c), tried in a
 * forked child: after it, threads still start and the process works, but
 * fork is refused and execve kills the process. Sanitizer builds compile
 * the filter out (their leak check forks and traces): skipped there.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/sandbox.h"

#define SKIP 77

static void *thread_main(void *arg)
{
	return arg;
}

/* In the child: 0 when the filter is on and threads still work, SKIP
 * when it is compiled out; then it tries execve, which must kill it. */
static int child(bool try_exec, bool try_fork)
{
	char err[256];
	pthread_t t;
	void *ret = NULL;
	bool on = false;

	moat_log_set_level(MOAT_LOG_ERROR);
	if (moat_sandbox_serve(&on, err, sizeof(err)) != MOAT_OK)
		return 1;
	if (!on)
		return SKIP;
	if (pthread_create(&t, NULL, thread_main, (void *)&on) != 0 || pthread_join(t, &ret) != 0 ||
	    ret != (void *)&on)
		return 2;
	if (try_fork) {
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		if (p > 0)
			return 3; /* a process was created */
		if (errno != EPERM)
			return 4;
	}
	if (try_exec) {
		char *argv[] = {(char *)"/bin/true", NULL};
		char *envp[] = {NULL};
		execve("/bin/true", argv, envp);
		return 5; /* survived an execve attempt */
	}
	return 0;
}

static int run(bool try_exec, bool try_fork, int *sig)
{
	int st = 0;
	pid_t p = fork();

	assert_true(p >= 0);
	if (p == 0)
		_exit(child(try_exec, try_fork));
	assert_int_equal(waitpid(p, &st, 0), p);
	*sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_threads_work_fork_is_refused(void **state)
{
	int sig, rc = run(false, true, &sig);

	(void)state;
	if (rc == SKIP)
		skip();
	assert_int_equal(sig, 0);
	assert_int_equal(rc, 0);
}

static void test_execve_kills_the_process(void **state)
{
	int sig, rc = run(true, false, &sig);

	(void)state;
	if (rc == SKIP)
		skip();
	assert_int_equal(rc, -1);
	assert_int_equal(sig, SIGSYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_work_fork_is_refused),
	    cmocka_unit_test(test_execve_kills_the_process),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
