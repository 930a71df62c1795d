"""The audit log through the management API and `moat audit verify`: every
audited action leaves its entry (actor, target, outcome, peer), the list's
filters and cursor pagination, the broker's security events summed per
window, the live verification, and offline verification of tampered
copies of a data directory."""

import json
import os
import re
import shutil
import socket
import sqlite3
import time

import pytest

import apikit as ak
import mqttkit as mk
from apikit import admin_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("management API")

WRONG = "Definitely-Not-The-Password-42"
ENTRY_KEYS = ("seq", "ts", "ts_ms", "actor", "action", "target", "outcome", "peer", "detail",
              "prev", "hash")


# --------------------------------------------------------------------------
# every action leaves its entry
# --------------------------------------------------------------------------

class Acts:
    """Performs each audited action once and remembers what its entry must
    say; also every secret it handled (none may appear in the log)."""

    def __init__(self, env):
        s, adm = env.server, env.admin
        a = adm.api
        self.expect = {}
        self.secrets = [adm.password, adm.totp.secret] + adm.recovery_codes

        def want(key, action, actor, target, outcome, peer, detail=None):
            self.expect[key] = dict(action=action, actor=actor, target=target, outcome=outcome,
                                    peer=peer, detail=detail or {})

        want("auth.setup", "auth.setup", "setup", adm.name, "ok", a.source,
             {"username": adm.name, "role": "admin"})
        # a refused setup (an operator exists)
        c = s.client()
        r = c.post("/api/v1/setup", {"setup_token": s.setup_token, "username": "late",
                                     "password": ak.strong_password()})
        ak.assert_problem(r, 403, "setup-unavailable")
        self.setup_denied_peer = c.source

        # user.create, auth.login ok, user.totp_begin, user.totp_enrol
        op = ak.create_user(a, "operator")
        self.secrets.append(op.password)
        want("user.create", "user.create", "user:" + adm.name, op.name, "ok", a.source,
             {"role": "operator"})
        want("auth.login/ok", "auth.login", "user:" + op.name, op.name, "ok", op.api.source,
             {"session": op.api.session_id, "mfa": "none"})
        totp, codes = ak.enrol_totp(op.api)
        self.secrets += [totp.secret] + codes
        want("user.totp_begin", "user.totp_begin", "user:" + op.name, op.name, "ok",
             op.api.source)
        want("user.totp_enrol", "user.totp_enrol", "user:" + op.name, op.name, "ok",
             op.api.source)
        # a login with TOTP
        c = s.client()
        c.login(op.name, op.password, totp=totp.next_code())
        want("auth.login/totp", "auth.login", "user:" + op.name, op.name, "ok", c.source,
             {"session": c.session_id, "mfa": "totp"})

        # failed logins: a wrong password, an unknown user name
        c = s.client()
        c.login(op.name, WRONG, expect=401)
        want("auth.login/failed", "auth.login", "anonymous", op.name, "failed", c.source,
             {"username": op.name, "reason": "wrong password"})
        ghost = ak.unique("ghost-")
        c = s.client()
        c.login(ghost, WRONG, expect=401)
        want("auth.login/unknown", "auth.login", "anonymous", ghost, "failed", c.source,
             {"username": ghost, "reason": "unknown user"})

        # user.reset_mfa, user.update (the role change ends op's sessions)
        r = a.post("/api/v1/users/%s/reset-mfa" % op.name, {})
        assert r.status_code == 204, ak.describe(r)
        want("user.reset_mfa", "user.reset_mfa", "user:" + adm.name, op.name, "ok", a.source)
        r = a.patch("/api/v1/users/" + op.name, {"role": "viewer"})
        assert r.status_code == 200, ak.describe(r)
        want("user.update", "user.update", "user:" + adm.name, op.name, "ok", a.source,
             {"role_before": "operator", "role": "viewer"})

        # user.password_change, session.revoke, auth.logout
        v = ak.create_user(a, "auditor")
        other = s.client()
        other.login(v.name, v.password)
        new = ak.strong_password("changed")
        self.secrets += [v.password, new]
        r = v.api.post("/api/v1/me/password", {"current_password": v.password,
                                               "new_password": new})
        assert r.status_code == 204, ak.describe(r)
        want("user.password_change", "user.password_change", "user:" + v.name, v.name, "ok",
             v.api.source)
        third = s.client()
        third.login(v.name, new)
        r = v.api.delete("/api/v1/sessions/" + third.session_id)
        assert r.status_code == 204, ak.describe(r)
        want("session.revoke", "session.revoke", "user:" + v.name, third.session_id, "ok",
             v.api.source, {"username": v.name})
        sid = v.api.session_id
        assert v.api.post("/api/v1/auth/logout").status_code == 204
        want("auth.logout", "auth.logout", "user:" + v.name, v.name, "ok", v.api.source,
             {"session": sid})

        # token.create, token.revoke
        t = ak.create_token(a, "metrics", name="scraper", days=7)
        self.secrets.append(t["token"])
        want("token.create", "token.create", "user:" + adm.name, t["id"], "ok", a.source,
             {"name": "scraper", "role": "metrics", "expires_in_days": 7})
        assert a.delete("/api/v1/tokens/" + t["id"]).status_code == 204
        want("token.revoke", "token.revoke", "user:" + adm.name, t["id"], "ok", a.source)

        # api.denied: a role that may not, a missing CSRF token, a token
        vw = ak.create_user(a, "viewer")
        r = vw.api.post("/api/v1/users", {"username": "nope", "role": "admin",
                                          "password": ak.strong_password()})
        ak.assert_problem(r, 403, "forbidden")
        want("api.denied/role", "api.denied", "user:" + vw.name, "/api/v1/users", "denied",
             vw.api.source, {"method": "POST", "path": "/api/v1/users", "reason": "role"})
        r = vw.api.get("/api/v1/audit")
        ak.assert_problem(r, 403, "forbidden")
        want("api.denied/audit-read", "api.denied", "user:" + vw.name, "/api/v1/audit",
             "denied", vw.api.source, {"method": "GET", "reason": "role"})
        r = vw.api.post("/api/v1/auth/logout", csrf=False)
        ak.assert_problem(r, 403, "csrf")
        want("api.denied/csrf", "api.denied", "user:" + vw.name, "/api/v1/auth/logout",
             "denied", vw.api.source, {"method": "POST", "reason": "csrf"})
        mt = ak.create_token(a, "metrics")
        self.secrets.append(mt["token"])
        tc = s.client(token=mt["token"])
        ak.assert_problem(tc.get("/api/v1/audit/verify"), 403, "forbidden")
        want("api.denied/token", "api.denied", "token:" + mt["id"], "/api/v1/audit/verify",
             "denied", tc.source, {"reason": "role"})


KEYS = ["auth.setup", "user.create", "auth.login/ok", "user.totp_begin",
        "user.totp_enrol", "auth.login/totp", "auth.login/failed", "auth.login/unknown",
        "user.reset_mfa", "user.update", "user.password_change", "session.revoke",
        "auth.logout", "token.create", "token.revoke", "api.denied/role",
        "api.denied/audit-read", "api.denied/csrf", "api.denied/token"]


@pytest.fixture(scope="module")
def acts(admin_env):
    a = Acts(admin_env)
    assert sorted(a.expect) == sorted(KEYS)
    return a


@pytest.fixture(scope="module")
def log(admin_env, acts):
    return ak.audit_all(admin_env.admin.api)


@pytest.mark.parametrize("key", KEYS)
def test_action_is_audited(acts, log, key):
    e = acts.expect[key]
    same = [x for x in log if x["action"] == e["action"] and x["target"] == e["target"]
            and x["outcome"] == e["outcome"]]
    assert same, "no %s entry for target %r outcome %s; log:\n%s" % (
        e["action"], e["target"], e["outcome"],
        "\n".join("%s %s %s %s" % (x["action"], x["target"], x["outcome"], x["actor"])
                  for x in log[:80]))

    def matches(x):
        d = ak.detail(x) or {}
        return (x["actor"] == e["actor"] and x["peer"] == e["peer"] and
                all(d.get(k) == v for k, v in e["detail"].items()))

    assert any(matches(x) for x in same), "expected %r, got %s" % (
        e, json.dumps(same, indent=1)[:3000])


def test_unauthenticated_refusals_are_aggregated(admin_env, acts):
    """A refused setup is unauthenticated: it is summed per 10 s window like
    the broker's events (one entry with a count), so a flood cannot fill the
    log."""
    c = admin_env.server.client()
    for _ in range(20):
        r = c.post("/api/v1/setup", {"setup_token": "moat_st_" + "x" * 43, "username": "late",
                                     "password": ak.strong_password()})
        ak.assert_problem(r, 403, "setup-unavailable")
    def refused(log):
        return [x for x in log if x["action"] == "auth.setup" and x["outcome"] == "denied"
                and x["target"] == "late"]

    got = ak.wait_audit(admin_env.admin.api,
                        lambda log: [x for x in refused(log)
                                     if (ak.detail(x) or {}).get("count", 0) >= 20],
                        what="one denied auth.setup entry with a count", action="auth.")
    e = got[0]
    assert e["outcome"] == "denied" and e["actor"] == "anonymous"
    assert ak.detail(e)["username"] == "late", e
    entries = refused(ak.audit_all(admin_env.admin.api, action="auth.setup"))
    assert len(entries) <= 3, entries


def test_entries_are_well_formed_and_hold_no_secrets(acts, log):
    assert log, "empty audit log"
    for x in log:
        assert tuple(x) == ENTRY_KEYS, list(x)
        assert re.fullmatch(r"[0-9a-f]{64}", x["hash"]) and re.fullmatch(r"[0-9a-f]{64}",
                                                                         x["prev"]), x
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", x["ts"]), x
        assert x["outcome"] in ("ok", "denied", "failed", "error"), x
    # newest first, each linking to the one before
    seqs = [x["seq"] for x in log]
    assert seqs == sorted(seqs, reverse=True)
    for newer, older in zip(log, log[1:]):
        if newer["seq"] == older["seq"] + 1:
            assert newer["prev"] == older["hash"], (newer["seq"], older["seq"])
    text = json.dumps(log)
    for s in acts.secrets:
        assert s not in text, "a secret is in the audit log"
        if "-" in s and len(s) == 11:  # a recovery code, normalised too
            assert s.replace("-", "") not in text


def test_audit_filters(admin_env, acts):
    api = admin_env.admin.api
    admin_actor = "user:" + admin_env.admin.name
    mine = ak.audit_all(api, actor=admin_actor)
    assert mine and all(x["actor"] == admin_actor for x in mine)
    assert {"user.create", "user.update", "token.create"} <= {x["action"] for x in mine}

    users = ak.audit_all(api, action="user.")
    assert users and all(x["action"].startswith("user.") for x in users)
    assert {"user.create", "user.update", "user.reset_mfa", "user.password_change",
            "user.totp_begin", "user.totp_enrol"} <= {x["action"] for x in users}
    logins = ak.audit_all(api, action="auth.login")
    assert logins and {x["action"] for x in logins} == {"auth.login"}
    assert {"ok", "failed"} <= {x["outcome"] for x in logins}
    both = ak.audit_all(api, action="auth.", actor="anonymous")
    assert both and all(x["actor"] == "anonymous" and x["action"].startswith("auth.")
                        for x in both)
    r = api.get("/api/v1/audit", params={"action": "no.such.action"})
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}, r.text

    every = ak.audit_all(api)
    stamps = sorted({x["ts_ms"] for x in every})
    assert len(stamps) >= 3, stamps
    mid = stamps[len(stamps) // 2]
    mid_ts = [x["ts"] for x in every if x["ts_ms"] == mid][0]
    since = ak.audit_all(api, since=mid_ts)
    until = ak.audit_all(api, until=mid_ts)
    assert all(x["ts_ms"] >= mid for x in since) and all(x["ts_ms"] < mid for x in until)
    assert {x["seq"] for x in every if x["ts_ms"] >= mid} <= {x["seq"] for x in since}
    assert {x["seq"] for x in until} == {x["seq"] for x in every if x["ts_ms"] < mid}
    lo, hi = stamps[1], stamps[-2]
    lo_ts = [x["ts"] for x in every if x["ts_ms"] == lo][0]
    hi_ts = [x["ts"] for x in every if x["ts_ms"] == hi][0]
    window = ak.audit_all(api, since=lo_ts, until=hi_ts, action="user.")
    assert {x["seq"] for x in window} == {
        x["seq"] for x in every if lo <= x["ts_ms"] < hi and x["action"].startswith("user.")}
    for bad in ({"since": "yesterday"}, {"until": "2026-13-01T00:00:00Z"},
                {"since": "2026-01-01 00:00:00"}, {"limit": "0"}, {"limit": "201"},
                {"cursor": "abc"}, {"colour": "red"}):
        ak.assert_problem(api.get("/api/v1/audit", params=bad), 400, "bad-request")


def test_cursor_pagination_walks_every_entry_once(admin_env, acts):
    api = admin_env.admin.api
    pages, seqs, cursor = 0, [], None
    while True:
        params = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/api/v1/audit", params=params)
        assert r.status_code == 200, ak.describe(r)
        j = r.json()
        assert len(j["items"]) <= 2
        seqs += [x["seq"] for x in j["items"]]
        pages += 1
        cursor = j["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and len(j["items"]) == 2
        assert pages < 10000
    assert seqs == list(range(seqs[0], 0, -1)), seqs  # newest first, no gap, no repeat
    full = {x["seq"]: x["hash"] for x in ak.audit_all(api)}
    assert set(seqs) <= set(full)
    assert pages == (len(seqs) + 1) // 2, (pages, len(seqs))


# --------------------------------------------------------------------------
# broker security events
# --------------------------------------------------------------------------

class SrcConn(mk.RawConn):
    """mk.RawConn from a chosen loopback address."""

    def __init__(self, port, ctx, source, timeout=mk.WAIT):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect((mk.HOST, port))
        self.s = ctx.wrap_socket(sock, server_hostname=mk.HOST)
        self.s.settimeout(timeout)
        self.buf = b""
        self.closed = False


def refused_handshake(port, ctx, source):
    """Connect, send CONNECT; True if TLS (or the server) refused us before
    any CONNACK."""
    try:
        c = SrcConn(port, ctx, source)
    except OSError:  # ssl.SSLError too
        return True
    try:
        c.send(mk.connect_pkt("rogue"))
        return c.recv_packet(timeout=mk.WAIT) is None
    except OSError:
        return True
    finally:
        c.close()


def sec_entries(log, action, target):
    return [x for x in log if x["action"] == action and x["target"] == target]


def test_broker_security_events_are_summed_per_window(admin_env, scratch):
    s = admin_env.server
    api = admin_env.admin.api
    p = s.moat("cert", "issue", "--dir", s.dir, "--device", "dev1")
    assert p.returncode == 0, p.stderr
    dev_crt = os.path.join(s.dir, "devices", "dev1.crt")
    dev_key = os.path.join(s.dir, "devices", "dev1.key")
    pki = mk.PKI(s.dir, os.path.join(scratch, "audit-pki"))
    other_crt, other_key = pki.other_ca("audit")
    rogue = pki.issue("dev1", ca_crt=other_crt, ca_key=other_key)

    tls_src, dev_src = ak.new_source(), ak.new_source()
    before = {x["seq"] for x in ak.audit_all(api, action="mqtt.")}
    # TLS refused: no client certificate; a certificate from another CA
    assert refused_handshake(s.mqtt_port, mk.client_ssl_context(s.ca), tls_src)
    assert refused_handshake(s.mqtt_port, mk.client_ssl_context(s.ca, rogue.cert, rogue.key),
                             tls_src)
    # dev1 (a real device certificate) publishes to dev2's topic
    ctx = mk.client_ssl_context(s.ca, dev_crt, dev_key)
    conn = SrcConn(s.mqtt_port, ctx, dev_src)
    try:
        conn.send(mk.connect_pkt("dev1"))
        assert conn.expect(mk.CONNACK).reason() == 0
        conn.send(mk.publish_pkt("d/dev2/telemetry", b"x", qos=1, pid=1))
        ack = conn.expect(mk.PUBACK)
        assert ack.reason() == 0x87, ack  # not authorized
        t0 = time.monotonic()

        def first_events(log):
            new = [x for x in log if x["seq"] not in before]
            tls = [x for x in new if x["action"] == "mqtt.tls_handshake_failed"
                   and x["peer"] == tls_src]
            pub = sec_entries(new, "mqtt.publish_denied", "dev1")
            if sum(ak.detail(x)["count"] for x in tls) >= 2 and pub:
                return tls, pub
            return None

        tls, pub = ak.wait_audit(api, first_events, timeout=ak.SECEV_WINDOW_S + 20,
                                 what="mqtt.tls_handshake_failed and mqtt.publish_denied",
                                 action="mqtt.")
        waited = time.monotonic() - t0
        for x in tls:
            assert x["outcome"] == "denied" and x["actor"] == "anonymous", x
            assert ak.detail(x)["count"] >= 1 and ak.detail(x)["window_ms"] == 10000, x
        assert len(pub) == 1, pub
        d = ak.detail(pub[0])
        assert pub[0]["actor"] == "device:dev1" and pub[0]["outcome"] == "denied", pub
        assert pub[0]["peer"] == dev_src, pub
        assert d["count"] == 1 and "d/dev2/telemetry" in d["example"], d

        # A flood right after a flush lands in one window: one entry.
        seen = {x["seq"] for x in ak.audit_all(api, action="mqtt.")}
        conn.send(b"".join(mk.publish_pkt("d/dev2/flood", b"%d" % i, qos=0)
                           for i in range(200)))
        conn.send(mk.publish_pkt("d/dev1/sync", b"", qos=1, pid=2))  # allowed: a barrier
        ack = conn.expect(mk.PUBACK, timeout=10)
        assert ack.reason() == 0, ack

        def flood(log):
            new = [x for x in sec_entries(log, "mqtt.publish_denied", "dev1")
                   if x["seq"] not in seen]
            return new or None

        new = ak.wait_audit(api, flood, timeout=ak.SECEV_WINDOW_S + 20,
                            what="the flood's mqtt.publish_denied", action="mqtt.")
        assert len(new) == 1, new
        d = ak.detail(new[0])
        assert d["count"] >= 200, d
        assert "d/dev2/flood" in d["example"], d
    finally:
        conn.close()
    assert waited < 40, waited
    # one entry, not 200
    assert len(sec_entries(ak.audit_all(api, action="mqtt."), "mqtt.publish_denied",
                           "dev1")) == 2
    r = api.get("/api/v1/audit/verify")
    assert r.status_code == 200 and r.json()["status"] == "intact", r.text


def test_live_verify_says_intact(admin_env, acts):
    r = admin_env.admin.api.get("/api/v1/audit/verify")
    assert r.status_code == 200, ak.describe(r)
    j = r.json()
    assert j["status"] == "intact" and j["first_bad_seq"] == 0, j
    assert j["entries"] >= len(KEYS), j
    for k in ("reason", "checkpoints", "sealed_seq", "unsealed"):
        assert k in j, j


# --------------------------------------------------------------------------
# tampering, found offline by `moat audit verify --dir`
# --------------------------------------------------------------------------

class Sealed:
    def __init__(self, server, entries):
        self.server, self.entries = server, entries


@pytest.fixture(scope="module")
def sealed(moat_bin, scratch):
    """A data directory whose server made ~30 entries and then stopped
    (every entry is sealed by its own checkpoint as it is written; the log
    stream carries each checkpoint's head)."""
    s = ak.ApiServer(moat_bin, scratch, "audit-sealed")
    s.start()
    try:
        adm = ak.setup_admin(s)
        for i in range(12):
            t = ak.create_token(adm.api, "viewer", name="t%d" % i)
            assert adm.api.delete("/api/v1/tokens/" + t["id"]).status_code == 204
        n = adm.api.get("/api/v1/audit/verify").json()["entries"]
        assert adm.api.get("/api/v1/audit/verify").json()["unsealed"] == 0
    finally:
        s.stop()
    assert s.broker.exit_code == 0, s.broker.tail()
    line = [l for l in s.broker.log_lines() if "event=audit_checkpoint" in l]
    assert line and ("seq=%d " % n) in line[-1], s.broker.tail()
    return Sealed(s, n)


def tampered_copy(sealed, name, sql, args=()):
    d = sealed.server.dir + "-" + name
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(sealed.server.dir, d)
    if sql:
        con = sqlite3.connect(os.path.join(d, "moat.db"))
        try:
            with con:
                # what an attacker with write access would do first
                con.execute("DROP TRIGGER audit_log_no_update")
                con.execute("DROP TRIGGER audit_log_no_delete")
                for stmt in sql:
                    con.execute(stmt, args)
        finally:
            con.close()
    return d


def verify_dir(sealed, d):
    p = sealed.server.moat("audit", "verify", "--dir", d)
    return p.returncode, p.stdout + p.stderr


def test_untampered_copy_is_intact(sealed):
    d = tampered_copy(sealed, "intact", None)
    rc, out = verify_dir(sealed, d)
    assert rc == 0, out
    assert "intact" in out and "NOT" not in out, out
    assert "%d entries" % sealed.entries in out, out
    assert "sealed up to seq %d" % sealed.entries in out, out


def _assert_fault(sealed, d, fault, seq):
    rc, out = verify_dir(sealed, d)
    assert rc != 0, out
    m = re.search(r"NOT intact: (\w+) at seq (\d+)", out)
    assert m, out
    assert (m.group(1), int(m.group(2))) == (fault, seq), out


def test_modified_entry_detected(sealed):
    k = sealed.entries // 2
    d = tampered_copy(sealed, "modified",
                      ["UPDATE audit_log SET detail = '{\"forged\":true}' WHERE seq = ?"], (k,))
    _assert_fault(sealed, d, "modified", k)


def test_removed_entry_detected(sealed):
    k = sealed.entries // 2
    d = tampered_copy(sealed, "removed", ["DELETE FROM audit_log WHERE seq = ?"], (k,))
    _assert_fault(sealed, d, "removed", k)


def test_reordered_entries_detected(sealed):
    k = sealed.entries // 2
    d = tampered_copy(sealed, "reordered", [
        "UPDATE audit_log SET seq = -1 WHERE seq = %d" % k,
        "UPDATE audit_log SET seq = %d WHERE seq = %d" % (k, k + 1),
        "UPDATE audit_log SET seq = %d WHERE seq = -1" % (k + 1),
    ])
    _assert_fault(sealed, d, "reordered", k)


def test_truncated_log_detected(sealed):
    n = sealed.entries
    d = tampered_copy(sealed, "truncated", ["DELETE FROM audit_log WHERE seq > ?"], (n - 3,))
    _assert_fault(sealed, d, "truncated", n - 2)
