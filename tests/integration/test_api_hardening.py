"""
Regression tests for the management plane's security review: tokens bound
to their creator's current state, tokens that cannot mint tokens, the MFA
gate per session, chunked trailers never read as headers, and audit rows
added without the key named in a sealed entry instead of silently vouched
for.
"""

import hashlib
import os
import sqlite3
import struct

import pytest

import apikit as ak
from apikit import admin_env, api_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.moat_only("management API")


def test_token_dies_with_its_creator_and_follows_a_demotion(admin_env):
    adm = admin_env.admin.api
    op = ak.create_user(adm, "operator")
    tok = ak.create_token(op.api, "operator")
    t = admin_env.server.client(token=tok["token"])
    assert t.get("/api/v1/tokens").status_code == 200
    # demoted to viewer: the token keeps only what a viewer may do
    assert adm.patch("/api/v1/users/" + op.name, {"role": "viewer"}).status_code == 200
    ak.assert_problem(t.get("/api/v1/tokens"), 403, "forbidden")
    # disabled: the token stops working at all
    assert adm.patch("/api/v1/users/" + op.name, {"disabled": True}).status_code == 200
    ak.assert_problem(t.get("/api/v1/users"), 401, "unauthorized")


def test_a_token_never_mints_tokens(admin_env):
    adm = admin_env.admin.api
    tok = ak.create_token(adm, "admin")
    t = admin_env.server.client(token=tok["token"])
    ak.assert_problem(t.post("/api/v1/tokens", {"name": "child", "role": "metrics"}), 403,
                      "forbidden")


def test_a_password_only_session_stays_gated_after_enrolment_elsewhere(admin_env):
    adm = admin_env.admin.api
    a2 = ak.create_user(adm, "admin", login=False)
    early = admin_env.server.client()
    early.login(a2.name, a2.password)
    ak.assert_problem(early.get("/api/v1/users"), 403, "mfa-enrolment-required")
    second = admin_env.server.client()
    second.login(a2.name, a2.password)
    ak.enrol_totp(second)
    assert second.get("/api/v1/users").status_code == 200
    # the session opened with the password alone ended with the enrolment
    ak.assert_problem(early.get("/api/v1/users"), 401, "unauthorized")


def test_chunked_trailers_are_not_headers(admin_env):
    s = admin_env.server
    tok = ak.create_token(admin_env.admin.api, "admin")
    c = ak.RawHttp(s)
    body = b'{"name":"t","role":"metrics"}'
    req = (b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" +
           b"%x\r\n" % len(body) + body + b"\r\n0\r\n" +
           b"Authorization: Bearer " + tok["token"].encode() + b"\r\n\r\n")
    c.send(req)
    r = c.read_response()
    assert r.status == 401, r
    c.close()


def _entry_hash(seq, ts, actor, action, target, outcome, peer, detail, prev):
    h = hashlib.sha256()
    h.update(b"moat-audit-v1\0")
    h.update(struct.pack(">qq", seq, ts))
    for s in (actor, action, target, outcome, peer, detail):
        b = s.encode()
        h.update(struct.pack(">I", len(b)) + b)
    h.update(prev)
    return h.digest()


def test_rows_added_without_the_key_are_named_not_vouched_for(api_server):
    s = api_server("forged-tail")
    adm = ak.setup_admin(s)
    seq_before = adm.api.get("/api/v1/audit/verify").json()["entries"]
    s.stop()
    db = sqlite3.connect(os.path.join(s.dir, "moat.db"))
    seq, prev = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    assert seq == seq_before
    # a correctly chained forged entry (no key needed for that)
    row = (seq + 1, 1, "user:root-admin", "user.create", "backdoor", "ok", "127.0.0.1",
           '{"role":"admin"}')
    h = _entry_hash(*row, prev)
    db.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?)", row + (prev, h))
    db.commit()
    db.close()
    s.start()
    adm.api.login(adm.name, adm.password, totp=adm.totp.next_code())
    log = ak.audit_all(adm.api, action="audit.")
    notes = [x for x in log if x["action"] == "audit.unsealed_tail"]
    assert notes, log
    d = ak.detail(notes[0])
    assert d == {"first": seq + 1, "last": seq + 1}, d
    assert notes[0]["outcome"] == "error"
    assert "event=audit_unsealed_tail" in s.broker.tail(200)
