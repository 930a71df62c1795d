/*
 * The key process (STYLE.md item 1, ARCHITECTURE.md "Processes"): the only
 * process of `moat serve` that holds a private key other than the TLS
 * key the serving process handshakes with. It is forked from
 * `moat serve`, loads dir/ca.key and dir/ca.crt (the CA), dir/audit.key
 * (the audit log's Ed25519 signing key) and dir/seal.key (the key that
 * seals secrets the server must read back, such as TOTP seeds), creating
 * audit.key and seal.key when a data directory made before them has none,
 * closes every other descriptor, locks itself down (no new privileges, not
 * dumpable, a seccomp-bpf filter that allows little more than reading and
 * answering its socket) and then only answers typed, size-checked requests
 * over a SOCK_SEQPACKET socketpair: sign a certificate request, sign a CRL
 * (its entries streamed in several messages, the signed CRL fetched back in
 * parts), renew the server certificate, return the CA certificate, sign a
 * payload with a key slot, seal or unseal a secret with a key slot, ping.
 * The parent never sees these keys (it keeps only its TLS key); whatever it sends is checked again
 * (STYLE.md item 2), so a compromised network-facing side can at worst get
 * certificates the enrollment policy (csr.h) would issue anyway, audit
 * checkpoints over heads of its choosing (which it could write unsigned
 * anyway) and the secrets it could already ask to unseal -- never a key.
 *
 * The names keep their historical "ca" (files ca.h, ca_proc.c, ca_msg.c;
 * struct moat_ca, moat_ca_*): the CA was its first key.
 *
 * moat_ca_spawn must be called before the process starts any thread:
 * fork() copies only the calling thread, and a lock another thread held at
 * that moment (malloc's, OpenSSL's) would stay locked forever in the key
 * process. `moat serve` calls it first, before the store, workers and
 * listeners. The key process also dies with the thread that spawned it
 * (PR_SET_PDEATHSIG), which must therefore be the main thread.
 *
 * The client calls below are thread-safe (one request at a time, under a
 * mutex). Every call fails with an error, never hangs, when the key process
 * does not answer within MOAT_CA_TIMEOUT_MS or has died.
 */
#ifndef MOAT_CA_H
#define MOAT_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit/audit.h"
#include "core/buf.h"
#include "core/error.h"

/* Serial numbers as hex: moat_ca_sign writes the CA's 128 random bits as
 * exactly 32 lowercase hex digits (leading zeros kept); a CRL entry accepts
 * 1 to 40 hex digits (RFC 5280 allows 20 octets), either case. */
#define MOAT_CA_SERIAL_HEX_LEN 32u
#define MOAT_CA_SERIAL_HEX_MAX 40u
#define MOAT_CA_SERIAL_MAX 20u

/* Longest error sentence in an answer, with its NUL. */
#define MOAT_CA_ERR_MAX 512u

/* The latest time a CRL entry may carry: 9999-12-31T23:59:59Z, the end of
 * GeneralizedTime. */
#define MOAT_CA_TIME_MAX 253402300799LL

struct moat_ca;

/*
 * Key slots: the keys other than the CA, by what they are for. A slot
 * answers only the requests its kind allows (SIGN for a signing key,
 * SEAL/UNSEAL for a sealing key); a slot the process does not hold is
 * refused. Numbers are kept stable: 3 and 4 are reserved for the update
 * service's online TUF roles (timestamp, snapshot: SIGN), 5 for telemetry
 * key-encryption keys (SEAL/UNSEAL).
 *
 *   MOAT_KEY_AUDIT    dir/audit.key, Ed25519. SIGN payload: exactly 48
 *                     bytes, u64 seq, u64 ts_ms, 32-byte head; the key
 *                     process signs the checkpoint message audit.h defines
 *                     (its own domain tag in front), so this key signs
 *                     nothing but audit checkpoints. It checks the size and
 *                     nothing else: it cannot know the chain.
 *   MOAT_KEY_SECRETS  dir/seal.key, 32 bytes, XChaCha20-Poly1305 (libsodium
 *                     crypto_aead_xchacha20poly1305_ietf). SEAL(ad,
 *                     plaintext) -> "MKS1" nonce ciphertext tag; UNSEAL
 *                     takes the same ad, so a blob moved to another row or
 *                     column does not open.
 */
enum moat_key_slot {
	MOAT_KEY_AUDIT = 1,
	MOAT_KEY_SECRETS = 2,
};
#define MOAT_KEY_SLOT_MAX 15u
/* The SIGN payload of MOAT_KEY_AUDIT. */
#define MOAT_KEY_AUDIT_PAYLOAD 48u
/* The first bytes of every sealed blob (format version 1). */
#define MOAT_KEY_SEAL_TAG "MKS1"
#define MOAT_KEY_SEAL_TAG_LEN 4u

/* One revoked certificate for moat_ca_crl. */
struct moat_revoked {
	char serial[MOAT_CA_SERIAL_HEX_MAX + 1]; /* hex, as moat_ca_sign returned it */
	int64_t revoked_at;			 /* Unix seconds, 1..MOAT_CA_TIME_MAX */
};

/*
 * Fork the key process for the CA in dir (ca.key, ca.crt) and wait until it
 * has loaded the key and locked itself down. Fails (with the child's reason
 * in err) when the key is missing, does not match the certificate, or is
 * accessible by group or others (err says which chmod fixes it). See the
 * top of this file: only before any thread exists.
 */
moat_err moat_ca_spawn(const char *dir, struct moat_ca **out, char *err, size_t errlen);

/*
 * Issue a device certificate for device_id from a DER request (at most
 * MOAT_CSR_MAX bytes), valid `days` (1..MOAT_CERT_DAYS_MAX) from now, with
 * notBefore MOAT_CERT_SKEW_S in the past, naming crl_url (NULL or "": none;
 * else an http(s) URL, moat_pki_crl_url_valid) as its CRL distribution
 * point. The CA re-checks the request with
 * moat_csr_check (MOAT_E_DENIED and its sentence in err on refusal) and uses
 * only its public key: the profile is moat_pki_issue_device's (CN and URI
 * SAN moat:device:<id>, clientAuth, digitalSignature, CA:FALSE, SKI/AKI)
 * with a random 128-bit serial. On MOAT_OK *cert is malloc'd DER (free),
 * serial_hex holds the serial (MOAT_CA_SERIAL_HEX_LEN digits and a NUL) and
 * *not_after_s the end of validity in Unix seconds.
 */
moat_err moat_ca_sign(struct moat_ca *ca, const char *device_id, const uint8_t *csr, size_t csr_len,
		      unsigned days, const char *crl_url, uint8_t **cert, size_t *cert_len,
		      char serial_hex[MOAT_CA_SERIAL_HEX_LEN + 1], int64_t *not_after_s, char *err,
		      size_t errlen);

/*
 * Sign a v2 CRL listing all n (at most MOAT_CRL_MAX_ENTRIES) revoked serials,
 * thisUpdate now and nextUpdate next_update_s later (1..
 * MOAT_CRL_NEXT_UPDATE_MAX_S), with the CRL number crl_number (the caller
 * keeps it increasing; RFC 5280 5.2.3) and the CA's AKI. *crl is malloc'd DER.
 * The entries go to the CA MOAT_CRL_CHUNK_ENTRIES at a time and the CRL
 * comes back in parts, all under one lock, so no other call interleaves.
 */
moat_err moat_ca_crl(struct moat_ca *ca, uint64_t crl_number, unsigned next_update_s,
		     const struct moat_revoked *list, size_t n, uint8_t **crl, size_t *crl_len,
		     char *err, size_t errlen);

/*
 * Renew the server certificate: cert (DER, at most MOAT_CSR_MAX bytes) must
 * be a server certificate (serverAuth, not a CA) this CA signed; the CA
 * issues a new one with the same subject, subject alternative names and
 * public key, a fresh serial and the server profile, from
 * MOAT_CERT_SKEW_S ago for MOAT_SERVER_CERT_LIFETIME_S in all. A
 * compromised caller can only extend a certificate it already holds the
 * key of, never obtain one for new names. *out is malloc'd DER.
 */
moat_err moat_ca_renew_server(struct moat_ca *ca, const uint8_t *cert, size_t cert_len,
			      uint8_t **out, size_t *out_len, char *err, size_t errlen);

/*
 * `moat serve`, at start and daily (server_cert.c): when the server
 * certificate in cert_path has less than a third of its lifetime or
 * MOAT_SERVER_CERT_RENEW_MIN_S left at now (Unix seconds), have the CA
 * process renew it and replace the file atomically (a chain after it is
 * kept). *renewed says whether it did; *not_after is the (new) expiry. The
 * caller then reloads the TLS contexts. A certificate this CA did not
 * issue is an error (the operator renews it where it came from).
 */
moat_err moat_ca_server_cert_check(struct moat_ca *ca, const char *cert_path, int64_t now,
				   bool *renewed, int64_t *not_after, char *err, size_t errlen);

/* The CA certificate as DER (malloc'd), for EST /cacerts. */
moat_err moat_ca_cacerts(struct moat_ca *ca, uint8_t **der, size_t *der_len, char *err,
			 size_t errlen);

/* MOAT_OK when the key process answers. */
moat_err moat_ca_ping(struct moat_ca *ca, char *err, size_t errlen);

/*
 * Sign len bytes (1..MOAT_KEY_SIGN_MAX) with the signing key in slot; sig
 * (sig_cap bytes) receives the signature and *sig_len its length.
 */
moat_err moat_ca_key_sign(struct moat_ca *ca, uint8_t slot, const uint8_t *msg, size_t len,
			  uint8_t *sig, size_t sig_cap, size_t *sig_len, char *err, size_t errlen);

/* Fill c->sig for c's seq, ts_ms and head through MOAT_KEY_AUDIT (arg is
 * the struct moat_ca): the audit log's signer (audit_store.h). */
moat_err moat_ca_audit_sign(void *arg, struct moat_audit_checkpoint *c);

/*
 * Seal pt_len bytes (1..MOAT_KEY_SEAL_MAX) under the sealing key in slot,
 * bound to ad (0..MOAT_KEY_AD_MAX bytes). out (cap bytes, at least pt_len +
 * MOAT_KEY_SEAL_OVERHEAD) receives the blob. The request buffer is wiped.
 */
moat_err moat_ca_seal(struct moat_ca *ca, uint8_t slot, const uint8_t *ad, size_t ad_len,
		      const uint8_t *pt, size_t pt_len, uint8_t *out, size_t cap, size_t *out_len,
		      char *err, size_t errlen);

/*
 * Open a blob moat_ca_seal made with the same slot and ad. MOAT_E_CRYPTO
 * when it does not open (another ad, another key, altered). out (cap bytes)
 * receives the plaintext; the caller wipes it. Answer buffers are wiped.
 */
moat_err moat_ca_unseal(struct moat_ca *ca, uint8_t slot, const uint8_t *ad, size_t ad_len,
			const uint8_t *blob, size_t blob_len, uint8_t *out, size_t cap,
			size_t *out_len, char *err, size_t errlen);

/* Close the socket (the key process exits on EOF), reap it, SIGKILL it if
 * it has not exited within MOAT_CA_STOP_MS, and free ca. A call still in
 * progress is waited for; none may start after. NULL is a no-op. */
void moat_ca_stop(struct moat_ca *ca);

/* Test hooks. The key process's id. */
pid_t moat_ca_pid(const struct moat_ca *ca);

/* Send msg as one message as it is (up to MOAT_CA_MSG_MAX + 4096 bytes, so
 * tests can send oversized ones) and return the next answer, whatever its
 * sequence number, as malloc'd bytes for moat_ca_ans_parse. */
moat_err moat_ca_raw_request(struct moat_ca *ca, const uint8_t *msg, size_t len, uint8_t **ans,
			     size_t *ans_len);

/*
 * The message codec (ca_msg.c): pure, so it is unit-tested and fuzzed on
 * its own. Integers are big-endian. A "string" is a u16 length that counts a
 * terminating NUL, the bytes and that NUL (no other NUL); a "blob" is a u32
 * length and the bytes. Every message is at most MOAT_CA_MSG_MAX bytes, and
 * a parser refuses short messages, unterminated strings, out-of-range
 * values, unknown types and leftover bytes.
 *
 * Request: u8 type, u32 seq, then by type
 *   PING, CACERTS: nothing
 *   SIGN: string device_id (1..MOAT_DEVICE_ID_MAX), blob csr DER
 *         (1..MOAT_CSR_MAX), string crl_url (0..MOAT_CRL_URL_MAX; empty:
 *         no CRL distribution point), u32 days (1..MOAT_CERT_DAYS_MAX), u32 notBefore
 *         skew in seconds (0..MOAT_CERT_SKEW_MAX_S)
 *   CRL_ADD: u32 start, u32 count (1..MOAT_CRL_CHUNK_ENTRIES), count
 *         entries: more entries for the CRL being assembled. start is how
 *         many came before (0 starts over, discarding any left by a call that
 *         failed); the CA refuses a start that is not what it holds, and a
 *         total over MOAT_CRL_MAX_ENTRIES.
 *   CRL:  u64 crl number, u32 next_update_s (1..MOAT_CRL_NEXT_UPDATE_MAX_S),
 *         u32 start (as for CRL_ADD), u32 count (0..MOAT_CRL_CHUNK_ENTRIES),
 *         count entries: the last entries; the CA signs a CRL of all of them
 *         and keeps its DER for CRL_PART. An entry is: u8 n
 *         (1..MOAT_CA_SERIAL_MAX), n serial octets (unsigned big-endian, no
 *         leading zero octet, at most 20 octets in DER), u64 revocation time
 *         (1..MOAT_CA_TIME_MAX)
 *   CRL_PART: u32 offset into the last signed CRL (below its length)
 *   RENEW_SERVER: blob certificate DER (1..MOAT_CSR_MAX)
 *   KEY_SIGN: u8 slot (1..MOAT_KEY_SLOT_MAX), blob payload
 *         (1..MOAT_KEY_SIGN_MAX)
 *   SEAL: u8 slot, blob associated data (0..MOAT_KEY_AD_MAX), blob
 *         plaintext (1..MOAT_KEY_SEAL_MAX)
 *   UNSEAL: u8 slot, blob associated data (0..MOAT_KEY_AD_MAX), blob sealed
 *         (MOAT_KEY_SEAL_OVERHEAD + 1..MOAT_KEY_SEAL_OVERHEAD +
 *         MOAT_KEY_SEAL_MAX)
 * Answer: u8 type (the request's; HELLO for the start-up report), u32 seq
 * (the request's), u8 status (a moat_err), then
 *   status != MOAT_OK: string message (1..MOAT_CA_ERR_MAX - 1)
 *   HELLO, PING: nothing
 *   SIGN: blob certificate DER, string serial hex (1..MOAT_CA_SERIAL_HEX_MAX
 *         digits), u64 notAfter (Unix seconds, 1..MOAT_CA_TIME_MAX)
 *   CRL_ADD: nothing
 *   CRL:  u32 total length of the DER (1..MOAT_CRL_DER_MAX), blob: its
 *         first bytes (1..MOAT_CRL_PART_MAX, at most total)
 *   CRL_PART: blob: the next bytes (1..MOAT_CRL_PART_MAX)
 *   CACERTS, RENEW_SERVER: blob DER
 *   KEY_SIGN: blob signature (1..MOAT_KEY_SIG_MAX)
 *   SEAL: blob sealed (as UNSEAL takes it)
 *   UNSEAL: blob plaintext (1..MOAT_KEY_SEAL_MAX)
 */
enum moat_ca_type {
	MOAT_CA_HELLO = 0,
	MOAT_CA_PING = 1,
	MOAT_CA_SIGN = 2,
	MOAT_CA_CRL = 3,
	MOAT_CA_CACERTS = 4,
	MOAT_CA_CRL_ADD = 5,
	MOAT_CA_CRL_PART = 6,
	MOAT_CA_RENEW_SERVER = 7,
	MOAT_CA_KEY_SIGN = 8,
	MOAT_CA_SEAL = 9,
	MOAT_CA_UNSEAL = 10,
};

/* A parsed request; pointers are views into the message. */
struct moat_ca_req {
	uint8_t type;
	uint32_t seq;
	/* SIGN */
	const char *device_id;
	const uint8_t *csr;
	size_t csr_len;
	const char *crl_url; /* "" for none */
	uint32_t days;
	uint32_t skew_s;
	/* CRL: n_revoked entries, already validated, read with
	 * moat_ca_entry_next from a moat_rd over revoked/revoked_len. */
	uint64_t crl_number;
	uint32_t next_update_s;
	uint32_t start; /* CRL, CRL_ADD: entries sent before */
	uint32_t n_revoked;
	const uint8_t *revoked;
	size_t revoked_len;
	/* CRL_PART */
	uint32_t offset;
	/* RENEW_SERVER: the current certificate */
	const uint8_t *cert;
	size_t cert_len;
	/* KEY_SIGN, SEAL, UNSEAL: the slot, the payload (plaintext, sealed
	 * blob) and, for SEAL and UNSEAL, the associated data */
	uint8_t slot;
	const uint8_t *data;
	size_t data_len;
	const uint8_t *ad;
	size_t ad_len;
};

/* One CRL entry as carried in a request. */
struct moat_ca_entry {
	uint8_t serial[MOAT_CA_SERIAL_MAX];
	size_t serial_len;
	int64_t revoked_at;
};

/* A parsed answer; pointers are views into the message. */
struct moat_ca_ans {
	uint8_t type;
	uint32_t seq;
	uint8_t status;	    /* moat_err */
	const char *msg;    /* status != MOAT_OK */
	const uint8_t *der; /* SIGN, CACERTS; CRL, CRL_PART: a part; KEY_SIGN,
			     * SEAL, UNSEAL: the signature, blob, plaintext */
	size_t der_len;
	uint32_t total;	    /* CRL: length of the whole DER */
	const char *serial; /* SIGN */
	int64_t not_after;  /* SIGN */
};

/* Requests. PING and CACERTS carry no body. */
moat_err moat_ca_req_put_simple(struct moat_buf *b, uint8_t type, uint32_t seq);
moat_err moat_ca_req_put_sign(struct moat_buf *b, uint32_t seq, const char *device_id,
			      const uint8_t *csr, size_t csr_len, const char *crl_url,
			      uint32_t days, uint32_t skew_s);
/* Converts each hex serial; MOAT_E_INVAL names no entry, so check them
 * with moat_ca_serial_from_hex first when the caller needs to know which. */
moat_err moat_ca_req_put_crl(struct moat_buf *b, uint32_t seq, uint64_t crl_number,
			     uint32_t next_update_s, uint32_t start,
			     const struct moat_revoked *list, size_t n);
moat_err moat_ca_req_put_crl_add(struct moat_buf *b, uint32_t seq, uint32_t start,
				 const struct moat_revoked *list, size_t n);
moat_err moat_ca_req_put_crl_part(struct moat_buf *b, uint32_t seq, uint32_t offset);
moat_err moat_ca_req_put_renew_server(struct moat_buf *b, uint32_t seq, const uint8_t *cert,
				      size_t len);
moat_err moat_ca_req_put_key_sign(struct moat_buf *b, uint32_t seq, uint8_t slot,
				  const uint8_t *payload, size_t len);
/* type MOAT_CA_SEAL (data: plaintext) or MOAT_CA_UNSEAL (data: sealed). */
moat_err moat_ca_req_put_seal(struct moat_buf *b, uint8_t type, uint32_t seq, uint8_t slot,
			      const uint8_t *ad, size_t ad_len, const uint8_t *data, size_t len);
/* On failure *why (if not NULL) is a static sentence. */
moat_err moat_ca_req_parse(const uint8_t *p, size_t n, struct moat_ca_req *req, const char **why);
/* Read the next entry of a parsed CRL request. */
moat_err moat_ca_entry_next(struct moat_rd *r, struct moat_ca_entry *e);
/* Hex (1..MOAT_CA_SERIAL_HEX_MAX digits) to the canonical octets: leading
 * zeros dropped; zero and serials over 20 DER octets are MOAT_E_INVAL. */
moat_err moat_ca_serial_from_hex(const char *hex, uint8_t out[MOAT_CA_SERIAL_MAX], size_t *len);

/* Answers. put_error truncates msg to MOAT_CA_ERR_MAX - 1 bytes. */
moat_err moat_ca_ans_put_error(struct moat_buf *b, uint8_t type, uint32_t seq, moat_err status,
			       const char *msg);
moat_err moat_ca_ans_put_ok(struct moat_buf *b, uint8_t type, uint32_t seq);
moat_err moat_ca_ans_put_crl(struct moat_buf *b, uint32_t seq, uint32_t total, const uint8_t *part,
			     size_t len);
/* CRL_PART, CACERTS, RENEW_SERVER, KEY_SIGN, SEAL, UNSEAL: one blob. */
moat_err moat_ca_ans_put_der(struct moat_buf *b, uint8_t type, uint32_t seq, const uint8_t *der,
			     size_t len);
moat_err moat_ca_ans_put_sign(struct moat_buf *b, uint32_t seq, const uint8_t *der, size_t len,
			      const char *serial_hex, int64_t not_after);
moat_err moat_ca_ans_parse(const uint8_t *p, size_t n, struct moat_ca_ans *ans);

#endif
