/*
 * Every limit Moat enforces lives here, each with the reason for its value.
 * Configurable limits have a DEFAULT and a hard MIN/MAX the config parser
 * enforces; the static asserts at the bottom keep the bounds coherent.
 */
#ifndef MOAT_LIMITS_H
#define MOAT_LIMITS_H

/* MQTT's variable byte integer tops out at 268,435,455 (spec 1.5.5). */
#define MOAT_MQTT_MAX_REMAINING 268435455u

/* Default largest packet a client may send us: big enough for firmware
 * chunks and JSON batches, small enough that 10k connections cannot pin GBs. */
#define MOAT_MAX_PACKET_SIZE_DEFAULT (256u * 1024u)
#define MOAT_MAX_PACKET_SIZE_MIN 1024u
#define MOAT_MAX_PACKET_SIZE_MAX (16u * 1024u * 1024u)

/* Before CONNECT is accepted the peer is unauthenticated at the MQTT layer:
 * cap the first packet harder (STYLE.md item 4). A CONNECT carries at most a
 * client id, a will and credentials. */
#define MOAT_MAX_CONNECT_PACKET (64u * 1024u)

/* Topic names and filters: the protocol allows 65535 bytes; real fleets use
 * well under 256. 1024 leaves room while bounding trie work per publish. */
#define MOAT_MAX_TOPIC_LEN 1024u
/* Levels per topic bound the recursion depth of trie matching. */
#define MOAT_MAX_TOPIC_LEVELS 32u

/* Client ids: device ids are 1-64 chars; services and test suites use longer
 * generated ids, so allow up to 128. */
#define MOAT_MAX_CLIENT_ID_LEN 128u
#define MOAT_DEVICE_ID_MAX 64u
/* Ids one `moat device import` registers (one transaction, one audit
 * entry): a manufacturer's batch; bigger lists are split into files. */
#define MOAT_REG_IMPORT_MAX_IDS 100000u

/* Keepalive the broker will accept before overriding (seconds). */
#define MOAT_MAX_KEEPALIVE_DEFAULT 300u
#define MOAT_MAX_KEEPALIVE_MIN 10u
#define MOAT_MAX_KEEPALIVE_MAX 65535u

/* How many QoS 1/2 PUBLISH a client may have unacknowledged towards us
 * (our Receive Maximum). Bounds the QoS 2 packet-id table per session. */
#define MOAT_RECEIVE_MAXIMUM_DEFAULT 64u
#define MOAT_RECEIVE_MAXIMUM_MIN 1u
#define MOAT_RECEIVE_MAXIMUM_MAX 65535u

/* How many QoS 1/2 messages we keep in flight to one client. */
#define MOAT_MAX_INFLIGHT_DEFAULT 32u
#define MOAT_MAX_INFLIGHT_MIN 1u
#define MOAT_MAX_INFLIGHT_MAX 65535u

/* Messages queued for one session beyond the inflight window (offline or
 * slow). Beyond this QoS 0 is dropped first, then new QoS>0 is dropped. */
#define MOAT_MAX_QUEUED_DEFAULT 1000u
#define MOAT_MAX_QUEUED_MIN 0u
#define MOAT_MAX_QUEUED_MAX 1000000u

/* Connections per daemon. Each idle mTLS connection costs ~30 KB (mostly
 * OpenSSL); 100k connections is ~3 GiB. */
#define MOAT_MAX_CONNECTIONS_DEFAULT 100000u
#define MOAT_MAX_CONNECTIONS_MIN 1u
#define MOAT_MAX_CONNECTIONS_MAX 1000000u

/* Worker threads; 0 in the config means one per core. */
#define MOAT_MAX_WORKERS 64u

/* Listener sections in moat.conf. */
#define MOAT_MAX_LISTENERS 16u
#define MOAT_MAX_LISTENER_NAME 32u

/* Topic aliases we accept from a client (our Topic Alias Maximum). */
#define MOAT_TOPIC_ALIAS_MAX 64u
/* Topic aliases we assign towards a client, at most (also capped by theirs). */
#define MOAT_TOPIC_ALIAS_OUT_MAX 64u

/* Subscriptions per session: bounds trie memory per client. */
#define MOAT_MAX_SUBSCRIPTIONS 256u

/* A worker's interest filter (mqtt/interest.h): 2^16 counters (256 KiB per
 * worker) over topic prefixes of up to 3 levels. Other workers read it to
 * post a message only where it may match: a false positive costs one
 * wasted cross-worker wake-up, never a lost message. */
#define MOAT_INTEREST_SLOTS_LOG2 16u
#define MOAT_INTEREST_LEVELS 3u

/* User properties per packet we will forward; more is a protocol nuisance
 * that only costs us memory. */
#define MOAT_MAX_USER_PROPERTIES 64u

/* Session expiry we grant at most (seconds): one week. */
#define MOAT_MAX_SESSION_EXPIRY (7u * 24u * 3600u)

/* A CONNECT must arrive this soon after the TCP/TLS connection opens
 * (seconds); slow handshakes are a cheap DoS. */
#define MOAT_CONNECT_TIMEOUT_S 10u

/* Output bytes buffered for one connection before we stop reading from it
 * and drop QoS 0 to it: one slow reader must not pin memory. */
#define MOAT_MAX_OUTBUF (4u * 1024u * 1024u)

/* Config file: longest line we accept. */
#define MOAT_MAX_CONFIG_LINE 1024u

/* Path lengths inside the data directory. */
#define MOAT_MAX_PATH 4096u

/* $SYS publish interval (seconds). */
#define MOAT_SYS_INTERVAL_S 10u

/* Storage (src/store/). */
/* Relaxed durability: the writer commits at most this often, so a batch
 * waits at most this long (plus the transaction) before it is committed.
 * The maximum bounds what a relaxed-mode process crash can lose when the
 * broker acknowledges before commit; 1 s is the promise docs/storage.md
 * makes. */
#define MOAT_STORE_FLUSH_MS_DEFAULT 100u
/* How often expired queued messages and orphaned messages are deleted from
 * the store (seconds): expiry is enforced in memory at once; this only
 * returns the disk space. */
#define MOAT_STORE_SWEEP_S 60u
/* Delivery state changes (sent, PUBREC, completed) are written at most this
 * often per worker (ms): nobody waits for them, and after a crash a lost
 * change only means a message is sent again (QoS 1 allows it; QoS 2 keeps
 * its packet id). The tick flushes them when the worker is idle. */
#define MOAT_STORE_LAZY_MS 100u
/* Guard or tap stages of the publish pipeline, each (src/mqtt/pipeline.h):
 * a handful of modules plug in there, not an open-ended list. */
#define MOAT_PIPELINE_MAX_STAGES 8u
/* How long decommissioning waits for the workers to erase an identity's
 * sessions and for their writes to commit (ms). Each worker answers within
 * one loop turn plus a group commit; the bound only keeps a stuck store
 * from hanging the API thread (the request then fails with 503). */
#define MOAT_ERASE_TIMEOUT_MS 10000u
#define MOAT_STORE_FLUSH_MS_MIN 1u
#define MOAT_STORE_FLUSH_MS_MAX 1000u
/* Strict durability's commit window ([broker] commit_window_us): when
 * batches arrive closer together than the window, the writer waits up to
 * this long after the first batch of a group for others to join it, so one
 * fsync covers several acknowledgements; sparse traffic commits at once.
 * The default's effect (fsyncs/s, CPU per message, p99) is measured in
 * bench/README.md; 0 turns grouping by waiting off. */
#define MOAT_STORE_COMMIT_WINDOW_US_DEFAULT 1000u
#define MOAT_STORE_COMMIT_WINDOW_US_MAX 20000u
/* Placement at CONNECT (mqtt/place.c): a new session goes to the worker
 * whose subscribers may receive the device's messages only while that
 * worker moved fewer messages (in + out) than this in the last second; a
 * worker busier than that with messages takes no more, so heavy traffic
 * stays spread over the workers. Messages, not CPU time: a reconnect storm
 * keeps every worker busy with handshakes for seconds, but the placement
 * lasts as long as the connection. One worker moves several hundred
 * thousand messages a second (bench/README.md), so this leaves headroom. */
#define MOAT_PLACE_MSG_RATE_MAX 50000u

/* A group commits early once this many batches joined it. */
#define MOAT_STORE_GROUP_MAX 256u
/* How long a write waits for a lock held by another connection (an
 * operator's sqlite3 shell, a backup) before the batch fails MOAT_E_BUSY.
 * Long enough for a backup step, short enough that acknowledgements stall
 * visibly rather than forever. */
#define MOAT_STORE_BUSY_MS_DEFAULT 5000u
#define MOAT_STORE_BUSY_MS_MIN 10u
#define MOAT_STORE_BUSY_MS_MAX 60000u
/* Batches submitted but not yet committed, and their bytes: the memory a
 * stalled disk may pin before submitters are told MOAT_E_LIMIT (and stop
 * acknowledging). */
#define MOAT_STORE_MAX_PENDING 65536u
#define MOAT_STORE_MAX_PENDING_BYTES (256u * 1024u * 1024u)
/* Statements in one batch: a message queued for many offline sessions is
 * one batch of 1 + N statements; `moat device import` is one batch of
 * 2 per id plus the audit entry and its checkpoint. */
#define MOAT_STORE_MAX_BATCH_OPS 250000u
/* Parameters of one statement ($1..$n); the widest (a session row) has 12. */
#define MOAT_STORE_MAX_PARAMS 16u
/* Modules registered with one store (each owns its tables and statements;
 * moat has five), and statements per module. */
#define MOAT_STORE_MAX_MODULES 16u
#define MOAT_STORE_MAX_MODULE_STMTS 1024u
/* A module's name (its key in the module_versions table). */
#define MOAT_STORE_MAX_MODULE_NAME 32u
/* The WAL is truncated to this size after a checkpoint so one burst does
 * not leave a huge file behind. */
#define MOAT_STORE_WAL_KEEP_BYTES (64u * 1024u * 1024u)

/* Operators and authentication (src/auth/). */
/* Shortest password in code points: NIST SP 800-63B asks for at least 8;
 * an operator account controls the whole fleet, so we ask for a passphrase. */
#define MOAT_PASSWORD_MIN_CHARS 12u
/* Longest password in bytes: room for a long passphrase, and a bound on
 * what an unauthenticated login makes us copy and hash. */
#define MOAT_PASSWORD_MAX_BYTES 128u
/* Argon2id cost: libsodium's INTERACTIVE level (2 passes over 64 MiB,
 * ~0.1-0.3 s). Enough to make offline guessing expensive while a login
 * stays interactive; logins are throttled, so the memory is bounded by the
 * number of concurrent login handlers. */
#define MOAT_PASSWORD_OPSLIMIT 2u
#define MOAT_PASSWORD_MEMLIMIT (64u * 1024u * 1024u)
/* An encoded Argon2id hash ("$argon2id$v=19$m=...") with its NUL: this is
 * libsodium's crypto_pwhash_STRBYTES (checked in password.c). */
#define MOAT_PASSWORD_HASH_MAX 128u
/* A password must not contain the username; shorter usernames are checked
 * for equality only, else a user "al" could not use any word with "al". */
#define MOAT_PASSWORD_USERNAME_MATCH_MIN 4u
/* TOTP (RFC 6238): new secrets are 160 bits, RFC 4226's recommendation and
 * the length authenticator apps expect for SHA-1. We accept 128 bits (RFC
 * 4226's minimum) to 512 bits when verifying. */
#define MOAT_TOTP_SECRET_LEN 20u
#define MOAT_TOTP_SECRET_MIN 16u
#define MOAT_TOTP_SECRET_MAX 64u
/* The parameters every authenticator app supports (and the only ones many
 * do): 30 s steps, 6 digits. */
#define MOAT_TOTP_STEP_S 30u
#define MOAT_TOTP_DIGITS 6u
/* Steps accepted either side of now: +-30 s absorbs clock drift and the
 * time to type the code; each extra step doubles an online guesser's odds. */
#define MOAT_TOTP_WINDOW 1u
/* Random bytes in an API or setup token: 256 bits, beyond guessing. */
#define MOAT_SECRET_TOKEN_BYTES 32u
/* A recovery code "xxxxx-xxxxx": 10 characters from a 31-letter alphabet
 * (~49.5 bits), enough for a single-use code checked behind the throttle. */
#define MOAT_RECOVERY_CODE_LEN 11u
/* Login throttling: a typo or five is free; after that each failure doubles
 * the wait from 1 s up to 15 min, so an online guesser gets ~18 tries in the
 * first hour and 4 an hour after that per key, while a user who fat-fingers
 * waits seconds. */
#define MOAT_THROTTLE_FREE_FAILURES 5u
#define MOAT_THROTTLE_BASE_WAIT_MS 1000u
#define MOAT_THROTTLE_MAX_WAIT_MS (15u * 60u * 1000u)
/* A key with no failure for an hour starts again from zero. */
#define MOAT_THROTTLE_FORGET_MS (60u * 60u * 1000u)
/* One account, whatever the addresses (docs/security.md "Login
 * throttling"): NIST SP 800-63B 5.2.2 allows at most 100 consecutive failed
 * attempts on an account. The first 50 are free across all addresses (a
 * single address cannot spend them quickly: its own key above throttles it
 * after five); after that every address waits 1 s, 2 s, ... up to 15 min
 * between attempts on the account, so it reaches 100 failures only after
 * hours. It is forgotten after a day without failure or on a success. */
#define MOAT_THROTTLE_ACCOUNT_FREE_FAILURES 50u
#define MOAT_THROTTLE_ACCOUNT_FORGET_MS (24u * 60u * 60u * 1000u)
/* Throttle keys (a username, an address) longer than this are replaced by
 * their SHA-256 so an entry's size is fixed. */
#define MOAT_THROTTLE_KEY_MAX 128u
/* Keys one throttle table tracks: each costs ~170 bytes, so 10k is ~2 MiB.
 * When full, the key whose last failure is oldest is forgotten. */
#define MOAT_THROTTLE_KEYS_DEFAULT 10000u
#define MOAT_THROTTLE_KEYS_MIN 1u
#define MOAT_THROTTLE_KEYS_MAX 1000000u

/* HTTP (src/http/): the management API. Operators are few; every bound is
 * far above what the console and CLI send and far below what would let an
 * unauthenticated peer pin memory or a connection slot. */
/* Request line target (path and query). 414 beyond. */
#define MOAT_HTTP_MAX_TARGET 4096u
/* Header fields per request, and the bytes of the request line plus all
 * headers. 431 beyond. */
#define MOAT_HTTP_MAX_HEADERS 64u
#define MOAT_HTTP_MAX_HEAD (16u * 1024u)
/* Request body: the default per route, and the most any route may allow.
 * The API takes small JSON documents. 413 beyond. */
#define MOAT_HTTP_BODY_DEFAULT (16u * 1024u)
#define MOAT_HTTP_BODY_MAX (1024u * 1024u)
/* A body that streams to its handler piece by piece (firmware artifacts)
 * is never held whole: its route's limit may be up to this. */
#define MOAT_HTTP_STREAM_MAX (8ull * 1024u * 1024u * 1024u)
/* Slowloris: a request's head must be complete this long after its first
 * byte (or after the connection opened), its body this long after the head;
 * an idle keep-alive connection is closed after the third. */
#define MOAT_HTTP_HEADER_TIMEOUT_MS 10000u
#define MOAT_HTTP_BODY_TIMEOUT_MS 30000u
#define MOAT_HTTP_IDLE_TIMEOUT_MS 60000u
/* Connections to the management listeners, in all and per client address. */
#define MOAT_HTTP_MAX_CONNS 512u
#define MOAT_HTTP_MAX_CONNS_PER_ADDR 16u
/* After the last answer on a connection, how long we keep draining what
 * the client still sends (a refused body) before closing: closing on unread
 * data sends a reset that can destroy the answer in flight. */
#define MOAT_HTTP_LINGER_MS 2000u
/* Requests served on one connection before it is closed (so a pipelining
 * client cannot hold a connection forever). */
#define MOAT_HTTP_MAX_REQUESTS_PER_CONN 1000u
/* Response bytes queued per connection before we stop reading requests. */
#define MOAT_HTTP_MAX_OUT (4u * 1024u * 1024u)
/* WebSocket (RFC 6455) on the HTTPS listeners: the largest message a
 * client may send (the console sends small commands; 1009 beyond), the
 * bytes queued towards one client before a send is refused (a reader that
 * does not keep up is dropped rather than buffered), a ping when the client
 * has been silent this long, and the close when it stays silent. */
#define MOAT_HTTP_WS_MAX_MSG (64u * 1024u)
#define MOAT_HTTP_WS_MAX_QUEUE (1024u * 1024u)
#define MOAT_HTTP_WS_PING_MS 30000u
#define MOAT_HTTP_WS_IDLE_MS 75000u
/* Route parameters: how many a pattern may have, the bytes of one {param}
 * (a single segment: names and ids are far shorter) and of a trailing
 * {param*} (several segments: a file under a static directory). 404 when
 * a path's parameter is longer. */
#define MOAT_HTTP_MAX_PARAMS 6u
#define MOAT_HTTP_PARAM_MAX 128u
#define MOAT_HTTP_PARAM_REST_MAX 256u

/* Management API sessions (src/api/): an operator who walks away is logged
 * out after the idle time; no session outlives a working day. */
#define MOAT_API_SESSION_IDLE_MS (30u * 60u * 1000u)
#define MOAT_API_SESSION_ABSOLUTE_MS (12u * 3600u * 1000u)
/* A session's last_seen is written at most this often (one write per
 * request would be a write per click). */
#define MOAT_API_SESSION_TOUCH_MS 30000u
/* API tokens: default and longest lifetime (days). */
#define MOAT_API_TOKEN_DAYS_DEFAULT 90u
#define MOAT_API_TOKEN_DAYS_MAX 365u
/* The setup token `moat init` prints is valid this long, once. */
#define MOAT_SETUP_TOKEN_MS (3600u * 1000u)
/* Broker security events (refused handshakes, policy denials) are summed
 * per (action, subject) over this window and written as one audit entry
 * each; at most API_SECEV_MAX subjects per window, the rest are counted. */
#define MOAT_API_SECEV_WINDOW_MS 10000u
/* Recovery codes issued with a TOTP enrolment. */
#define MOAT_RECOVERY_CODES 10u

/* Registry and policies (src/registry/). */
/* A rule's filter template as stored and sent over the API, in bytes:
 * fleets name topics in well under 100 bytes; 256 leaves room for a few
 * ${device}/${group} expansions within MOAT_MAX_TOPIC_LEN. */
#define MOAT_RULE_FILTER_MAX 256u
/* Rules in one policy: every rule is evaluated on every PUBLISH of every
 * device the policy reaches, so the bound is a bound on hot-path work. */
#define MOAT_POLICY_MAX_RULES 64u
/* Policies one identity compiles (its groups' plus its own): with the rule
 * cap, at most 2048 rules per session; beyond that fleets should merge
 * groups, not pay per message. */
#define MOAT_ACL_MAX_SOURCES 32u
_Static_assert(MOAT_RULE_FILTER_MAX <= MOAT_MAX_TOPIC_LEN, "a rule template fits a topic");
_Static_assert(MOAT_POLICY_MAX_RULES >= 3u && MOAT_ACL_MAX_SOURCES >= 2u,
	       "room for device-default (3 rules) plus one more policy");

/* The key process and enrollment (src/pki/csr.c, ca_proc.c, ca_msg.c). */
/* A DER certificate request: a P-256 request is ~300 bytes and an RSA-8192
 * one ~1.3 KiB; 16 KiB leaves room for attributes without letting a peer
 * make us parse megabytes of ASN.1. */
#define MOAT_CSR_MAX (16u * 1024u)
/* An EST simpleenroll body: base64 of MOAT_CSR_MAX (4/3), CRLF every 64
 * characters and a PEM wrapper fit in 32 KiB. */
#define MOAT_CSR_BODY_MAX (32u * 1024u)
/* RSA request keys: 3072 bits is NIST's floor beyond 2030; beyond 8192 bits
 * a key only costs us verification time. */
#define MOAT_CSR_RSA_MIN_BITS 3072u
#define MOAT_CSR_RSA_MAX_BITS 8192u
/* Device certificates issued by enrollment (days; `[broker] cert_days`):
 * short-lived, 90 by default, so a device renews (simplereenroll) while its
 * key is fresh and a lost device's certificate dies on its own; at most
 * 825, the longest lifetime common TLS stacks accept for a leaf. */
#define MOAT_CERT_DAYS_DEFAULT 90u
#define MOAT_CERT_DAYS_MIN 1u
#define MOAT_CERT_DAYS_MAX 825u
/* After EST re-enrollment the old certificate stays valid this long (s), so
 * a device can switch (reconnect) without a gap; then it is revoked. */
#define MOAT_REENROLL_GRACE_S (24u * 3600u)
/* notBefore is backdated by this much so a device whose clock runs a little
 * behind accepts a certificate issued a moment ago; the CA refuses more than
 * the MAX (a backdated certificate would predate its own request). */
#define MOAT_CERT_SKEW_S 300u
#define MOAT_CERT_SKEW_MAX_S 86400u
/* The server certificate lives at most 397 days from its (backdated)
 * notBefore to its notAfter: the CA/Browser Forum's cap for TLS server
 * certificates, which scanners and some clients enforce. */
#define MOAT_SERVER_CERT_LIFETIME_S (397u * 86400u)
/* `moat serve` renews it when less than a third of that, or less than 30
 * days, is left (checked at start and then every MOAT_SERVER_CERT_CHECK_S),
 * so an operator has months to notice a renewal that keeps failing. */
#define MOAT_SERVER_CERT_RENEW_MIN_S (30u * 86400u)
#define MOAT_SERVER_CERT_CHECK_S 86400u
/* One CA request or answer (a SOCK_SEQPACKET message). It must fit Linux's
 * default AF_UNIX send buffer (net.core.wmem_default, 212992 bytes, less
 * overhead) so no sysctl is needed; the largest message is a CRL. */
#define MOAT_CA_MSG_MAX (192u * 1024u)
/* Revoked serials in one CRL. The list is never truncated: the parent
 * streams it to the CA in messages of MOAT_CRL_CHUNK_ENTRIES and fetches the
 * signed CRL back in parts of MOAT_CRL_PART_MAX bytes. Only unexpired
 * revoked certificates are listed, so a fleet of 4,100 devices that all
 * re-enroll (each superseded certificate revoked) lists about 4,100; 128 Ki
 * entries serve fleets thirty times that and bound the key process's memory
 * (about 40 MB of OpenSSL objects) and a CRL (at most 42 bytes an entry:
 * 5.5 MB) that relying parties download. */
#define MOAT_CRL_MAX_ENTRIES (128u * 1024u)
/* Entries in one CRL or CRL_ADD message: at most 29 bytes each (a length,
 * 20 serial octets, a u64 time), so 4096 fit MOAT_CA_MSG_MAX. */
#define MOAT_CRL_CHUNK_ENTRIES 4096u
/* A signed CRL in DER: every entry at most 42 bytes, plus the envelope. */
#define MOAT_CRL_DER_MAX (MOAT_CRL_MAX_ENTRIES * 42u + 8192u)
/* Bytes of a signed CRL in one answer. */
#define MOAT_CRL_PART_MAX (128u * 1024u)
/* The CRL's URL that issued certificates name ([broker] crl_url): an
 * http(s) URL of printable ASCII; 255 bytes is plenty for a host name, a
 * port and a path, and keeps every certificate small. */
#define MOAT_CRL_URL_MAX 255u
/* A client certificate's public key (SubjectPublicKeyInfo DER) kept for
 * the request: an RSA-8192 key is about 1.1 KiB. */
#define MOAT_HTTP_PEER_KEY_MAX 2048u
/* Device-id patterns a manufacturer CA may enroll (an exact id, or a prefix
 * ending in '*'): a factory's product lines, not a device list. */
#define MOAT_MCA_PATTERNS_MAX 64u
/* The API re-signs its cached CRL at least this often (s), besides after
 * every registry change: expired entries drop out and revocations written
 * offline appear within the hour, at one signature an hour. */
#define MOAT_CRL_CACHE_MAX_S 3600u
/* The nextUpdate the API gives its CRL (s): a day, well past the cache age. */
#define MOAT_CRL_NEXT_UPDATE_S 86400u
/* How far ahead a CRL's nextUpdate may be (s): a week bounds how long a
 * relying party may keep trusting a stale list. */
#define MOAT_CRL_NEXT_UPDATE_MAX_S (7u * 24u * 3600u)
/* The key process's other slots (pki/ca.h): a SIGN payload and its
 * signature, a secret it seals (a TOTP seed is 20 bytes; a later
 * key-encryption key 32) and the associated data that binds it to its row
 * and column. Small on purpose: the key process signs digests and seals
 * keys, never documents. */
#define MOAT_KEY_SIGN_MAX 1024u
#define MOAT_KEY_SIG_MAX 128u
#define MOAT_KEY_SEAL_MAX 256u
#define MOAT_KEY_AD_MAX 256u
/* A sealed blob is this much longer than its plaintext: a 4-byte format
 * tag, XChaCha20-Poly1305's 24-byte nonce and 16-byte tag. */
#define MOAT_KEY_SEAL_OVERHEAD 44u
/* A stored TOTP seed: sealed, or (before the start-up migration) plain. */
#define MOAT_TOTP_STORED_MAX (MOAT_TOTP_SECRET_MAX + MOAT_KEY_SEAL_OVERHEAD)
/* TLS session tickets (src/tls/tickets.c). A ticket is good for a day
 * (SSL_CTX_set_timeout), and never past its client certificate's notAfter:
 * a reconnect storm after a restart or an outage of up to a day resumes
 * instead of paying full mutual-TLS handshakes, while a stolen ticket is of
 * use for a day at most (revocation still cuts it at CONNECT). */
#define MOAT_TLS_TICKET_LIFETIME_S (24u * 3600u)
/* A new ticket-encryption key every 12 hours: a key that leaks opens at most
 * the tickets of its 12 hours of use (plus their lifetime). */
#define MOAT_TLS_TICKET_ROTATE_S (12u * 3600u)
/* Keys kept: the current one, which seals new tickets, and the previous ones
 * that may still open a live ticket (tickets they open are renewed under the
 * current key). 3 covers a full lifetime after a key stops being current. */
#define MOAT_TLS_TICKET_KEYS 3u
/* The sealed key file's plaintext: "MTK1", u64 time the current key became
 * current, u8 count, then per key a 16-byte name, a 32-byte AES-256 key and a
 * 32-byte HMAC-SHA256 key. */
#define MOAT_TLS_TICKET_KEY_LEN 80u
#define MOAT_TLS_TICKETS_BLOB_MAX (13u + MOAT_TLS_TICKET_KEYS * MOAT_TLS_TICKET_KEY_LEN)
/* A request to the key process must be answered this soon (ms), or the CA is
 * treated as dead: signing takes well under a millisecond. */
#define MOAT_CA_TIMEOUT_MS 5000u
/* moat_ca_stop waits this long for the key process to exit before SIGKILL. */
#define MOAT_CA_STOP_MS 2000u
_Static_assert(((MOAT_CSR_MAX + 2u) / 3u) * 4u * 66u / 64u + 128u <= MOAT_CSR_BODY_MAX,
	       "a base64 or PEM request of MOAT_CSR_MAX bytes fits a body");
_Static_assert(MOAT_CSR_RSA_MIN_BITS >= 3072u && MOAT_CSR_RSA_MIN_BITS <= MOAT_CSR_RSA_MAX_BITS,
	       "RSA request key bounds");
_Static_assert(MOAT_CERT_DAYS_DEFAULT >= 1u && MOAT_CERT_DAYS_DEFAULT <= MOAT_CERT_DAYS_MAX,
	       "certificate lifetime bounds");
_Static_assert(MOAT_CERT_SKEW_S <= MOAT_CERT_SKEW_MAX_S, "notBefore skew bounds");
_Static_assert(MOAT_SERVER_CERT_LIFETIME_S <= 397u * 86400u &&
		   MOAT_SERVER_CERT_RENEW_MIN_S < MOAT_SERVER_CERT_LIFETIME_S / 2u,
	       "server certificate lifetime and renewal bounds");
_Static_assert(MOAT_CSR_MAX + 1024u <= MOAT_CA_MSG_MAX, "a signing request fits a CA message");
_Static_assert(MOAT_CRL_CHUNK_ENTRIES * 29u + 64u <= MOAT_CA_MSG_MAX,
	       "a chunk of CRL entries fits a CA message");
_Static_assert(MOAT_CRL_PART_MAX + 64u <= MOAT_CA_MSG_MAX, "a CRL part fits a CA message");
_Static_assert(MOAT_CRL_CACHE_MAX_S < MOAT_CRL_NEXT_UPDATE_S &&
		   MOAT_CRL_NEXT_UPDATE_S <= MOAT_CRL_NEXT_UPDATE_MAX_S,
	       "a cached CRL is replaced well before its nextUpdate");
_Static_assert(MOAT_CRL_CHUNK_ENTRIES <= MOAT_CRL_MAX_ENTRIES && MOAT_CRL_DER_MAX < 0x7fffffffu,
	       "CRL bounds");
_Static_assert(MOAT_CA_MSG_MAX <= 200u * 1024u, "a CA message fits the default AF_UNIX buffer");
_Static_assert(MOAT_KEY_SIGN_MAX + MOAT_KEY_SEAL_MAX + MOAT_KEY_AD_MAX + MOAT_KEY_SEAL_OVERHEAD +
		       64u <=
		   MOAT_CA_MSG_MAX,
	       "a key-slot request fits a key-process message");
_Static_assert(MOAT_TOTP_SECRET_MAX <= MOAT_KEY_SEAL_MAX, "a TOTP seed fits a sealed blob");
_Static_assert((MOAT_TLS_TICKET_KEYS - 1u) * MOAT_TLS_TICKET_ROTATE_S >= MOAT_TLS_TICKET_LIFETIME_S,
	       "a ticket key is kept for as long as a ticket it sealed lives");
_Static_assert(MOAT_TLS_TICKET_ROTATE_S >= 60u && MOAT_TLS_TICKET_KEYS >= 2u &&
		   MOAT_TLS_TICKET_KEYS <= 255u,
	       "ticket key rotation bounds");
_Static_assert(MOAT_TLS_TICKETS_BLOB_MAX <= MOAT_KEY_SEAL_MAX,
	       "the ticket keys fit one sealed blob");

_Static_assert(MOAT_MAX_PACKET_SIZE_MAX <= MOAT_MQTT_MAX_REMAINING, "packet cap beyond MQTT");
_Static_assert(MOAT_MAX_CONNECT_PACKET <= MOAT_MAX_PACKET_SIZE_MAX, "connect cap");
_Static_assert(MOAT_MAX_TOPIC_LEN <= 65535u, "topic length beyond MQTT string");
_Static_assert(MOAT_MAX_CLIENT_ID_LEN <= 65535u, "client id beyond MQTT string");
_Static_assert(MOAT_RECEIVE_MAXIMUM_MAX <= 65535u, "receive maximum is u16");
_Static_assert(MOAT_MAX_INFLIGHT_MAX <= 65535u, "packet ids are u16");
_Static_assert(MOAT_TOPIC_ALIAS_MAX <= 65535u, "topic alias is u16");
_Static_assert(MOAT_DEVICE_ID_MAX <= MOAT_MAX_CLIENT_ID_LEN, "device id fits a client id");
_Static_assert(MOAT_STORE_FLUSH_MS_MIN >= 1u &&
		   MOAT_STORE_FLUSH_MS_MIN <= MOAT_STORE_FLUSH_MS_DEFAULT &&
		   MOAT_STORE_FLUSH_MS_DEFAULT <= MOAT_STORE_FLUSH_MS_MAX,
	       "flush interval bounds");
_Static_assert(MOAT_STORE_BUSY_MS_MIN <= MOAT_STORE_BUSY_MS_DEFAULT &&
		   MOAT_STORE_BUSY_MS_DEFAULT <= MOAT_STORE_BUSY_MS_MAX &&
		   MOAT_STORE_BUSY_MS_MAX <= 2147483647u,
	       "busy timeout bounds (sqlite3_busy_timeout takes an int)");
_Static_assert(MOAT_STORE_MAX_PARAMS <= 255u, "parameter index fits a byte");
_Static_assert(MOAT_HTTP_MAX_TARGET < MOAT_HTTP_MAX_HEAD, "the target fits the head");
_Static_assert(MOAT_HTTP_BODY_DEFAULT <= MOAT_HTTP_BODY_MAX, "body bounds");
_Static_assert(MOAT_HTTP_STREAM_MAX >= 2ull * 1024u * 1024u * 1024u && sizeof(size_t) >= 8,
	       "streamed bodies of 2 GiB and more");
_Static_assert(MOAT_HTTP_WS_PING_MS < MOAT_HTTP_WS_IDLE_MS, "a ping before the idle close");
_Static_assert(MOAT_HTTP_PARAM_MAX <= MOAT_HTTP_PARAM_REST_MAX &&
		   MOAT_HTTP_PARAM_REST_MAX < MOAT_HTTP_MAX_TARGET,
	       "route parameter bounds");
_Static_assert(MOAT_MAX_PACKET_SIZE_MAX < MOAT_STORE_MAX_PENDING_BYTES,
	       "one message fits the pending budget");
_Static_assert(MOAT_PASSWORD_MIN_CHARS >= 8u && MOAT_PASSWORD_MIN_CHARS <= MOAT_PASSWORD_MAX_BYTES,
	       "password length bounds");
_Static_assert(MOAT_TOTP_SECRET_MIN >= 16u && MOAT_TOTP_SECRET_MIN <= MOAT_TOTP_SECRET_LEN &&
		   MOAT_TOTP_SECRET_LEN <= MOAT_TOTP_SECRET_MAX,
	       "TOTP secret bounds (RFC 4226: at least 128 bits)");
_Static_assert(MOAT_TOTP_DIGITS == 6u && MOAT_TOTP_WINDOW <= 2u, "TOTP code and window");
_Static_assert(MOAT_THROTTLE_BASE_WAIT_MS <= MOAT_THROTTLE_MAX_WAIT_MS &&
		   MOAT_THROTTLE_MAX_WAIT_MS < MOAT_THROTTLE_FORGET_MS,
	       "a throttled key waits out its wait before it is forgotten");
_Static_assert(MOAT_THROTTLE_FREE_FAILURES < MOAT_THROTTLE_ACCOUNT_FREE_FAILURES &&
		   MOAT_THROTTLE_ACCOUNT_FREE_FAILURES <= 100u &&
		   MOAT_THROTTLE_FORGET_MS <= MOAT_THROTTLE_ACCOUNT_FORGET_MS,
	       "an account is throttled within 100 failures (NIST SP 800-63B), after an "
	       "address");
_Static_assert(MOAT_THROTTLE_KEYS_MIN >= 1u &&
		   MOAT_THROTTLE_KEYS_MIN <= MOAT_THROTTLE_KEYS_DEFAULT &&
		   MOAT_THROTTLE_KEYS_DEFAULT <= MOAT_THROTTLE_KEYS_MAX &&
		   MOAT_THROTTLE_KEYS_MAX <= 0x7fffffffu,
	       "throttle table bounds (slots are u32)");

/* Audit log (src/audit/). Every entry is sealed by a signed checkpoint in
 * the transaction that writes it (~50 us for the signature). */
/* Largest detail (JSON object text) one entry may carry: details are small
 * facts (ids, reasons), never payloads, and a flood of audit events must not
 * fill the disk faster than the events themselves cost. */
#define MOAT_AUDIT_DETAIL_MAX 4096u
/* Largest key file we read: a comment line and 88 base64 characters fit
 * many times over; anything bigger is not a key file. */
#define MOAT_AUDIT_KEYFILE_MAX 1024u
_Static_assert(MOAT_AUDIT_DETAIL_MAX <= 0xffffffffu, "detail length is hashed as u32");

/* The CLI's HTTPS client (src/cli/http_client.c). */
/* Largest response body the CLI accepts: one page of 200 audit entries with
 * 4 KiB details is under 1 MiB, so 16 MiB is generous, yet a hostile or
 * broken server cannot make the CLI allocate without bound. */
#define MOAT_CLI_MAX_RESPONSE (16u * 1024u * 1024u)
/* Status line plus all response headers: the API sends a dozen short ones. */
#define MOAT_CLI_MAX_RESPONSE_HEAD (64u * 1024u)
/* Connecting must finish within this (s); then every read or write must make
 * progress within the second (s), so a stalled server cannot hang a script. */
#define MOAT_CLI_CONNECT_TIMEOUT_S 10u
#define MOAT_CLI_IO_TIMEOUT_S 30u
_Static_assert(MOAT_CLI_MAX_RESPONSE_HEAD < MOAT_CLI_MAX_RESPONSE, "CLI response bounds");
_Static_assert(2u * MOAT_REG_IMPORT_MAX_IDS + 16u <= MOAT_STORE_MAX_BATCH_OPS,
	       "one import is one batch");

#endif
