/* The registry service and the broker's identity table: every write is
 * audited in its transaction and names the identities it touched; a load
 * of those identities changes their records and no others; the bulk load
 * and the per-identity loads agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "audit/audit_store.h"
#include "registry/registry.h"
#include "store/store.h"
#include "registry/schema.h"

static char dir[256], dbpath[320];
static struct moat_store *st;
static struct moat_audit_log alog;
static struct moat_audit_file_signer signer;
static struct moat_regtab *tab;
static struct moat_reg_ctx ctx;
static char err[512];

static int setup(void **state)
{
	const char *t = getenv("TMPDIR");
	struct moat_store_opts o;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/moat-test-registry-XXXXXX", t != NULL && *t ? t : "/tmp");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(dbpath, sizeof(dbpath), "%s/moat.db", dir);
	memset(&o, 0, sizeof(o));
	o.path = dbpath;
	if (moat_store_open(&o, &st, err, sizeof(err)) != MOAT_OK ||
	    moat_audit_key_create(dir, err, sizeof(err)) != MOAT_OK ||
	    moat_audit_file_signer_open(&signer, dir, err, sizeof(err)) != MOAT_OK ||
	    moat_audit_log_open(&alog, st, dir, moat_audit_file_sign, &signer, err, sizeof(err)) !=
		MOAT_OK ||
	    moat_regtab_new(&tab) != MOAT_OK) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.store = st;
	ctx.audit = &alog;
	ctx.actor = "test";
	ctx.peer = "";
	ctx.now = 1000;
	return 0;
}

static int teardown(void **state)
{
	char p[400];
	static const char *const files[] = {"moat.db", "moat.db-wal", "moat.db-shm", "audit.key",
					    "audit.pub"};
	size_t i;

	(void)state;
	moat_regtab_free(tab);
	moat_audit_log_close(&alog);
	moat_audit_file_signer_close(&signer);
	moat_store_close(st);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	return rmdir(dir);
}

/* Apply what a change touched, as the broker does. */
static void apply(struct moat_reg_change *ch)
{
	assert_int_equal(moat_regtab_load_ids(tab, st, (const char *const *)ch->ids, ch->n,
					      ch->builtin, err, sizeof(err)),
			 MOAT_OK);
	moat_reg_change_clear(ch);
}

static enum moat_admit admit(const char *id, const char *serial, bool unknown_allow,
			     struct moat_acl **acl)
{
	const char *why;

	return moat_regtab_admit(tab, id, serial, unknown_allow, acl, &why);
}

/* May id (admitted now) publish topic? */
static bool may_pub(const char *id, const char *topic, bool unknown_allow)
{
	struct moat_acl *acl = NULL;
	bool ok;

	if (admit(id, NULL, unknown_allow, &acl) != MOAT_ADMIT_OK)
		return false;
	ok = moat_acl_may_publish(acl, topic, strlen(topic));
	moat_acl_unref(acl);
	return ok;
}

static void reg(const char *id, const char *group, struct moat_reg_change *ch)
{
	const char *groups[1] = {group};

	assert_int_equal(
	    moat_reg_register(&ctx, id, "device", MOAT_ID_ACTIVE, groups, 1, false, ch), MOAT_OK);
}

static void assert_touched(const struct moat_reg_change *ch, const char *const *ids, size_t n)
{
	size_t i;

	assert_int_equal(ch->n, n);
	for (i = 0; i < n; i++)
		assert_string_equal(ch->ids[i], ids[i]);
}

static void test_service_and_per_identity_loads(void **state)
{
	struct moat_reg_change ch = {0}, chb = {0};
	struct moat_reg_cert cert = {"00aa", "ff", 0, 1};
	struct moat_reg_decom n;
	struct moat_acl *acl = NULL;
	static const char *const only_a[] = {"a"}, *const only_b[] = {"b"}, *const only_c[] = {"c"};

	(void)state;
	reg("a", "devices", &ch);
	assert_touched(&ch, only_a, 1);
	moat_reg_change_clear(&ch);
	reg("b", "devices", &ch);
	moat_reg_change_clear(&ch);
	assert_int_equal(moat_regtab_load_all(tab, st, err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_regtab_count(tab), 2);
	assert_true(may_pub("a", "d/a/x", false));
	assert_false(may_pub("a", "d/b/x", false));
	assert_int_equal(admit("ghost", NULL, false, &acl), MOAT_ADMIT_UNKNOWN);

	/* Disable b in the store, then load only a's change: b's record
	 * stays what it was until its own change is applied. */
	assert_int_equal(moat_reg_set_state(&ctx, "b", MOAT_ID_ACTIVE, MOAT_ID_DISABLED, &chb),
			 MOAT_OK);
	assert_touched(&chb, only_b, 1);
	assert_int_equal(moat_reg_set_state(&ctx, "a", MOAT_ID_ACTIVE, MOAT_ID_QUARANTINED, &ch),
			 MOAT_OK);
	assert_true(may_pub("a", "d/a/x", false)); /* not applied yet */
	apply(&ch);
	assert_false(may_pub("a", "d/a/x", false));
	assert_true(may_pub("a", "$moat/q/a/x", false));
	assert_true(may_pub("b", "d/b/x", false)); /* untouched */
	apply(&chb);
	assert_int_equal(admit("b", NULL, false, &acl), MOAT_ADMIT_DISABLED);

	/* A group's policy reaches its members, and only them. */
	assert_int_equal(moat_reg_group_create(&ctx, "g", ""), MOAT_OK);
	assert_int_equal(
	    moat_reg_policy_put(&ctx, "p", "", "allow publish x/${group}/#", true, &ch), MOAT_OK);
	assert_int_equal(ch.n, 0); /* attached nowhere yet */
	reg("c", "g", &ch);
	apply(&ch);
	assert_false(may_pub("c", "x/g/1", false));
	assert_int_equal(moat_reg_group_attach(&ctx, "g", "p", &ch), MOAT_OK);
	assert_touched(&ch, only_c, 1);
	assert_false(ch.builtin);
	apply(&ch);
	assert_true(may_pub("c", "x/g/1", false));
	assert_int_equal(moat_reg_policy_put(&ctx, "p", "",
					     "allow publish y/${group}/#\nallow "
					     "publish y/${device}/#",
					     false, &ch),
			 MOAT_OK);
	assert_touched(&ch, only_c, 1);
	apply(&ch);
	assert_false(may_pub("c", "x/g/1", false));
	assert_true(may_pub("c", "y/g/1", false));
	assert_true(may_pub("c", "y/c/1", false));

	/* Attached directly. */
	assert_int_equal(moat_reg_attach(&ctx, "a", "p", &ch), MOAT_OK);
	apply(&ch);
	assert_true(may_pub("a", "$moat/q/a/x", false));
	assert_int_equal(moat_reg_set_state(&ctx, "a", MOAT_ID_QUARANTINED, MOAT_ID_ACTIVE, &ch),
			 MOAT_OK);
	apply(&ch);
	assert_true(may_pub("a", "y/a/1", false));
	assert_false(may_pub("a", "y/g/1", false)); /* ${group} never matches directly */

	/* Deleting the policy touches both ways it reached. */
	assert_int_equal(moat_reg_policy_delete(&ctx, "p", &ch), MOAT_OK);
	assert_int_equal(ch.n, 2);
	apply(&ch);
	assert_false(may_pub("a", "y/a/1", false));
	assert_false(may_pub("c", "y/c/1", false));

	/* Revocation: the owner is touched; the serial refused. */
	assert_int_equal(moat_reg_cert_issue(&ctx, "a", false, NULL, NULL, &cert, &ch), MOAT_OK);
	moat_reg_change_clear(&ch);
	assert_int_equal(moat_reg_cert_revoke(&ctx, "00aa", NULL, &ch), MOAT_OK);
	assert_touched(&ch, only_a, 1);
	assert_int_equal(admit("a", "00aa", false, &acl), MOAT_ADMIT_OK);
	moat_acl_unref(acl);
	apply(&ch);
	assert_int_equal(admit("a", "00aa", false, &acl), MOAT_ADMIT_REVOKED);
	assert_true(moat_regtab_revoked(tab, "00aa"));

	/* Unknown identities get the built-in group's policies. */
	assert_int_equal(moat_reg_policy_put(&ctx, "q", "", "allow publish z/${device}", true, &ch),
			 MOAT_OK);
	assert_false(may_pub("ghost", "z/ghost", true));
	assert_int_equal(moat_reg_group_attach(&ctx, "devices", "q", &ch), MOAT_OK);
	assert_true(ch.builtin);
	apply(&ch);
	assert_true(may_pub("ghost", "z/ghost", true));
	assert_false(may_pub("ghost", "z/ghost", false));

	/* Decommissioned, then a new device under the same id. */
	assert_int_equal(moat_reg_decommission(&ctx, "c", &n, &ch), MOAT_OK);
	apply(&ch);
	assert_true(moat_regtab_decommissioned(tab, "c"));
	assert_int_equal(
	    moat_reg_register(&ctx, "c", "device", MOAT_ID_REGISTERED, NULL, 0, true, &ch),
	    MOAT_OK);
	apply(&ch);
	assert_false(moat_regtab_decommissioned(tab, "c"));
	assert_int_equal(admit("c", NULL, false, &acl), MOAT_ADMIT_NOT_ENROLLED);

	/* What the per-identity loads built is what a full load builds. */
	assert_int_equal(moat_regtab_count(tab), 3);
	assert_int_equal(moat_regtab_load_all(tab, st, err, sizeof(err)), MOAT_OK);
	assert_int_equal(moat_regtab_count(tab), 3);
	assert_true(may_pub("a", "d/a/x", false));
	assert_true(may_pub("a", "z/a", false));
	assert_int_equal(admit("a", "00aa", false, &acl), MOAT_ADMIT_REVOKED);
	assert_int_equal(admit("b", NULL, false, &acl), MOAT_ADMIT_DISABLED);
	assert_int_equal(admit("c", NULL, false, &acl), MOAT_ADMIT_NOT_ENROLLED);
	assert_true(may_pub("ghost", "z/ghost", true));
}

static moat_err count_cb(void *arg, const struct moat_audit_entry *e)
{
	size_t *n = arg;

	(void)e;
	(*n)++;
	return MOAT_OK;
}

static void test_every_write_is_audited(void **state)
{
	struct moat_reg_change ch = {0};
	struct moat_audit_report rep;
	size_t before = 0, after = 0;

	(void)state;
	assert_int_equal(moat_audit_list(st, 0, NULL, NULL, 0, 0, 1000, count_cb, &before),
			 MOAT_OK);
	reg("d1", "devices", &ch);
	assert_int_equal(moat_reg_group_create(&ctx, "g2", "two"), MOAT_OK);
	assert_int_equal(moat_reg_group_add(&ctx, "d1", "g2", &ch), MOAT_OK);
	assert_int_equal(moat_reg_group_remove(&ctx, "d1", "g2", &ch), MOAT_OK);
	assert_int_equal(moat_reg_group_delete(&ctx, "g2", &ch), MOAT_OK);
	moat_reg_change_clear(&ch);
	assert_int_equal(moat_audit_list(st, 0, NULL, NULL, 0, 0, 1000, count_cb, &after), MOAT_OK);
	assert_int_equal(after, before + 5);
	assert_int_equal(moat_audit_list(st, 0, NULL, "group.delete", 0, 0, 1000, count_cb, &after),
			 MOAT_OK);
	assert_int_equal(moat_audit_verify_store(st, alog.pk, &rep, err, sizeof(err)), MOAT_OK);
	assert_int_equal(rep.fault, MOAT_AUDIT_INTACT);
	assert_int_equal(rep.unsealed, 0);
}

/* A stored rule that no longer parses fails the load; the table keeps what
 * it had. */
static void test_bad_rule_keeps_the_table(void **state)
{
	struct moat_store_batch *b = NULL;
	struct moat_val v[4];
	struct moat_reg_change ch = {0};

	(void)state;
	reg("e1", "devices", &ch);
	apply(&ch);
	assert_true(may_pub("e1", "d/e1/x", false));
	v[0] = moat_val_text("bad", 3);
	v[1] = moat_val_text("", 0);
	v[2] = moat_val_text("allow nonsense", 14);
	v[3] = moat_val_int(1);
	assert_int_equal(moat_store_batch_new(&b), MOAT_OK);
	assert_int_equal(moat_store_batch_add(b, REG_STMT(POLICY_PUT), v, 4), MOAT_OK);
	assert_int_equal(moat_store_write(st, b), MOAT_OK);
	assert_int_equal(moat_regtab_load_all(tab, st, err, sizeof(err)), MOAT_E_CORRUPT);
	assert_non_null(strstr(err, "policy bad"));
	assert_true(may_pub("e1", "d/e1/x", false));
}

static enum moat_admit admit_serial(const char *id, const char *serial)
{
	struct moat_acl *acl = NULL;
	enum moat_admit a = admit(id, serial, false, &acl);

	if (acl != NULL)
		moat_acl_unref(acl);
	return a;
}

static void load_all(void)
{
	assert_int_equal(moat_regtab_load_all(tab, st, err, sizeof(err)), MOAT_OK);
}

/* EST through the registry service: enrollment registers (batch token) or
 * activates the device, stores the certificate and takes a token use;
 * re-enrollment schedules the old certificate's revocation, which the
 * due-revocation chore carries out when its time comes; each is audited
 * with the change. */
static void test_est_through_the_service(void **state)
{
	struct moat_reg_change ch = {0};
	struct moat_reg_enrollment en;
	struct moat_audit_report rep;
	uint8_t hash[32] = {1};
	size_t n_enroll = 0, n_reenroll = 0, n_revoke = 0;
	int64_t n = -1;

	(void)state;
	assert_int_equal(
	    moat_reg_etoken_create(&ctx, "tok1", hash, sizeof(hash), NULL, "devices", 2, 1),
	    MOAT_OK);
	memset(&en, 0, sizeof(en));
	en.id = "est1";
	en.register_now = true;
	en.group = "devices";
	en.serial = "0a01";
	en.fingerprint = "ff";
	en.not_before = 0;
	en.not_after = 10000000;
	en.etoken_id = "tok1";
	assert_int_equal(moat_reg_est_enroll(&ctx, &en, NULL), MOAT_OK);
	load_all();
	assert_true(may_pub("est1", "d/est1/x", false));
	assert_int_equal(admit_serial("est1", "0a01"), MOAT_ADMIT_OK);

	/* re-enrollment: the old certificate stays valid until the grace ends */
	assert_int_equal(moat_reg_est_reenroll(&ctx, "est1", "0a02", "fe", 0, 10000000, "0a01", 60),
			 MOAT_OK);
	assert_int_equal(moat_reg_revoke_due(&ctx, &n), MOAT_OK);
	assert_int_equal(n, 0);
	ctx.now += 61 * 1000;
	assert_int_equal(moat_reg_revoke_due(&ctx, &n), MOAT_OK);
	assert_int_equal(n, 1);
	load_all();
	assert_int_equal(admit_serial("est1", "0a01"), MOAT_ADMIT_REVOKED);
	assert_int_equal(admit_serial("est1", "0a02"), MOAT_ADMIT_OK);
	assert_int_equal(moat_reg_revoke_due(&ctx, &n), MOAT_OK);
	assert_int_equal(n, 0);

	assert_int_equal(
	    moat_audit_list(st, 0, NULL, "est.enroll", 0, 0, 1000, count_cb, &n_enroll), MOAT_OK);
	assert_int_equal(
	    moat_audit_list(st, 0, NULL, "est.reenroll", 0, 0, 1000, count_cb, &n_reenroll),
	    MOAT_OK);
	assert_int_equal(
	    moat_audit_list(st, 0, NULL, "certificate.revoke", 0, 0, 1000, count_cb, &n_revoke),
	    MOAT_OK);
	assert_int_equal(n_enroll, 1);
	assert_int_equal(n_reenroll, 1);
	assert_int_equal(n_revoke, 1);
	assert_int_equal(moat_audit_verify_store(st, alog.pk, &rep, err, sizeof(err)), MOAT_OK);
	assert_int_equal(rep.fault, MOAT_AUDIT_INTACT);
	moat_reg_change_clear(&ch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_service_and_per_identity_loads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_every_write_is_audited, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_rule_keeps_the_table, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_est_through_the_service, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
