"""GET /api/v1/events/ws: the audit log as a live WebSocket stream, with
the API's authentication (bearer token, or session cookie with the Origin
check) and audit:read, re-checked before every delivery. Client: a raw
WebSocket over ssl+socket (wskit)."""

import json
import socket
import time

import pytest

import apikit as ak
import wskit
from apikit import admin_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("management API")

PATH = "/api/v1/events/ws"


def connect(srv, headers=(), origin=None):
    raw = ak.RawHttp(srv, timeout=20)
    host = "%s:%d" % (ak.HOST, srv.api_port)
    return wskit.WebSocket.open(raw.s, PATH, host, origin=origin, extra=list(headers))


def next_audit(ws, action, timeout=15):
    """The next audit message with this action (skipping others)."""
    deadline = time.monotonic() + timeout
    ws.s.settimeout(timeout)
    while time.monotonic() < deadline:
        op, payload = ws.recv()
        assert op == wskit.TEXT, (op, payload)
        m = json.loads(payload)
        if m["type"] == "audit" and m["entry"]["action"] == action:
            return m["entry"]
    raise AssertionError("no %s event" % action)


def test_events_need_authentication_and_audit_read(admin_env):
    srv = admin_env.server
    ws, hs = connect(srv)
    assert ws is None and hs.status == 401, hs.status
    viewer = ak.create_token(admin_env.admin.api, "viewer")
    ws, hs = connect(srv, ["Authorization: Bearer " + viewer["token"]])
    assert ws is None and hs.status == 403, hs.status
    assert json.loads(hs.body)["type"].endswith("/forbidden")


def test_events_stream_to_a_token_until_it_is_revoked(admin_env):
    srv, adm = admin_env.server, admin_env.admin.api
    tok = ak.create_token(adm, "auditor")
    ws, hs = connect(srv, ["Authorization: Bearer " + tok["token"]])
    assert hs.status == 101, (hs.status, hs.body)
    name = ak.unique("evt-")
    ak.create_token(adm, "viewer", name=name)
    e = next_audit(ws, "token.create")
    assert e["actor"] == "user:" + adm_name(admin_env) and e["outcome"] == "ok", e
    # revoked: the next delivery is refused and the stream closes with 1008
    assert adm.delete("/api/v1/tokens/" + tok["id"]).status_code == 204
    ws.s.settimeout(15)
    while True:
        op, payload = ws.recv()
        if op == wskit.CLOSE:
            assert ws.close_code((op, payload)) == 1008, payload
            break
        m = json.loads(payload)
        # the revocation itself may still be delivered, nothing after it
        assert m["entry"]["action"] in ("token.revoke",), m
    ws.s.close()


def adm_name(env):
    return env.admin.name


def test_events_with_a_session_cookie_and_origin(admin_env):
    srv = admin_env.server
    aud = ak.create_user(admin_env.admin.api, "auditor")
    cookie = "Cookie: __Host-moat_session=" + aud.api.cookie
    own = "https://%s:%d" % (ak.HOST, srv.api_port)
    ws, hs = connect(srv, [cookie], origin="https://evil.example")
    assert ws is None and hs.status == 403, hs.status
    ws, hs = connect(srv, [cookie], origin=own)
    assert hs.status == 101, (hs.status, hs.body)
    ak.create_token(admin_env.admin.api, "viewer")
    next_audit(ws, "token.create")
    # logged out: the stream ends at the next delivery
    assert aud.api.post("/api/v1/auth/logout").status_code == 204
    ws.s.settimeout(15)
    while True:
        op, payload = ws.recv()
        if op == wskit.CLOSE:
            assert ws.close_code((op, payload)) == 1008
            break
    ws.s.close()


def test_events_refuse_a_bad_handshake(admin_env):
    srv = admin_env.server
    tok = ak.create_token(admin_env.admin.api, "auditor")
    ws, hs = connect(srv, ["Authorization: Bearer " + tok["token"],
                           "Sec-WebSocket-Version: 8"])
    assert ws is None and hs.status in (400, 426), hs.status
