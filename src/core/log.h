/*
 * Structured logging in logfmt: `ts=... level=... event=... key=value ...`
 * to stderr, one line per event, written with a single write(2) so lines from
 * several threads never interleave.
 */
#ifndef MOAT_LOG_H
#define MOAT_LOG_H

/* NOTICE is for the few lifecycle events (ready, reload, stopping) that
 * scripts wait for: printed whatever the configured level. */
enum moat_log_level {
	MOAT_LOG_DEBUG,
	MOAT_LOG_INFO,
	MOAT_LOG_WARN,
	MOAT_LOG_ERROR,
	MOAT_LOG_NOTICE
};

void moat_log_set_level(enum moat_log_level lvl);
enum moat_log_level moat_log_get_level(void);

/* fmt formats the key=value tail (caller quotes values via moat_log_q). */
void moat_log(enum moat_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) moat_log(MOAT_LOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) moat_log(MOAT_LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) moat_log(MOAT_LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) moat_log(MOAT_LOG_ERROR, ev, __VA_ARGS__)
#define log_notice(ev, ...) moat_log(MOAT_LOG_NOTICE, ev, __VA_ARGS__)

#endif
