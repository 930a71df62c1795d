"""Authentication of the management API over real HTTPS: the first-admin
setup with the setup token `moat init` printed, the TOTP enrolment gate for
administrators, login with TOTP and recovery codes, the password policy,
indistinguishable login failures, throttling, session cookies, logout,
password changes, session lists and revocation, and CSRF."""

import os
import sqlite3
import time

import pytest

import apikit as ak
from apikit import admin_env, api_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.moat_only("management API")

SETUP = "/api/v1/setup"
WRONG = "Definitely-Not-The-Password-42"


def db_exec(server, sql, args=()):
    """Edit the data directory's database under the running server (what an
    hour or a day of waiting would do to a timestamp)."""
    con = sqlite3.connect(os.path.join(server.dir, "moat.db"), timeout=15)
    try:
        with con:
            n = con.execute(sql, args).rowcount
    finally:
        con.close()
    return n


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------

def test_setup_token_works_once(api_server):
    s = api_server("setup")
    c = s.client()
    pw = ak.strong_password()
    # a second token, made before any operator exists
    p = s.moat("setup-token", "--dir", s.dir)
    assert p.returncode == 0, p.stderr
    other = p.stdout.strip()
    assert other.startswith("moat_st_") and other != s.setup_token, p.stdout

    # wrong tokens
    for bad in ("moat_st_" + "A" * 43, "garbage", s.setup_token[:-1]):
        r = c.post(SETUP, {"setup_token": bad, "username": "alice", "password": pw})
        ak.assert_problem(r, 403, "setup-unavailable", field="setup_token")
    # a password the policy refuses does not use the token up
    r = c.post(SETUP, {"setup_token": s.setup_token, "username": "alice",
                       "password": "password1234"})
    ak.assert_problem(r, 422, "validation", field="password")
    r = c.post(SETUP, {"setup_token": s.setup_token, "username": "Alice!", "password": pw})
    ak.assert_problem(r, 422, "validation", field="username")

    r = c.post(SETUP, {"setup_token": s.setup_token, "username": "alice", "password": pw})
    assert r.status_code == 201, ak.describe(r)
    j = r.json()
    assert j["username"] == "alice" and j["role"] == "admin", j
    assert j["mfa_enrolled"] is False and j["disabled"] is False, j
    assert "password" not in r.text and "pw_hash" not in r.text

    # the same token a second time, and the other (unused) token: refused
    for tok in (s.setup_token, other):
        r = c.post(SETUP, {"setup_token": tok, "username": "mallory",
                           "password": ak.strong_password("m")})
        ak.assert_problem(r, 403, "setup-unavailable")
    # no new setup token once an operator exists
    p = s.moat("setup-token", "--dir", s.dir)
    assert p.returncode != 0, p.stdout
    assert "moat_st_" not in p.stdout
    assert "operator already exists" in p.stderr, p.stderr
    # only alice was created
    c.login("alice", pw)
    r = c.get("/api/v1/me")
    assert r.status_code == 200 and r.json()["username"] == "alice", ak.describe(r)
    s.client().login("mallory", ak.strong_password("m"), expect=401)


def test_expired_setup_token_refused(api_server):
    """The token is valid for an hour: age it in the database instead of
    waiting, then `moat setup-token` makes a fresh one that works."""
    s = api_server("setup-exp", start=False)
    assert db_exec(s, "UPDATE setup_tokens SET expires_at = ?", (now_ms() - 1000,)) == 1
    s.start()
    c = s.client()
    pw = ak.strong_password()
    r = c.post(SETUP, {"setup_token": s.setup_token, "username": "alice", "password": pw})
    j = ak.assert_problem(r, 403, "setup-unavailable", field="setup_token")
    assert "expired" in j.get("detail", ""), j
    p = s.moat("setup-token", "--dir", s.dir)
    assert p.returncode == 0, p.stderr
    r = c.post(SETUP, {"setup_token": p.stdout.strip(), "username": "alice", "password": pw})
    assert r.status_code == 201, ak.describe(r)


def test_first_admin_must_enrol_totp_first(api_server):
    s = api_server("mfa-gate")
    pw = ak.strong_password()
    c = s.client()
    assert c.post(SETUP, {"setup_token": s.setup_token, "username": "root",
                          "password": pw}).status_code == 201
    j = c.login("root", pw).json()
    assert j["mfa_enrolment_required"] is True and j["mfa_enrolled"] is False, j
    second = s.client()
    second.login("root", pw)

    blocked = [
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/users/root", None),
        ("POST", "/api/v1/users", {"username": "x2", "role": "viewer",
                                   "password": ak.strong_password()}),
        ("PATCH", "/api/v1/users/root", {"disabled": False}),
        ("POST", "/api/v1/users/root/reset-mfa", {}),
        ("GET", "/api/v1/tokens", None),
        ("POST", "/api/v1/tokens", {"name": "t", "role": "viewer"}),
        ("DELETE", "/api/v1/tokens/abc", None),
        ("GET", "/api/v1/sessions", None),
        ("DELETE", "/api/v1/sessions/abc", None),
        ("GET", "/api/v1/audit", None),
        ("GET", "/api/v1/audit/verify", None),
        ("GET", "/metrics", None),
    ]
    for method, path, body in blocked:
        r = c.request(method, path, body) if body is not None else c.request(method, path)
        ak.assert_problem(r, 403, "mfa-enrolment-required")

    # what stays reachable: /me, /me/password, /me/totp(/confirm), logout
    me = c.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["mfa_enrolment_required"] is True, ak.describe(me)
    r = c.post("/api/v1/me/password", {"current_password": WRONG,
                                       "new_password": ak.strong_password()})
    ak.assert_problem(r, 403, "invalid-credentials", field="current_password")
    r = c.post("/api/v1/me/totp/confirm", {"code": "123456"})
    ak.assert_problem(r, 409, "conflict")  # nothing begun yet
    r = c.post("/api/v1/me/totp", {})
    assert r.status_code == 200, ak.describe(r)
    r = c.post("/api/v1/me/totp/confirm", {"code": ak.Totp(r.json()["secret"]).wrong_code()})
    ak.assert_problem(r, 422, "validation", field="code")
    assert second.post("/api/v1/auth/logout").status_code == 204
    ak.assert_problem(second.get("/api/v1/me"), 401, "unauthorized")

    totp, codes = ak.enrol_totp(c)
    assert c.get("/api/v1/users").status_code == 200  # this session is enrolled now
    me = c.get("/api/v1/me").json()
    assert me["mfa_enrolled"] is True and me["mfa_enrolment_required"] is False, me
    ak.assert_problem(c.post("/api/v1/me/totp", {}), 409, "conflict")  # enrolled already
    # from now on the password alone is not enough
    third = s.client()
    ak.assert_problem(third.login("root", pw, expect=401), 401, "mfa-required", field="totp_code")
    third.login("root", pw, totp=totp.next_code())
    assert third.get("/api/v1/users").status_code == 200


# --------------------------------------------------------------------------
# login
# --------------------------------------------------------------------------

def test_login_with_totp_and_recovery_codes(admin_env):
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "operator")
    totp, codes = ak.enrol_totp(u.api)
    src = ak.new_source()

    def login(expect, **kw):
        return s.client(source=src).login(u.name, u.password, expect=expect, **kw)

    ak.assert_problem(login(401), 401, "mfa-required", field="totp_code")
    ak.assert_problem(login(401, totp=totp.wrong_code()), 401, "invalid-credentials")
    ak.assert_problem(login(401, totp="12345"), 401, "invalid-credentials")
    code = totp.next_code()
    j = login(200, totp=code).json()
    assert j["username"] == u.name and j["mfa_enrolled"] is True, j
    # the same code again, at once: a replay
    ak.assert_problem(login(401, totp=code), 401, "invalid-credentials")
    # the right code with a wrong password is no better
    r = s.client(source=src).login(u.name, WRONG, totp=ak.totp_now(totp.secret), expect=401)
    ak.assert_problem(r, 401, "invalid-credentials")
    # a recovery code works once (dashes and case do not matter)
    login(200, recovery=codes[0])
    ak.assert_problem(login(401, recovery=codes[0]), 401, "invalid-credentials")
    login(200, recovery=codes[1].upper().replace("-", ""))
    ak.assert_problem(login(401, recovery="aaaaa-bbbbb"), 401, "invalid-credentials")


@pytest.mark.parametrize("case", ["short", "common", "common-decorated", "username"])
def test_password_policy_on_user_create(admin_env, case):
    name = ak.unique("pol-")
    pw = {"short": "Xq7#vLp2",
          "common": "password1234",
          "common-decorated": "Password1234!",
          "username": "My-%s-Secret-Garden-9" % name}[case]
    r = admin_env.admin.api.post("/api/v1/users", {"username": name, "role": "viewer",
                                                   "password": pw})
    ak.assert_problem(r, 422, "validation", field="password")
    assert admin_env.admin.api.get("/api/v1/users/" + name).status_code == 404


def test_password_policy_on_password_change(admin_env):
    u = ak.create_user(admin_env.admin.api, "viewer")
    for bad in ("short-pw", "password1234", "xx-%s-yy-zz-1234" % u.name.upper()):
        r = u.api.post("/api/v1/me/password", {"current_password": u.password,
                                               "new_password": bad})
        ak.assert_problem(r, 422, "validation", field="new_password")
    # nothing changed: the old password still logs in
    admin_env.server.client().login(u.name, u.password)


def test_unknown_user_and_wrong_password_look_the_same(admin_env):
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "viewer", login=False)
    ghost = ak.unique("ghost-")
    answers, times = {}, {}
    for who in (u.name, ghost, u.name, ghost):
        t0 = time.monotonic()
        r = s.client().login(who, WRONG, expect=401)
        times.setdefault(who, []).append(time.monotonic() - t0)
        answers.setdefault(who, []).append(r)
    a, b = answers[u.name][0], answers[ghost][0]
    for r in (a, b):
        ak.assert_problem(r, 401, "invalid-credentials")
        assert "Set-Cookie" not in r.headers
    assert a.json() == b.json(), (a.text, b.text)
    assert sorted(a.headers.items()) == sorted(b.headers.items())
    # an unknown user costs a password hash too (no fast path to probe names)
    assert min(times[ghost]) >= 0.3 * min(times[u.name]), times
    # a disabled account answers the same, even with the right password
    r = admin_env.admin.api.patch("/api/v1/users/" + u.name, {"disabled": True})
    assert r.status_code == 200, ak.describe(r)
    d = s.client().login(u.name, u.password, expect=401)
    assert d.json() == a.json(), d.text


def _throttled(r):
    ak.assert_problem(r, 429, "throttled")
    ra = r.headers.get("Retry-After", "")
    assert ra.isdigit() and 1 <= int(ra) <= 15 * 60, "Retry-After %r" % ra
    return int(ra)


ACCOUNT_FREE_FAILURES = 50  # src/core/limits.h MOAT_THROTTLE_ACCOUNT_FREE_FAILURES


def test_throttle_per_account_and_address(admin_env):
    """Five failures from one address are free; the next one makes that
    address wait for that account (1 s, doubling with each further failure:
    src/core/limits.h), even with the right password; waiting it out lets
    the right password in again."""
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "viewer", login=False)
    c = s.client()  # one address (one client: at most 16 connections an address)
    for i in range(ak.THROTTLE_FREE_FAILURES):
        r = c.login(u.name, WRONG, expect=None)
        ak.assert_problem(r, 401, "invalid-credentials")
    # the 6th failure starts the wait (it may already be refused itself)
    r = c.login(u.name, WRONG, expect=None)
    assert r.status_code in (401, 429), ak.describe(r)
    wait = _throttled(c.login(u.name, u.password, expect=None))
    time.sleep(wait + 0.3)
    c.login(u.name, u.password)


def test_failures_from_one_address_do_not_lock_out_another(admin_env):
    """Anyone who can reach the API could once throttle an account for
    everyone. Twenty and more failed attempts from one address (waiting out
    its first waits, so the account has 8 real failures) leave the right
    password working from another address at once, while the guessing
    address stays throttled."""
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "viewer", login=False)
    guesser = s.client()  # one address (one client: at most 16 connections an address)
    failures = attempts = 0
    while failures < 8:
        r = guesser.login(u.name, WRONG, expect=None)
        attempts += 1
        if r.status_code == 429:
            time.sleep(_throttled(r) + 0.2)
            continue
        ak.assert_problem(r, 401, "invalid-credentials")
        failures += 1
    while attempts < 24:
        r = guesser.login(u.name, WRONG, expect=None)
        attempts += 1
        assert r.status_code in (401, 429), ak.describe(r)
    # the owner, elsewhere, right away
    owner = s.client()
    assert owner.source != guesser.source
    owner.login(u.name, u.password)
    # the guesser is still throttled, for this account and as an address
    _throttled(guesser.login(u.name, u.password, expect=None))
    _throttled(guesser.login(ak.unique("nobody-"), WRONG, expect=None))


def test_failures_spread_over_addresses_are_throttled(admin_env):
    """Guesses at one account from ever new addresses (each within its own
    free failures) are throttled at the account's budget, within 100 in
    all (NIST SP 800-63B 5.2.2), for every address, the right password
    too."""
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "viewer", login=False)
    failures, first_429 = 0, None
    for i in range(101):
        r = s.client().login(u.name, WRONG, expect=None)
        if r.status_code == 429:
            first_429 = r
            break
        ak.assert_problem(r, 401, "invalid-credentials")
        failures += 1
    assert first_429 is not None, "101 attempts from 101 addresses, none throttled"
    # the budget, and the failure that starts the wait (a slow attempt may
    # have come after the first 1 s wait and failed once more)
    assert ACCOUNT_FREE_FAILURES + 1 <= failures <= 100, failures
    # keep guessing as the waits allow until the wait is long enough to
    # check the right password against it
    wait = _throttled(first_429)
    while wait < 4:
        time.sleep(wait + 0.2)
        r = s.client().login(u.name, WRONG, expect=None)
        if r.status_code == 429:
            wait = _throttled(r)
        else:
            ak.assert_problem(r, 401, "invalid-credentials")
            failures += 1
    assert failures <= 100
    _throttled(s.client().login(u.name, u.password, expect=None))
    # other accounts are not affected
    v = ak.create_user(admin_env.admin.api, "viewer", login=False)
    s.client().login(v.name, v.password)


def test_throttle_per_client_address(admin_env):
    s = admin_env.server
    victim = ak.create_user(admin_env.admin.api, "viewer", login=False)
    src = ak.new_source()
    for i in range(ak.THROTTLE_FREE_FAILURES):
        r = s.client(source=src).login(ak.unique("nobody-"), WRONG, expect=None)
        ak.assert_problem(r, 401, "invalid-credentials")
    r = s.client(source=src).login(ak.unique("nobody-"), WRONG, expect=None)
    assert r.status_code in (401, 429), ak.describe(r)
    # that address is throttled for every account, the right password too
    _throttled(s.client(source=src).login(victim.name, victim.password, expect=None))
    # the account itself is fine from another address
    s.client().login(victim.name, victim.password)


# --------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------

def _cookie_attrs(set_cookie):
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name, value, attrs


def test_session_cookie_attributes(admin_env):
    u = ak.create_user(admin_env.admin.api, "viewer", login=False)
    c = admin_env.server.client()
    r = c.login(u.name, u.password)
    sc = r.headers.get("Set-Cookie")
    assert sc, r.headers
    name, value, attrs = _cookie_attrs(sc)
    assert name == "__Host-moat_session" and len(value) >= 32, sc
    assert "httponly" in attrs and "secure" in attrs, sc
    assert attrs.get("samesite", "").lower() == "strict", sc
    assert attrs.get("path") == "/", sc
    assert "domain" not in attrs, sc
    if "max-age" in attrs:
        assert 0 < int(attrs["max-age"]) <= 12 * 3600, sc
    j = r.json()
    assert len(j["csrf_token"]) >= 32 and j["csrf_token"] != value, j
    assert value not in r.text  # the secret is only in the cookie
    assert j["session_id"] and j["session_id"] not in value, j
    # the logout answer clears it
    r = c.post("/api/v1/auth/logout")
    assert r.status_code == 204, ak.describe(r)
    name, value, attrs = _cookie_attrs(r.headers.get("Set-Cookie", ""))
    assert name == "__Host-moat_session" and value == "" and attrs.get("max-age") == "0", r.headers


def test_logout_ends_the_session(admin_env):
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "operator")
    secret = u.api.cookie
    assert secret
    assert u.api.get("/api/v1/me").status_code == 200
    assert u.api.post("/api/v1/auth/logout").status_code == 204
    replay = s.client()
    ak.assert_problem(replay.get("/api/v1/me", headers={"Cookie": "__Host-moat_session=" + secret}),
                      401, "unauthorized")
    ak.assert_problem(replay.post("/api/v1/auth/logout", headers={
        "Cookie": "__Host-moat_session=" + secret, "X-CSRF-Token": u.api.csrf}), 401, "unauthorized")
    ak.assert_problem(u.api.get("/api/v1/me"), 401, "unauthorized")


def test_password_change_ends_other_sessions(admin_env):
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "auditor")
    other = s.client()
    other.login(u.name, u.password)
    assert other.get("/api/v1/me").status_code == 200
    r = u.api.post("/api/v1/me/password", {"current_password": WRONG,
                                           "new_password": ak.strong_password()})
    ak.assert_problem(r, 403, "invalid-credentials", field="current_password")
    new = ak.strong_password("new")
    r = u.api.post("/api/v1/me/password", {"current_password": u.password, "new_password": new})
    assert r.status_code == 204, ak.describe(r)
    assert u.api.get("/api/v1/me").status_code == 200  # this session goes on
    ak.assert_problem(other.get("/api/v1/me"), 401, "unauthorized")
    ak.assert_problem(s.client().login(u.name, u.password, expect=401), 401,
                      "invalid-credentials")
    s.client().login(u.name, new)


def test_session_list_and_revocation(admin_env):
    s = admin_env.server
    adm = admin_env.admin.api
    u = ak.create_user(adm, "viewer")
    b = s.client(user_agent="second-browser/2")
    b.login(u.name, u.password)
    stranger = ak.create_user(adm, "operator")

    r = u.api.get("/api/v1/sessions")
    assert r.status_code == 200, ak.describe(r)
    items = {i["id"]: i for i in r.json()["items"]}
    assert set(items) == {u.api.session_id, b.session_id}, items
    assert items[u.api.session_id]["current"] is True
    assert items[b.session_id]["current"] is False
    assert items[b.session_id]["user_agent"] == "second-browser/2"
    assert items[b.session_id]["peer"] == b.source
    assert all(i["username"] == u.name for i in items.values())
    for i in items.values():
        assert set(i) >= {"id", "username", "created_at", "last_seen", "peer", "user_agent",
                          "current"}, i
    # only admins see everyone's, and revoke anyone's
    ak.assert_problem(u.api.get("/api/v1/sessions", params={"all": "true"}), 403, "forbidden")
    r = adm.get("/api/v1/sessions", params={"all": "true"})
    assert r.status_code == 200, ak.describe(r)
    assert {u.api.session_id, b.session_id, stranger.api.session_id} <= {
        i["id"] for i in r.json()["items"]}
    # someone else's session is "not found" to a non-admin
    ak.assert_problem(stranger.api.delete("/api/v1/sessions/" + b.session_id), 404, "not-found")
    assert b.get("/api/v1/me").status_code == 200
    # revoke my other session
    r = u.api.delete("/api/v1/sessions/" + b.session_id)
    assert r.status_code == 204, ak.describe(r)
    ak.assert_problem(b.get("/api/v1/me"), 401, "unauthorized")
    ak.assert_problem(u.api.delete("/api/v1/sessions/" + b.session_id), 404, "not-found")
    assert u.api.get("/api/v1/me").status_code == 200
    # an administrator revokes someone else's
    r = adm.delete("/api/v1/sessions/" + u.api.session_id)
    assert r.status_code == 204, ak.describe(r)
    ak.assert_problem(u.api.get("/api/v1/me"), 401, "unauthorized")
    assert adm.get("/api/v1/me").status_code == 200


def test_idle_and_old_sessions_end(admin_env):
    """30 minutes idle or 12 hours in all: age the session rows instead of
    waiting."""
    s = admin_env.server
    idle = ak.create_user(admin_env.admin.api, "viewer")
    old = s.client()
    old.login(idle.name, idle.password)
    assert idle.api.get("/api/v1/me").status_code == 200
    assert db_exec(s, "UPDATE op_sessions SET last_seen = ? WHERE sid = ?",
                   (now_ms() - 31 * 60 * 1000, idle.api.session_id)) == 1
    assert db_exec(s, "UPDATE op_sessions SET created_at = ? WHERE sid = ?",
                   (now_ms() - 12 * 3600 * 1000 - 1000, old.session_id)) == 1
    ak.assert_problem(idle.api.get("/api/v1/me"), 401, "unauthorized")
    ak.assert_problem(old.get("/api/v1/me"), 401, "unauthorized")


# --------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------

def test_csrf_token_required_for_state_changes(admin_env):
    s = admin_env.server
    adm = admin_env.admin.api
    v = ak.create_user(adm, "viewer")
    tok = ak.create_token(adm, "viewer")
    name = ak.unique("csrf-")
    bad_headers = [{}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": "wrong"},
                   {"X-CSRF-Token": adm.csrf + "x"}, {"X-CSRF-Token": adm.csrf[:-1]},
                   {"X-CSRF-Token": v.api.csrf},  # another session's
                   {"X-CSRF-Token": tok["token"]}]
    for h in bad_headers:
        r = adm.post("/api/v1/users", {"username": name, "role": "viewer",
                                       "password": ak.strong_password()}, csrf=False, headers=h)
        ak.assert_problem(r, 403, "csrf")
        r = adm.patch("/api/v1/users/" + v.name, {"role": "operator"}, csrf=False, headers=h)
        ak.assert_problem(r, 403, "csrf")
        r = adm.delete("/api/v1/tokens/" + tok["id"], csrf=False, headers=h)
        ak.assert_problem(r, 403, "csrf")
    for h in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": adm.csrf}):
        r = v.api.post("/api/v1/auth/logout", csrf=False, headers=h)
        ak.assert_problem(r, 403, "csrf")
    # nothing changed
    assert adm.get("/api/v1/users/" + name).status_code == 404
    assert adm.get("/api/v1/users/" + v.name).json()["role"] == "viewer"
    assert s.client(token=tok["token"]).get("/api/v1/users").status_code == 200
    assert v.api.get("/api/v1/me").status_code == 200
    # with the token it works; reads never need it
    assert adm.get("/api/v1/users", csrf=False).status_code == 200
    r = adm.patch("/api/v1/users/" + v.name, {"role": "operator"})
    assert r.status_code == 200 and r.json()["role"] == "operator", ak.describe(r)
    # a bearer token needs no CSRF token
    at = s.client(token=ak.create_token(adm, "admin")["token"])
    r = at.post("/api/v1/users", {"username": name, "role": "viewer",
                                  "password": ak.strong_password()})
    assert r.status_code == 201, ak.describe(r)


def test_account_changes_end_sessions(admin_env):
    """A changed role, a disabled account and a reset of MFA end the
    account's sessions; after a reset the password alone logs in again."""
    s = admin_env.server
    adm = admin_env.admin.api
    demoted = ak.create_user(adm, "operator")
    r = adm.patch("/api/v1/users/" + demoted.name, {"role": "viewer"})
    assert r.status_code == 200 and r.json()["role"] == "viewer", ak.describe(r)
    ak.assert_problem(demoted.api.get("/api/v1/me"), 401, "unauthorized")
    demoted.api.login(demoted.name, demoted.password)
    assert demoted.api.get("/api/v1/me").json()["role"] == "viewer"
    ak.assert_problem(demoted.api.get("/api/v1/tokens"), 403, "forbidden")

    gone = ak.create_user(adm, "viewer")
    r = adm.patch("/api/v1/users/" + gone.name, {"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True, ak.describe(r)
    ak.assert_problem(gone.api.get("/api/v1/me"), 401, "unauthorized")
    ak.assert_problem(s.client().login(gone.name, gone.password, expect=401), 401,
                      "invalid-credentials")
    r = adm.patch("/api/v1/users/" + gone.name, {"disabled": False})
    assert r.status_code == 200, ak.describe(r)
    s.client().login(gone.name, gone.password)

    lost = ak.create_user(adm, "admin")  # logged in and enrolled
    assert lost.api.get("/api/v1/users").status_code == 200
    r = adm.post("/api/v1/users/%s/reset-mfa" % lost.name, {})
    assert r.status_code == 204, ak.describe(r)
    ak.assert_problem(lost.api.get("/api/v1/me"), 401, "unauthorized")
    assert adm.get("/api/v1/users/" + lost.name).json()["mfa_enrolled"] is False
    j = lost.api.login(lost.name, lost.password).json()  # no code needed now
    assert j["mfa_enrolment_required"] is True, j
    ak.assert_problem(lost.api.get("/api/v1/users"), 403, "mfa-enrolment-required")
    # an administrator cannot demote or disable themselves
    for body in ({"role": "operator"}, {"disabled": True}):
        r = adm.patch("/api/v1/users/" + admin_env.admin.name, body)
        ak.assert_problem(r, 409, "conflict")
