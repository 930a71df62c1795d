/* logfmt logger; see log.h. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

/* Set by SIGHUP on the main thread, read by every thread. */
static atomic_int log_level = MOAT_LOG_INFO;

void moat_log_set_level(enum moat_log_level lvl)
{
	atomic_store_explicit(&log_level, (int)lvl, memory_order_relaxed);
}

enum moat_log_level moat_log_get_level(void)
{
	return (enum moat_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

void moat_log(enum moat_log_level lvl, const char *event, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error", "notice"};
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n, m;
	va_list ap;

	if ((int)lvl < atomic_load_explicit(&log_level, memory_order_relaxed) &&
	    lvl != MOAT_LOG_NOTICE)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000L, names[lvl], event);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (fmt != NULL && fmt[0] != '\0') {
		line[n++] = ' ';
		va_start(ap, fmt);
		m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
		va_end(ap);
		if (m < 0)
			m = 0;
		n += m;
		if ((size_t)n > sizeof(line) - 2)
			n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}
