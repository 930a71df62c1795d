/*
 * Measurement helpers of moat-bench: the latency histogram and the sampling
 * of a broker's CPU time and resident memory from /proc.
 *
 * The broker is sampled as a process tree (the pid and every descendant), so
 * a broker that forks helpers (Moat's CA process, worker processes) is
 * charged for all of them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* Descendants we follow; a broker with more processes than this is not one
 * we know how to measure. */
#define PROC_TREE_MAX 256u

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned hist_index(uint64_t v)
{
	unsigned e, shift;

	if (v < 2u * BENCH_HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v); /* >= 7 */
	shift = e - 6u;
	return 2u * BENCH_HIST_SUB + (e - 7u) * BENCH_HIST_SUB +
	       (unsigned)((v >> shift) - BENCH_HIST_SUB);
}

/* Midpoint of a bucket. */
static uint64_t hist_value(unsigned idx)
{
	unsigned e, shift;
	uint64_t top;

	if (idx < 2u * BENCH_HIST_SUB)
		return idx;
	e = (idx - 2u * BENCH_HIST_SUB) / BENCH_HIST_SUB + 7u;
	shift = e - 6u;
	top = (idx - 2u * BENCH_HIST_SUB) % BENCH_HIST_SUB + BENCH_HIST_SUB;
	return (top << shift) + ((uint64_t)1 << (shift - 1u));
}

void bench_hist_add(struct bench_hist *h, uint64_t v)
{
	h->buckets[hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
	unsigned i;

	for (i = 0; i < BENCH_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
	uint64_t rank, seen = 0;
	unsigned i;

	if (h->count == 0)
		return 0;
	if (q >= 1.0)
		return h->max;
	rank = (uint64_t)(q * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen > rank) {
			uint64_t v = hist_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

/* Read a small /proc file into buf (NUL-terminated). */
static moat_err proc_read(const char *path, char *buf, size_t len)
{
	moat_err rc = MOAT_E_IO;
	size_t got = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return MOAT_E_NOTFOUND;
	while (got + 1 < len) {
		n = read(fd, buf + got, len - 1 - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	rc = MOAT_OK;
out:
	close(fd);
	return rc;
}

/* Parse the next unsigned decimal field, skipping leading spaces. */
static moat_err parse_field(const char **pp, unsigned long long *v)
{
	const char *p = *pp;
	char *end;

	while (*p == ' ')
		p++;
	if (*p < '0' || *p > '9')
		return MOAT_E_MALFORMED;
	errno = 0;
	*v = strtoull(p, &end, 10);
	if (errno != 0 || end == p)
		return MOAT_E_MALFORMED;
	*pp = end;
	return MOAT_OK;
}

/* Skip n space-separated fields. */
static moat_err skip_fields(const char **pp, unsigned n)
{
	const char *p = *pp;

	while (n-- > 0) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return MOAT_E_MALFORMED;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	*pp = p;
	return MOAT_OK;
}

/* /proc/PID/stat: ppid (field 4), utime (14) and stime (15) in clock ticks.
 * The command name (field 2) may contain spaces, so parse after its ')'. */
static moat_err proc_stat2(long pid, long *ppid, unsigned long long *ut_out,
			   unsigned long long *st_out)
{
	char path[64], buf[1024];
	unsigned long long pp, ut, st;
	const char *p;
	moat_err rc;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	rc = proc_read(path, buf, sizeof(buf));
	if (rc)
		return rc;
	p = strrchr(buf, ')');
	if (p == NULL)
		return MOAT_E_MALFORMED;
	p++;
	/* state */
	if (skip_fields(&p, 1))
		return MOAT_E_MALFORMED;
	if (parse_field(&p, &pp))
		return MOAT_E_MALFORMED;
	/* pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt */
	if (skip_fields(&p, 9))
		return MOAT_E_MALFORMED;
	if (parse_field(&p, &ut) || parse_field(&p, &st))
		return MOAT_E_MALFORMED;
	*ppid = (long)pp;
	*ut_out = ut;
	*st_out = st;
	return MOAT_OK;
}

static moat_err proc_stat(long pid, long *ppid, unsigned long long *ticks)
{
	unsigned long long ut, st;
	moat_err rc = proc_stat2(pid, ppid, &ut, &st);

	if (rc == MOAT_OK)
		*ticks = ut + st;
	return rc;
}

/* The number after "key" at a line start in a /proc text file; 0 when
 * absent. */
static unsigned long long proc_key(const char *buf, const char *key)
{
	unsigned long long v = 0;
	const char *p = strstr(buf, key);

	while (p != NULL && p != buf && p[-1] != '\n')
		p = strstr(p + 1, key);
	if (p == NULL)
		return 0;
	p += strlen(key);
	while (*p == ' ' || *p == '\t')
		p++;
	if (parse_field(&p, &v))
		return 0;
	return v;
}

/* Context switches of every thread of pid, and its read/write syscalls. */
static void proc_counters(long pid, struct bench_proc_sample *out)
{
	char path[96], buf[4096];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%ld/io", pid);
	if (proc_read(path, buf, sizeof(buf)) == MOAT_OK) {
		out->syscr += proc_key(buf, "syscr:");
		out->syscw += proc_key(buf, "syscw:");
	}
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	d = opendir(path);
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/task/%.20s/status", pid, de->d_name);
		if (proc_read(path, buf, sizeof(buf)) != MOAT_OK)
			continue;
		out->ctx_vol += proc_key(buf, "voluntary_ctxt_switches:");
		out->ctx_invol += proc_key(buf, "nonvoluntary_ctxt_switches:");
	}
	closedir(d);
}

/* VmRSS in kB from /proc/PID/status. */
static moat_err proc_rss(long pid, unsigned long long *kb)
{
	char path[64], buf[4096];
	const char *p;
	moat_err rc;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	rc = proc_read(path, buf, sizeof(buf));
	if (rc)
		return rc;
	p = strstr(buf, "\nVmRSS:");
	if (p == NULL)
		return MOAT_E_NOTFOUND;
	p += strlen("\nVmRSS:");
	while (*p == ' ' || *p == '\t')
		p++;
	return parse_field(&p, kb);
}

static bool tree_has(const long *tree, unsigned n, long pid)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		if (tree[i] == pid)
			return true;
	}
	return false;
}

/* Append to tree[0..*n) every process whose parent is already in it. */
static void proc_children(long *tree, unsigned *n)
{
	struct dirent *de;
	unsigned long long ticks;
	long pid, ppid;
	char *end;
	DIR *d;

	d = opendir("/proc");
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && *n < PROC_TREE_MAX) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		errno = 0;
		pid = strtol(de->d_name, &end, 10);
		if (errno != 0 || *end != '\0')
			continue;
		if (tree_has(tree, *n, pid) || proc_stat(pid, &ppid, &ticks))
			continue;
		if (tree_has(tree, *n, ppid))
			tree[(*n)++] = pid;
	}
	closedir(d);
}

void bench_proc_sample(long pid, struct bench_proc_sample *out)
{
	long tree[PROC_TREE_MAX];
	unsigned long long ut, st, kb, total_ut = 0, total_st = 0, total_kb = 0;
	unsigned n = 1, prev = 0, i;
	long hz, ppid;

	memset(out, 0, sizeof(*out));
	if (pid <= 0)
		return;
	tree[0] = pid;
	/* /proc lists pids in ascending order, so a child with a lower pid than
	 * its parent (pid wrap) needs another pass; stop when one finds nothing. */
	while (n != prev) {
		prev = n;
		proc_children(tree, &n);
	}
	hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	for (i = 0; i < n; i++) {
		if (proc_stat2(tree[i], &ppid, &ut, &st))
			continue;
		if (proc_rss(tree[i], &kb))
			kb = 0;
		total_ut += ut;
		total_st += st;
		total_kb += kb;
		proc_counters(tree[i], out);
		if (i == 0)
			out->ok = true;
	}
	out->user_s = (double)total_ut / (double)hz;
	out->sys_s = (double)total_st / (double)hz;
	out->cpu_s = out->user_s + out->sys_s;
	out->rss_kb = total_kb;
	out->nproc = n;
}
