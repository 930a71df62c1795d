/*
 * libFuzzer target for certificate requests (src/pki/csr.c) and the key
 * process's message codec (src/pki/ca_msg.c), key-slot requests included.
 *
 * The input goes four ways:
 *  1. as an EST simpleenroll body: moat_csr_from_est_body, and what it
 *     decodes through step 2;
 *  2. as DER: moat_csr_parse, then moat_csr_check for "dev1" and
 *     moat_csr_subject_id. A request the policy accepts for dev1 must name
 *     dev1; any id found must be a valid device id; refusals carry a
 *     sentence; no OpenSSL error may be left queued;
 *  3. as a CA request: moat_ca_req_parse; an accepted request re-encodes
 *     to exactly the input (one encoding per request, nothing ignored);
 *  4. as a CA answer: moat_ca_ans_parse, with the same round trip.
 * Any broken property aborts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "core/buf.h"
#include "core/limits.h"
#include "pki/ca.h"
#include "pki/csr.h"
#include "tls/tls.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

/* Past the body cap every path refuses on length alone; a little beyond it
 * still tests that refusal. */
#define FUZZ_MAX_INPUT (MOAT_CSR_BODY_MAX + 64u)

#define WHY_LEN 512u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* why must be a NUL-terminated, non-empty sentence inside its buffer. */
static void check_why(const char *why)
{
	const char *nul = memchr(why, '\0', WHY_LEN);

	CHECK(nul != NULL && nul != why);
}

static void check_der(const uint8_t *p, size_t n)
{
	char why[WHY_LEN];
	char id[MOAT_DEVICE_ID_MAX + 1];
	X509_REQ *req = NULL;
	moat_err rc, rc_id;

	if (p == NULL)
		return;
	memset(why, 'Z', sizeof(why));
	rc = moat_csr_parse(p, n, &req, why, sizeof(why));
	CHECK(ERR_peek_error() == 0);
	if (rc != MOAT_OK) {
		CHECK(rc == MOAT_E_MALFORMED || rc == MOAT_E_TOO_LARGE);
		CHECK(req == NULL);
		check_why(why);
		return;
	}
	CHECK(req != NULL);

	memset(why, 'Z', sizeof(why));
	rc = moat_csr_check(req, "dev1", why, sizeof(why));
	CHECK(rc == MOAT_OK || rc == MOAT_E_DENIED || rc == MOAT_E_MALFORMED);
	if (rc != MOAT_OK)
		check_why(why);
	CHECK(ERR_peek_error() == 0);

	memset(id, 'Z', sizeof(id));
	rc_id = moat_csr_subject_id(req, id, sizeof(id));
	CHECK(rc_id == MOAT_OK || rc_id == MOAT_E_DENIED || rc_id == MOAT_E_NOTFOUND ||
	      rc_id == MOAT_E_MALFORMED);
	CHECK(ERR_peek_error() == 0);
	if (rc_id == MOAT_OK) {
		const char *nul = memchr(id, '\0', sizeof(id));

		CHECK(nul != NULL);
		CHECK(moat_device_id_valid(id, (size_t)(nul - id)));
	}
	/* What the policy accepts for dev1 names dev1 and nothing else. */
	if (rc == MOAT_OK)
		CHECK(rc_id == MOAT_OK && strcmp(id, "dev1") == 0);

	/* An id that is not a device id is refused whatever the request. */
	CHECK(moat_csr_check(req, "Not-An-Id", NULL, 0) == MOAT_E_DENIED);
	X509_REQ_free(req);
	ERR_clear_error();
}

static void check_body(const uint8_t *p, size_t n)
{
	char why[WHY_LEN];
	uint8_t *der = NULL;
	size_t der_len = 0;
	moat_err rc;

	memset(why, 'Z', sizeof(why));
	rc = moat_csr_from_est_body(p, n, &der, &der_len, why, sizeof(why));
	if (rc != MOAT_OK) {
		CHECK(rc == MOAT_E_MALFORMED || rc == MOAT_E_TOO_LARGE);
		CHECK(der == NULL);
		check_why(why);
		return;
	}
	CHECK(der != NULL && der_len >= 1 && der_len <= MOAT_CSR_MAX);
	/* base64 never grows: 4 characters for 3 bytes. */
	CHECK(der_len <= n);
	check_der(der, der_len);
	free(der);
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0xfu];
	}
	out[2 * n] = '\0';
}

static void check_req(const uint8_t *p, size_t n)
{
	struct moat_revoked *list = NULL;
	struct moat_ca_req req;
	struct moat_buf b;
	const char *why = NULL;
	moat_err rc;

	rc = moat_ca_req_parse(p, n, &req, &why);
	CHECK(why != NULL);
	if (rc != MOAT_OK) {
		CHECK(rc == MOAT_E_MALFORMED || rc == MOAT_E_INVAL || rc == MOAT_E_PROTOCOL ||
		      rc == MOAT_E_LIMIT || rc == MOAT_E_TOO_LARGE);
		return;
	}
	moat_buf_init(&b, MOAT_CA_MSG_MAX);
	switch (req.type) {
	case MOAT_CA_PING:
	case MOAT_CA_CACERTS:
		CHECK(moat_ca_req_put_simple(&b, req.type, req.seq) == MOAT_OK);
		break;
	case MOAT_CA_SIGN:
		CHECK(strlen(req.device_id) >= 1 && strlen(req.device_id) <= MOAT_DEVICE_ID_MAX);
		CHECK(req.csr_len >= 1 && req.csr_len <= MOAT_CSR_MAX);
		CHECK(strlen(req.crl_url) <= MOAT_CRL_URL_MAX);
		CHECK(moat_ca_req_put_sign(&b, req.seq, req.device_id, req.csr, req.csr_len,
					   req.crl_url, req.days, req.skew_s) == MOAT_OK);
		break;
	case MOAT_CA_RENEW_SERVER:
		CHECK(req.cert_len >= 1 && req.cert_len <= MOAT_CSR_MAX);
		CHECK(moat_ca_req_put_renew_server(&b, req.seq, req.cert, req.cert_len) == MOAT_OK);
		break;
	case MOAT_CA_CRL_PART:
		CHECK(req.offset < MOAT_CRL_DER_MAX);
		CHECK(moat_ca_req_put_crl_part(&b, req.seq, req.offset) == MOAT_OK);
		break;
	case MOAT_CA_KEY_SIGN:
		CHECK(req.slot >= 1 && req.slot <= MOAT_KEY_SLOT_MAX);
		CHECK(req.data_len >= 1 && req.data_len <= MOAT_KEY_SIGN_MAX);
		CHECK(moat_ca_req_put_key_sign(&b, req.seq, req.slot, req.data, req.data_len) ==
		      MOAT_OK);
		break;
	case MOAT_CA_SEAL:
	case MOAT_CA_UNSEAL:
		CHECK(req.slot >= 1 && req.slot <= MOAT_KEY_SLOT_MAX);
		CHECK(req.ad_len <= MOAT_KEY_AD_MAX);
		CHECK(req.type == MOAT_CA_SEAL
			  ? req.data_len >= 1 && req.data_len <= MOAT_KEY_SEAL_MAX
			  : req.data_len > MOAT_KEY_SEAL_OVERHEAD &&
				req.data_len <= MOAT_KEY_SEAL_OVERHEAD + MOAT_KEY_SEAL_MAX);
		CHECK(moat_ca_req_put_seal(&b, req.type, req.seq, req.slot, req.ad, req.ad_len,
					   req.data, req.data_len) == MOAT_OK);
		break;
	case MOAT_CA_CRL:
	case MOAT_CA_CRL_ADD: {
		struct moat_ca_entry e;
		struct moat_rd r;
		uint32_t i;

		CHECK(req.n_revoked <= MOAT_CRL_CHUNK_ENTRIES);
		CHECK(req.start <= MOAT_CRL_MAX_ENTRIES - req.n_revoked);
		if (req.n_revoked > 0) {
			list = calloc(req.n_revoked, sizeof(*list));
			CHECK(list != NULL);
		}
		moat_rd_init(&r, req.revoked, req.revoked_len);
		for (i = 0; i < req.n_revoked; i++) {
			CHECK(moat_ca_entry_next(&r, &e) == MOAT_OK);
			hex_of(e.serial, e.serial_len, list[i].serial);
			list[i].revoked_at = e.revoked_at;
		}
		CHECK(moat_rd_left(&r) == 0);
		if (req.type == MOAT_CA_CRL)
			CHECK(moat_ca_req_put_crl(&b, req.seq, req.crl_number, req.next_update_s,
						  req.start, list, req.n_revoked) == MOAT_OK);
		else
			CHECK(moat_ca_req_put_crl_add(&b, req.seq, req.start, list,
						      req.n_revoked) == MOAT_OK);
		break;
	}
	default:
		CHECK(0);
	}
	CHECK(moat_buf_used(&b) == n && memcmp(moat_buf_head(&b), p, n) == 0);
	free(list);
	moat_buf_free(&b);
}

static void check_ans(const uint8_t *p, size_t n)
{
	struct moat_ca_ans ans;
	struct moat_buf b;
	moat_err rc;

	rc = moat_ca_ans_parse(p, n, &ans);
	if (rc != MOAT_OK)
		return;
	moat_buf_init(&b, MOAT_CA_MSG_MAX);
	if (ans.status != MOAT_OK) {
		CHECK(ans.msg != NULL && ans.msg[0] != '\0');
		CHECK(moat_ca_ans_put_error(&b, ans.type, ans.seq, (moat_err)ans.status, ans.msg) ==
		      MOAT_OK);
	} else {
		switch (ans.type) {
		case MOAT_CA_HELLO:
		case MOAT_CA_PING:
		case MOAT_CA_CRL_ADD:
			CHECK(moat_ca_ans_put_ok(&b, ans.type, ans.seq) == MOAT_OK);
			break;
		case MOAT_CA_SIGN:
			CHECK(moat_ca_ans_put_sign(&b, ans.seq, ans.der, ans.der_len, ans.serial,
						   ans.not_after) == MOAT_OK);
			break;
		case MOAT_CA_CRL:
			CHECK(moat_ca_ans_put_crl(&b, ans.seq, ans.total, ans.der, ans.der_len) ==
			      MOAT_OK);
			break;
		case MOAT_CA_CRL_PART:
		case MOAT_CA_CACERTS:
		case MOAT_CA_RENEW_SERVER:
		case MOAT_CA_KEY_SIGN:
		case MOAT_CA_SEAL:
		case MOAT_CA_UNSEAL:
			CHECK(moat_ca_ans_put_der(&b, ans.type, ans.seq, ans.der, ans.der_len) ==
			      MOAT_OK);
			break;
		default:
			CHECK(0);
		}
	}
	CHECK(moat_buf_used(&b) == n && memcmp(moat_buf_head(&b), p, n) == 0);
	moat_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_MAX_INPUT)
		return 0;
	check_body(data, size);
	check_der(data, size);
	check_req(data, size);
	check_ans(data, size);
	ERR_clear_error();
	return 0;
}
