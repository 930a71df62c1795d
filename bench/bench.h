/*
 * moat-bench: an MQTT-over-mutual-TLS load generator used by `bench/run` to
 * compare `moat serve` with a reference broker.
 *
 * One process, one or two worker threads each with its own epoll loop and its
 * own share of the clients, and a coordinator (the main thread) that moves
 * the run through its phases and samples the broker's /proc files at each
 * phase boundary, so CPU and memory deltas cover exactly the measured windows.
 *
 * Shared between the files of bench/ only; nothing here is part of Moat.
 */
#ifndef MOAT_BENCH_H
#define MOAT_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/buf.h"
#include "core/error.h"

/* Payload prefix: magic, publish timestamp (CLOCK_MONOTONIC ns), publisher
 * index, sequence number. Everything after it is filler. */
#define BENCH_MAGIC 0x4d4f4154u /* "MOAT" */
#define BENCH_PAYLOAD_MIN 20u
#define BENCH_PAYLOAD_MAX (256u * 1024u)

#define BENCH_ID_MAX 64u
#define BENCH_TOPIC_MAX 128u
#define BENCH_ERR_MAX 512u
#define BENCH_MAX_THREADS 2u
#define BENCH_MAX_CLIENTS 200000u

enum bench_scenario {
	BENCH_FANIN,  /* many publishers -> one subscriber on d/+/t */
	BENCH_P2P,    /* each device publishes to its own topic and receives it */
	BENCH_FANOUT, /* one publisher -> many subscribers of one topic */
	BENCH_IDLE,   /* connect, then hold the connections without traffic */
};

/* Command line (see usage() in main.c). */
struct bench_opts {
	const char *host;
	unsigned port;
	const char *ca_cert;
	const char *ca_key;
	const char *cert_cache;
	const char *id_prefix;
	const char *scenario_name;
	enum bench_scenario scenario;
	unsigned clients;
	uint64_t messages;
	unsigned payload;
	unsigned qos;
	uint8_t version; /* enum mqtt_version */
	double rate;	 /* published messages/s in total; 0 = as fast as allowed */
	double duration; /* seconds: cap of the publish phase, or idle hold time */
	unsigned window; /* QoS 1 messages in flight per publisher */
	unsigned outstanding;
	unsigned threads;
	unsigned connect_concurrency;
	double connect_timeout;
	double drain_timeout;
	double settle;
	unsigned keepalive;
	/* > 0: subscribers use persistent sessions (v5 Session Expiry Interval
	 * with clean start, v3.1.1 clean session 0). */
	uint32_t session_expiry;
	long broker_pid; /* 0: no broker sampling */
	/* Run by /bin/sh for the publish phase (started when it starts, sent
	 * SIGINT when it ends), with MOAT_BENCH_PID set: a profiler. */
	const char *window_cmd;
	bool quiet;
	/* Session resumption: write every client's TLS session (with its
	 * ticket) once all are connected; offer the sessions of such a file. */
	const char *save_sessions;
	const char *load_sessions;
};

/* Log-linear latency histogram in nanoseconds (< 1.6 % relative error). */
#define BENCH_HIST_SUB 64u
#define BENCH_HIST_BUCKETS (2u * BENCH_HIST_SUB + 57u * BENCH_HIST_SUB)

struct bench_hist {
	uint64_t count;
	uint64_t sum;
	uint64_t max;
	uint64_t buckets[BENCH_HIST_BUCKETS];
};

void bench_hist_add(struct bench_hist *h, uint64_t v);
void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* Value at quantile q in [0, 1]; 0 when empty. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

/* CPU and memory of a broker process and all its descendants. */
struct bench_proc_sample {
	bool ok;
	double cpu_s; /* utime + stime */
	double user_s, sys_s;
	uint64_t rss_kb;
	unsigned nproc;
	/* Summed over every thread: voluntary (sleeps, so later wake-ups) and
	 * involuntary (preempted) context switches; read-like and write-like
	 * system calls (/proc/PID/io syscr, syscw: read, recvmsg, write,
	 * sendmsg, ... but not epoll_wait). */
	uint64_t ctx_vol, ctx_invol, syscr, syscw;
};

void bench_proc_sample(long pid, struct bench_proc_sample *out);

/* Client identities: ECDSA P-256 keys and certificates signed by the CA. */
struct bench_ca;

moat_err bench_ca_open(const char *cert_path, const char *key_path, const char *cache_dir,
		       struct bench_ca **out, char *err, size_t errlen);
void bench_ca_close(struct bench_ca *ca);
/* Load the identity of id from the cache, or generate (and cache) it. */
moat_err bench_ca_identity(struct bench_ca *ca, const char *id, EVP_PKEY **key, X509 **cert,
			   bool *generated, char *err, size_t errlen);

/* Run phases, advanced by the coordinator only. */
enum bench_phase {
	BENCH_PH_CONNECT,
	BENCH_PH_RUN,
	BENCH_PH_DRAIN, /* stop publishing, keep receiving */
	BENCH_PH_STOP,
};

enum bench_errkind {
	BENCH_ERR_CONNECT, /* TCP connect failed (refused, timeout) */
	BENCH_ERR_TLS,	   /* handshake or record layer failure */
	BENCH_ERR_CONNACK, /* CONNACK with a non-zero code */
	BENCH_ERR_SUBACK,  /* subscription refused */
	BENCH_ERR_PUBACK,  /* PUBACK with a failure reason code */
	BENCH_ERR_CLOSED,  /* broker closed or reset an established connection */
	BENCH_ERR_PROTO,   /* unexpected or undecodable packet */
	BENCH_ERR__COUNT
};

struct bench_client;
struct bench_worker;

/* State shared by the coordinator and the workers. */
struct bench_run {
	const struct bench_opts *o;
	SSL_CTX *ctx;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct bench_client *clients;
	unsigned n_clients;
	unsigned n_pubs;
	/* Deliveries expected per published message (fan-out: subscribers). */
	unsigned fan;
	struct bench_worker *workers;
	unsigned n_workers;

	_Atomic int phase;
	_Atomic uint64_t t_start_ns; /* start of the publish phase */
	_Atomic uint64_t ready;	     /* clients connected (and subscribed) */
	_Atomic uint64_t sent;
	_Atomic uint64_t received;
	_Atomic uint64_t acked;
	_Atomic uint64_t last_rx_ns;
	_Atomic uint64_t dead; /* clients that failed */
	/* Fan-in: the consumer connects (and subscribes) before the devices,
	 * as a fleet's back end is up before its devices connect. */
	struct bench_client *first;
	_Atomic bool first_ready;
	_Atomic uint64_t resumed; /* handshakes that resumed an offered session */
	_Atomic uint64_t errors[BENCH_ERR__COUNT];

	pthread_mutex_t err_lock;
	unsigned err_printed;
	char first_err[BENCH_ERR_MAX];
};

/* One epoll loop and its clients. */
struct bench_worker {
	struct bench_run *run;
	unsigned no;
	pthread_t thread;
	int epfd;
	int tfd; /* timerfd: pacing and housekeeping */
	struct bench_client **clients;
	unsigned n_clients;
	unsigned next_connect;
	unsigned connecting;
	struct bench_client **pubs;
	unsigned n_pubs;
	unsigned pub_cursor;
	uint64_t quota; /* messages this worker publishes */
	uint64_t quota_sent;
	double rate; /* this worker's share of --rate */
	uint64_t last_ping_check_ns;
	/* Counts not yet folded into the run's atomics. */
	uint64_t d_sent;
	uint64_t d_received;
	uint64_t d_acked;
	uint64_t last_rx_ns;
	struct moat_buf scratch;     /* payload being built */
	struct bench_hist *hist;     /* heap: large */
	struct bench_hist *ack_hist; /* QoS 1: PUBLISH to its PUBACK */
};

/* Set up the worker's epoll and timer; assign its clients beforehand. */
moat_err bench_worker_init(struct bench_worker *w, struct bench_run *run, unsigned no);
void bench_worker_free(struct bench_worker *w);
void *bench_worker_main(void *arg);

/* Allocate the run's clients and split them over the workers. */
moat_err bench_clients_create(struct bench_run *run, struct bench_ca *ca, char *err, size_t errlen);
void bench_clients_free(struct bench_run *run);
/* --load-sessions: give each client the session saved under its id (ids not
 * in the file connect with a full handshake). Before the workers start. */
moat_err bench_sessions_load(struct bench_run *run, const char *path, unsigned *loaded, char *err,
			     size_t errlen);
/* --save-sessions: every connected client's session, PEM, each after a line
 * with its client id; mode 0600. After the workers stopped. */
moat_err bench_sessions_save(struct bench_run *run, const char *path, unsigned *saved, char *err,
			     size_t errlen);

/* Record an error (counted; the first few are printed to stderr). */
void bench_error(struct bench_run *run, enum bench_errkind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *bench_errkind_name(enum bench_errkind kind);

uint64_t bench_now_ns(void);

#endif
