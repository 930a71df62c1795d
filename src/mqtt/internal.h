/*
 * src/mqtt's own header (other modules include mqtt/broker.h): the
 * broker-wide `struct moat_broker`, one
 * `struct moat_worker` per thread, connections, sessions, subscriptions and
 * messages.
 *
 * Threading model (docs/architecture.md has the long form):
 * - Each worker owns its connections, its sessions, a subscription trie of
 *   its own sessions' subscriptions and a replica of the retained tree.
 *   Nothing a worker owns is touched by another thread.
 * - A message published on worker A is matched against A's trie and posted,
 *   as one refcounted object, to the mailbox of every other worker that has
 *   subscriptions; each matches it against its own trie. No global lock is
 *   taken on the publish path.
 * - A session lives on the worker that created it. A client reconnecting on
 *   another worker has its connection handed over to the session's worker.
 *   The client-id -> worker registry is the only global map, locked only at
 *   CONNECT and session end.
 * - Shared subscriptions ($share) are the exception: group membership is
 *   global, under its own lock, consulted only when shared subscriptions
 *   exist; the chosen member's worker receives a targeted delivery.
 */
#ifndef MOAT_MQTT_INTERNAL_H
#define MOAT_MQTT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/reactor.h"
#include "mqtt/broker.h"
#include "mqtt/codec/codec.h"
#include "mqtt/interest.h"
#include "mqtt/pipeline.h"
#include "mqtt/interest.h"
#include "mqtt/trie.h"
#include "registry/registry.h"

struct moat_broker;
struct moat_worker;
struct share_group;
struct moat_store;
struct moat_deferred;
struct moat_pubtoken;
struct moat_store_batch;
struct moat_session;

/* One published message, shared read-only by every receiver. */
struct moat_msg {
	atomic_uint refs;
	uint8_t qos;
	bool retain;
	uint8_t payload_format;
	bool has_payload_format;
	uint64_t expiry_at;	  /* monotonic ms; 0 = never (or not started yet) */
	uint32_t expiry_interval; /* seconds, as published; 0 = none */
	uint64_t origin;	  /* session id of the publisher (no-local); 0 = broker */
	uint64_t store_id;	  /* id in the store's messages table; 0 = not stored */
	char *topic;		  /* NUL-terminated for convenience */
	uint16_t topic_len;
	uint8_t *payload;
	uint32_t payload_len;
	uint8_t *content_type, *response_topic, *correlation, *user;
	uint16_t content_type_len, response_topic_len;
	uint16_t correlation_len;
	uint32_t user_len; /* raw (0x26 k v)* */
	uint16_t n_user;
	uint8_t data[];
};

/* A message published at `now` (monotonic ms). now = 0: its expiry clock
 * starts later, as for a will, which expires counting from publication. */
struct moat_msg *moat_msg_new(const char *topic, size_t tlen, const uint8_t *payload, size_t plen,
			      const struct mqtt_props *props, uint8_t qos, bool retain,
			      uint64_t origin, uint64_t now);
static inline struct moat_msg *moat_msg_ref(struct moat_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}
void moat_msg_unref(struct moat_msg *m);
bool moat_msg_expired(const struct moat_msg *m, uint64_t now);

#define MOAT_SUB_IDS_PER_DELIVERY 4

/* One message on its way to one session (queued or in flight). */
struct moat_delivery {
	struct moat_msg *msg;
	uint32_t sub_ids[MOAT_SUB_IDS_PER_DELIVERY];
	uint8_t n_sub_ids;
	uint8_t qos;
	bool retain;
	uint8_t state; /* enum delivery_state */
	uint16_t pid;
	uint64_t seq; /* position in the stored session's queue; 0 = not stored */
};

enum delivery_state {
	DELIVERY_QUEUED = 0,
	DELIVERY_WAIT_PUBACK,
	DELIVERY_WAIT_PUBREC,
	DELIVERY_WAIT_PUBCOMP,
};

struct moat_sub {
	struct moat_session *s;
	char *filter; /* as given, including $share/g/ */
	uint16_t filter_len;
	const char *match; /* the filter the trie holds (inside `filter`) */
	uint16_t match_len;
	uint8_t qos;
	bool no_local;
	bool rap;
	uint8_t rh;
	uint32_t sub_id;
	bool shared;
};

struct moat_session {
	uint64_t id;
	uint16_t client_id_len;
	char identity[MOAT_DEVICE_ID_MAX + 1]; /* certificate identity, "" if none */
	struct moat_worker *w;
	struct moat_conn *conn; /* NULL when offline */
	uint8_t version;
	uint32_t expiry_interval; /* seconds; kept after disconnect */
	uint64_t expire_at;	  /* when offline; 0 = not scheduled */
	/* will */
	struct moat_msg *will;
	uint32_t will_delay;
	uint64_t will_at; /* 0 = not pending */
	/* subscriptions */
	struct moat_sub **subs;
	uint16_t n_subs, cap_subs;
	/* outgoing QoS>0: inflight window then queue */
	struct moat_delivery *inflight;
	uint16_t n_inflight, cap_inflight;
	struct moat_delivery *queue; /* ring */
	uint32_t q_head, q_len, q_cap;
	uint16_t next_pid;
	/* What this session may receive: the identity's compiled ACL, taken at
	 * CONNECT (or restore) and replaced at every registry change, online or
	 * offline. acl_all: no restriction (open listeners). NULL without
	 * acl_all: nothing (an identity not admitted now). */
	struct moat_acl *acl;
	bool acl_all;
	bool stored;	   /* has a row in the store (persist_session.c) */
	uint64_t next_seq; /* of stored deliveries */
	/* incoming QoS 2 awaiting PUBREL */
	uint16_t *qos2_in;
	uint16_t n_qos2_in, cap_qos2_in;
	/* worker's session list */
	struct moat_session *prev, *next;
	/* NUL-terminated, allocated with the session to its length: most ids
	 * are a dozen bytes, the limit is MOAT_MAX_CLIENT_ID_LEN (memory per
	 * connection, bench/README.md) */
	char client_id[];
};

enum conn_state {
	CONN_TLS_HANDSHAKE = 0,
	CONN_WAIT_CONNECT,
	CONN_CONNECTED,
	CONN_CLOSING, /* flush output then close */
	CONN_HANDOFF, /* being moved to another worker */
};

struct moat_listener;

struct moat_conn {
	struct moat_ev ev;
	struct moat_worker *w;
	struct moat_listener *l;
	SSL *ssl;
	uint8_t state;
	uint8_t version;
	bool want_write; /* TLS needs EPOLLOUT to progress reads */
	bool dirty;	 /* on the worker's flush list */
	bool graceful;	 /* DISCONNECT 0x00 received: no will */
	bool counted;	 /* included in the clients-connected statistic */
	bool held;	 /* CONNACK waits for the store: read nothing, send nothing */
	uint64_t id;	 /* unique per connection (deferred acknowledgements) */
	unsigned handoff_to;
	bool placed; /* placement at CONNECT decided (place.c): not again */
	uint16_t keepalive;
	uint32_t max_packet; /* what CONNACK told the client */
	uint64_t last_rx;
	uint64_t opened;
	/* peer limits (v5) */
	uint32_t peer_max_packet;
	uint16_t peer_receive_max;
	uint16_t peer_alias_max;
	struct moat_session *s;
	struct moat_buf in, out;
	char identity[MOAT_DEVICE_ID_MAX + 1];
	char serial[72]; /* the client certificate's serial, lowercase hex ("" if none) */
	char addr[64];
	/* What this identity may publish and subscribe to, compiled from the
	 * registry at CONNECT (NULL on open-policy listeners: everything). */
	struct moat_acl *acl;
	/* topic aliases: client->server (by alias) and server->client */
	char **alias_in;
	char **alias_out;
	uint16_t n_alias_out;
	struct moat_conn *prev, *next; /* worker's connection list */
	struct moat_conn *dirty_next;  /* worker's flush list */
};

/* Mailbox items between workers. */
enum mail_kind {
	MAIL_ROUTE,    /* match msg against the local trie (and/or retain it) */
	MAIL_TARGET,   /* deliver msg to one local session (shared subscription) */
	MAIL_ADOPT,    /* take over a connection (session lives here) */
	MAIL_RELOAD,   /* reload config-derived limits */
	MAIL_STORED,   /* a store write committed (or failed): acknowledge */
	MAIL_PUBACKED, /* every write of a PUBLISH committed: acknowledge it */
	MAIL_REGISTRY, /* a registry change: re-admit its identities' sessions */
	MAIL_ERASE,    /* erase an identity's sessions and retained messages (erase.c) */
	MAIL_STOP,
};

struct moat_mailitem {
	struct moat_mail link;
	uint8_t kind;
	bool route;
	bool retain;
	uint8_t qos;
	struct moat_msg *msg;
	uint64_t session_id;
	uint32_t sub_id;
	struct moat_conn *conn;
	struct moat_limits *lim; /* MAIL_RELOAD */
	moat_err store_rc;
	struct moat_deferred *deferred; /* MAIL_STORED of a CONNACK/SUBACK/UNSUBACK */
	struct moat_pubtoken *tok;	/* MAIL_ROUTE/TARGET hold, MAIL_PUBACKED */
	struct moat_erase *erase;	/* MAIL_ERASE */
	struct moat_regev *regev;	/* MAIL_REGISTRY: NULL = every identity */
};

/* One registry change as the workers see it: the identities whose sessions
 * to re-admit (sorted, unique), one object shared by every worker's mail. */
struct moat_regev {
	atomic_uint refs;
	struct moat_reg_change ch;
};
void moat_regev_unref(struct moat_regev *ev);

struct moat_stats {
	atomic_uint_fast64_t msgs_in, msgs_out, bytes_in, bytes_out, dropped;
	atomic_uint_fast64_t denied; /* deliveries the receiver's ACL refused */
	/* messages posted to another worker / not posted there (no interest) */
	atomic_uint_fast64_t routes_posted, routes_skipped;
	atomic_uint_fast64_t placed; /* new sessions handed to a consumer's worker */
	atomic_int_fast64_t clients;
};

struct moat_worker {
	struct moat_broker *b;
	unsigned idx;
	pthread_t thread;
	struct moat_reactor r;
	struct moat_mailbox mb;
	struct moat_ev tick;
	void *listen_evs; /* struct listen_ev[n_listeners] (worker.c) */
	struct moat_subtrie *subs;
	atomic_uint n_subs;		/* read by other workers to skip empty ones */
	struct moat_interest *interest; /* what subs may match (other workers read) */
	/* messages in + out over the last second (placement reads it), and
	 * the counts and time it was last computed from */
	atomic_uint msg_rate;
	uint64_t rate_msgs, rate_at_ms;
	struct moat_rettree *retained;
	struct moat_conn *conns;
	size_t n_conns;
	struct moat_session *sessions;
	struct moat_conn *dirty;
	/* per-session lookup by id for targeted deliveries */
	struct moat_session **by_id;
	size_t by_id_cap, by_id_n;
	/* outgoing mail batched per peer during one loop turn */
	struct moat_mailitem **batch_head, **batch_tail;
	struct moat_stats stats;
	struct moat_limits lim;
	uint64_t now;
	/* persistence: the collector of the message being routed, and the lazy
	 * batch of delivery state changes (persist_msg.c) */
	bool pcollect, pfailed;
	struct moat_pubtoken *ptok;
	struct moat_store_batch *pbatch, *lazy;
	struct moat_msg *pmsg;
	uint64_t lazy_at;     /* last lazy flush */
	atomic_uint n_stored; /* stored sessions here: others skip the token */
	/* read scratch: input is parsed in place when nothing is buffered */
	uint8_t rbuf[16384];
	/* matching scratch */
	struct moat_match *scratch;
	size_t scratch_n, scratch_cap;
};

struct moat_match {
	struct moat_session *s;
	struct moat_sub *sub;
};

struct moat_broker {
	char dir[MOAT_MAX_PATH];
	/* lent by the daemon (mqtt/broker.h) */
	struct moat_store *store; /* durable state; NULL when not opened */
	struct moat_regtab *reg;  /* identities admitted (its own rwlock) */
	struct moat_listener *listeners;
	size_t n_listeners;
	pthread_mutex_t *ctx_lock; /* guards listeners[].ssl_ctx */
	struct moat_limits lim;	   /* for workers made at start; later via MAIL_RELOAD */
	bool durability_relaxed;
	/* [broker] unknown_devices = allow, read by every admission */
	atomic_bool unknown_allow;
	struct moat_worker *workers;
	unsigned n_workers;
	bool running; /* worker threads started */
	atomic_uint_fast64_t next_session_id;
	atomic_int connections;
	atomic_uint_fast64_t next_conn_id;
	uint64_t started;
	/* client id -> (worker, session) map (clientmap.c), keyed SipHash */
	pthread_mutex_t cmap_lock;
	struct moat_cmap_ent **cmap;
	size_t cmap_cap, cmap_n;
	unsigned char cmap_key[16]; /* random per process: crypto_shorthash_KEYBYTES */
	/* shared subscriptions */
	pthread_mutex_t share_lock;
	struct moat_subtrie *shared;
	struct share_group *share_groups;
	atomic_uint n_shared;
	atomic_uint_fast64_t next_msg_id;
	/* Security events for the audit log: set at moat_broker_new, called
	 * from any worker; the receiver aggregates (src/api). NULL = log only. */
	moat_broker_secev_fn sec_hook;
	void *sec_arg;
	/* Guard and tap stages of the publish pipeline (pipeline.h): set
	 * before moat_broker_start, read without a lock by the workers. */
	struct moat_pipeline pipeline;
};

static inline void moat_broker_secev(struct moat_broker *b, const char *action, const char *subject,
				     const char *peer, const char *detail)
{
	if (b->sec_hook != NULL)
		b->sec_hook(b->sec_arg, action, subject, peer, detail);
}

/* clientmap.c: the client id -> (worker, session) map */
struct moat_cmap_ent {
	uint64_t session_id;
	unsigned worker;
	char client_id[]; /* NUL-terminated, allocated with the entry */
};
/* Look up client_id; if absent, register it for (worker, session_id) and
 * return true. If present, *owner is the owning worker, returns false. */
bool moat_clientmap_claim(struct moat_broker *b, const char *cid, size_t len, unsigned worker,
			  uint64_t session_id, unsigned *owner, uint64_t *owner_sid);
void moat_clientmap_release(struct moat_broker *b, const char *cid, size_t len,
			    uint64_t session_id);
/* Point client_id at (worker, session_id), registering it if absent. */
void moat_clientmap_rebind(struct moat_broker *b, const char *cid, size_t len, unsigned worker,
			   uint64_t session_id);
/* Which worker and session cid is registered for (any thread); false if
 * none. */
bool moat_clientmap_lookup(struct moat_broker *b, const char *cid, size_t len, unsigned *worker,
			   uint64_t *session_id);
/* The session registered for cid (start-up restore only: the caller must
 * own the workers, as nothing runs yet). */
struct moat_session *moat_clientmap_find_session(struct moat_broker *b, const char *cid,
						 size_t len);
void moat_clientmap_free(struct moat_broker *b);

/* place.c: the worker a new session should live on, for a connection
 * that has no session yet (c->placed false); w->idx to stay. */
unsigned moat_place_worker(struct moat_conn *c, const char *cid, size_t cid_len);

/* worker.c */
moat_err moat_worker_init(struct moat_worker *w, struct moat_broker *b, unsigned idx);
void *moat_worker_main(void *arg);
void moat_worker_free(struct moat_worker *w);
void moat_worker_post(struct moat_worker *from, unsigned to, struct moat_mailitem *it);
void moat_worker_flush_mail(struct moat_worker *w);
void moat_worker_index_session(struct moat_worker *w, struct moat_session *s, bool add);
struct moat_session *moat_worker_find_session(struct moat_worker *w, uint64_t id);

/* conn.c */
void moat_conn_accept(struct moat_worker *w, struct moat_listener *l, int fd, const char *addr);
void moat_conn_adopt(struct moat_worker *w, struct moat_conn *c);
void moat_conn_close(struct moat_conn *c, const char *why);
/* Queue an encoded packet; returns false if it could not be buffered. */
bool moat_conn_send(struct moat_conn *c, const struct mqtt_packet *p);
void moat_conn_mark_dirty(struct moat_conn *c);
void moat_conn_flush(struct moat_conn *c);
/* Send a v5 DISCONNECT with reason (v3: nothing) and close after flush. */
void moat_conn_disconnect(struct moat_conn *c, uint8_t reason, const char *why);
void moat_conn_tick(struct moat_conn *c, uint64_t now);
/* Resume a held connection: process buffered input and read again. */
void moat_conn_resume(struct moat_conn *c);

/* handle_*.c: one handler per packet type */
void moat_handle_packet(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_connect(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_publish(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_puback(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_pubrec(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_pubrel(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_pubcomp(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_subscribe(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_unsubscribe(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_pingreq(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_disconnect(struct moat_conn *c, const struct mqtt_packet *p);
void moat_handle_auth(struct moat_conn *c, const struct mqtt_packet *p);
/* A store write this connection's PUBLISH waited for has finished. */
void moat_handle_stored(struct moat_conn *c, uint16_t pid, uint8_t qos, moat_err rc);

/* session.c */
struct moat_session *moat_session_new(struct moat_worker *w, const char *cid, size_t len);
void moat_session_free(struct moat_session *s);
/* Clean start on an existing session: drop subscriptions, messages, will. */
void moat_session_reset(struct moat_session *s);
/* Deliver to a local session (online or offline). */
void moat_session_deliver(struct moat_session *s, struct moat_msg *m, uint8_t qos, bool retain,
			  const uint32_t *sub_ids, uint8_t n_sub_ids);
/* Replace the session's ACL (a new reference is taken; all: no restriction). */
void moat_session_set_acl(struct moat_session *s, struct moat_acl *acl, bool all);
/* May the session receive m now (its current ACL)? Checked when a message is
 * queued and again when it is sent. */
bool moat_session_may_receive(const struct moat_session *s, const struct moat_msg *m);
/* Drop the queued and in-flight messages the current ACL denies (a released
 * QoS 2 flow, past PUBREC, carries no payload and completes). Returns how
 * many. */
size_t moat_session_drop_denied(struct moat_session *s);
/* Send what the window allows (after connect or an ack). */
void moat_session_pump(struct moat_session *s);
/* Retransmit in-flight messages after a reconnect. */
void moat_session_resend(struct moat_session *s);
struct moat_delivery *moat_session_find_inflight(struct moat_session *s, uint16_t pid);
void moat_session_complete(struct moat_session *s, struct moat_delivery *d);
void moat_session_detach(struct moat_session *s); /* connection gone */
void moat_session_end(struct moat_session *s);	  /* expiry / clean start */
void moat_session_publish_will(struct moat_session *s);
void moat_session_tick(struct moat_session *s, uint64_t now);
/* A subscription record from a SUBSCRIBE entry (or a stored one). */
struct moat_sub *moat_sub_new(const struct mqtt_sub_entry *e, uint32_t sub_id);
void moat_sub_free(struct moat_sub *sub);
moat_err moat_session_add_sub(struct moat_session *s, struct moat_sub *sub, bool *existed);
bool moat_session_remove_sub(struct moat_session *s, const char *filter, size_t len);

/* route.c */
/* Route m; t (may be NULL) collects the holds of every write it causes. */
void moat_route(struct moat_worker *w, struct moat_msg *m, struct moat_pubtoken *t);
void moat_route_local(struct moat_worker *w, struct moat_msg *m, bool route, bool retain);
void moat_route_retained_to(struct moat_session *s, struct moat_sub *sub);
void moat_route_shared(struct moat_worker *w, struct moat_msg *m);
/* Shared subscription membership: global, under share_lock. */
moat_err moat_share_add(struct moat_broker *b, struct moat_sub *sub);
void moat_share_remove(struct moat_broker *b, struct moat_sub *sub);
void moat_share_free_all(struct moat_broker *b);

/* policy.c */
bool moat_policy_may_publish(const struct moat_conn *c, const char *topic, size_t len);
/* Admission of identity under the current identity table: true with a
 * compiled ACL (a new reference), or false with why. */
bool moat_broker_admit(struct moat_broker *b, const char *identity, const char *serial,
		       struct moat_acl **acl, const char **why);
/* Re-admit the sessions of ev's identities (ev NULL: every session). */
void moat_worker_registry(struct moat_worker *w, const struct moat_regev *ev);
/* Remove the session's subscriptions acl denies (logged; stored sessions
 * also lose them in the store). */
void moat_policy_prune(struct moat_session *s, const struct moat_acl *acl);
bool moat_policy_may_subscribe(const struct moat_conn *c, const char *filter, size_t len);

/* erase.c: decommissioning */
struct moat_erase;
void moat_worker_erase(struct moat_worker *w, struct moat_erase *e);
/* End a session now without a will, deleting its stored state; a live
 * connection is closed with 0x98 and why. */
void moat_session_erase(struct moat_session *s, const char *why);
/* Drop w's replicas of the retained messages under d/<id>/; returns how
 * many. */
size_t moat_worker_erase_retained(struct moat_worker *w, const char *id);
/* Drop w's replicas of the retained messages matching filter for which pred
 * says true; returns how many. */
size_t moat_worker_drop_retained(struct moat_worker *w, const char *filter,
				 bool (*pred)(const char *topic, size_t len, void *ctx), void *ctx);

/* persist.c: durable retained messages */
enum moat_persist {
	MOAT_PERSIST_NONE,    /* nothing to wait for: acknowledge now */
	MOAT_PERSIST_PENDING, /* MAIL_STORED will say when to acknowledge */
	MOAT_PERSIST_FAILED,  /* could not be stored: refuse the acknowledgement */
};
/* Add a retained message's write (or its deletion) to w's collector, before
 * it replaces the old one in w's tree. */
enum moat_persist moat_persist_retained(struct moat_worker *w, struct moat_msg *m);
/* Load retained messages into every worker's tree (before they start). */
moat_err moat_persist_restore(struct moat_broker *b, char *err, size_t errlen);
/* A message's forwardable v5 properties as a blob, and back. */
moat_err moat_persist_props(const struct moat_msg *m, struct moat_buf *out);
struct moat_val;
moat_err moat_persist_decode_props(const struct moat_val *blob, struct mqtt_packet *p);

/* persist_session.c: durable sessions and subscriptions */
/* Write the session row if its expiry is non-zero (delete it if it became
 * zero). connected: no expiry clock yet. fresh: clean start, drop the old
 * row and its subscriptions first. connack: hold this CONNACK (and, with
 * present, the retransmissions after it) until the write committed; the
 * caller then holds the connection (c->held). */
enum moat_persist moat_persist_session(struct moat_session *s, bool connected, bool fresh,
				       const struct mqtt_packet *connack, bool present);
void moat_persist_session_del(struct moat_session *s);
/* Store subscription changes of a stored session and hold its SUBACK or
 * UNSUBACK (ack) until they committed; retained: subscriptions whose
 * retained messages follow the SUBACK. */
enum moat_persist moat_persist_subs(struct moat_session *s, struct moat_sub *const *put,
				    size_t n_put, const struct mqtt_sub_list *del, uint8_t version,
				    const struct mqtt_packet *ack, struct moat_sub *const *retained,
				    size_t n_retained);
/* MAIL_STORED with a deferred packet: send it (or disconnect on failure). */
void moat_persist_deferred_done(struct moat_worker *w, struct moat_mailitem *it);
void moat_persist_deferred_free(struct moat_deferred *d);
moat_err moat_persist_restore_sessions(struct moat_broker *b, char *err, size_t errlen);
void moat_session_set_stored(struct moat_session *s, bool stored);

/* persist_msg.c: durable deliveries; the acknowledgement token */
struct moat_pubtoken *moat_pubtoken_new(struct moat_conn *c, uint16_t pid, uint8_t qos);
void moat_pubtoken_hold(struct moat_pubtoken *t);
/* Drop a hold; w is the calling worker (NULL off the workers). */
void moat_pubtoken_release(struct moat_worker *w, struct moat_pubtoken *t);
void moat_pubtoken_mail(struct moat_worker *w, struct moat_pubtoken *t);
/* Shutdown: drop a hold without acknowledging anything. */
void moat_pubtoken_drop(struct moat_pubtoken *t);
/* Collect the writes of routing one message (t may be NULL). */
void moat_persist_begin(struct moat_worker *w, struct moat_pubtoken *t);
struct moat_store_batch *moat_persist_batch(struct moat_worker *w);
void moat_persist_fail(struct moat_worker *w);
void moat_persist_end(struct moat_worker *w);
/* Drop what was collected (nothing is written, no hold is taken). */
void moat_persist_abort(struct moat_worker *w);
void moat_persist_delivery_put(struct moat_session *s, const struct moat_delivery *d);
void moat_persist_delivery_state(struct moat_session *s, const struct moat_delivery *d);
void moat_persist_delivery_done(struct moat_session *s, const struct moat_delivery *d);
void moat_persist_qos2(struct moat_session *s, uint16_t pid, bool add);
/* Submit the lazy batch if MOAT_STORE_LAZY_MS passed since the last (or
 * force). */
void moat_persist_flush(struct moat_worker *w, bool force);
void moat_persist_sweep(struct moat_worker *w);
moat_err moat_persist_restore_messages(struct moat_broker *b, char *err, size_t errlen);
/* session.c: restore helpers */
moat_err moat_session_restore_delivery(struct moat_session *s, const struct moat_delivery *d);
moat_err moat_session_restore_qos2(struct moat_session *s, uint16_t pid);

/* sys.c */
/* Publish the statistics. route=false only refreshes this worker's retained
 * copies (for a new $SYS subscriber on this worker). */
void moat_sys_publish(struct moat_worker *w, bool route);

#endif
