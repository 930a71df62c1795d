"""Refusals decided inside the API's handlers leave an audit entry like a
route-level denial (actor, action, target, outcome "denied", reason);
administrators are created or promoted only by an administrator's session
with TOTP, never by an API token; refused setups and throttled logins are
audited as docs/audit.md says, with the user names tried."""

import os
import re

import pytest

import apikit as ak
from apikit import admin_env, api_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.moat_only("management API")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WRONG = "Definitely-Not-The-Password-42"


def denied_entry(api, action, actor, target, reason, **detail):
    """The denied entry of action for target by actor with that reason (the
    write is in the request's own transaction: no waiting)."""
    log = ak.audit_all(api, action=action)
    got = [x for x in log if x["action"] == action and x["target"] == target and
           x["outcome"] == "denied" and x["actor"] == actor and
           (ak.detail(x) or {}).get("reason") == reason]
    assert got, "no %s denied entry by %s for %r (reason %s); have:\n%s" % (
        action, actor, target, reason,
        "\n".join("%s %s %s %s %s" % (x["actor"], x["action"], x["target"], x["outcome"],
                                      x["detail"]) for x in log[:40]))
    d = ak.detail(got[0])
    for k, v in detail.items():
        assert d.get(k) == v, (k, d)
    assert d.get("method") and d.get("path"), d
    return got[0]


def test_in_handler_refusals_are_audited(admin_env):
    s, adm = admin_env.server, admin_env.admin
    a = adm.api
    op = ak.create_user(a, "operator")
    vw = ak.create_user(a, "viewer")

    # an operator mints an admin token: 403, audited
    r = op.api.post("/api/v1/tokens", {"name": "grab", "role": "admin"})
    ak.assert_problem(r, 403, "forbidden")
    e = denied_entry(a, "token.create", "user:" + op.name, "grab", "role", role="admin")
    assert e["peer"] == op.api.source

    # an operator revokes an admin's token: 403, audited with its id
    t = ak.create_token(a, "admin", name="adm-tok")
    r = op.api.delete("/api/v1/tokens/" + t["id"])
    ak.assert_problem(r, 403, "forbidden")
    denied_entry(a, "token.revoke", "user:" + op.name, t["id"], "role", role="admin")
    # (and the token still works)
    assert s.client(token=t["token"]).get("/api/v1/users").status_code == 200

    # a token mints a token: 403, audited with the token as the actor
    ot = ak.create_token(op.api, "operator", name="op-tok")
    tc = s.client(token=ot["token"])
    r = tc.post("/api/v1/tokens", {"name": "child", "role": "viewer"})
    ak.assert_problem(r, 403, "forbidden")
    denied_entry(a, "token.create", "token:" + ot["id"], "child", "token")

    # a viewer asks for everyone's sessions, and revokes the admin's one
    r = vw.api.get("/api/v1/sessions", params={"all": "true"})
    ak.assert_problem(r, 403, "forbidden", "all")
    denied_entry(a, "session.list", "user:" + vw.name, "all", "role")
    r = vw.api.delete("/api/v1/sessions/" + a.session_id)
    ak.assert_problem(r, 404, "not-found")  # the answer does not say it exists
    denied_entry(a, "session.revoke", "user:" + vw.name, a.session_id, "role",
                 username=adm.name)
    assert a.get("/api/v1/me").status_code == 200  # still logged in

    # an administrator demotes themself: 409, audited
    r = a.patch("/api/v1/users/" + adm.name, {"role": "viewer"})
    ak.assert_problem(r, 409, "conflict")
    denied_entry(a, "user.update", "user:" + adm.name, adm.name, "self", role="viewer")

    # none of these changed anything, and the outcome is one the docs list
    for x in ak.audit_all(a):
        assert x["outcome"] in ("ok", "denied", "failed", "error"), x


def test_last_admin_refusal_is_audited(api_server):
    """Only an admin token reaches the last-administrator rule (a session is
    stopped by the self rule first)."""
    s = api_server("lastadmin")
    adm = ak.setup_admin(s)
    t = ak.create_token(adm.api, "admin")
    r = s.client(token=t["token"]).patch("/api/v1/users/" + adm.name, {"disabled": True})
    ak.assert_problem(r, 409, "conflict")
    denied_entry(adm.api, "user.update", "token:" + t["id"], adm.name, "last-admin",
                 disabled=True)


def test_admin_creation_needs_an_admin_session_with_totp(admin_env):
    s, adm = admin_env.server, admin_env.admin
    a = adm.api
    t = ak.create_token(a, "admin", name="automation")
    tc = s.client(token=t["token"])
    actor = "token:" + t["id"]

    # a token creates an administrator: 403 with a clear detail, audited
    name = ak.unique("tokadm-")
    r = tc.post("/api/v1/users", {"username": name, "role": "admin",
                                  "password": ak.strong_password()})
    ak.assert_problem(r, 403, "forbidden", "role")
    assert "token" in r.json()["detail"] and "TOTP" in r.json()["detail"], r.json()
    denied_entry(a, "user.create", actor, name, "token", role="admin")
    assert a.get("/api/v1/users/" + name).status_code == 404

    # a token promotes an operator: 403, audited, the role unchanged
    op = ak.create_user(a, "operator", login=False)
    r = tc.patch("/api/v1/users/" + op.name, {"role": "admin"})
    ak.assert_problem(r, 403, "forbidden", "role")
    denied_entry(a, "user.update", actor, op.name, "token", role_before="operator",
                 role="admin")
    assert a.get("/api/v1/users/" + op.name).json()["role"] == "operator"

    # the token still manages everything else: lesser roles, other changes
    other = ak.unique("tokop-")
    r = tc.post("/api/v1/users", {"username": other, "role": "operator",
                                  "password": ak.strong_password()})
    assert r.status_code == 201, ak.describe(r)
    r = tc.patch("/api/v1/users/" + op.name, {"role": "viewer"})
    assert r.status_code == 200, ak.describe(r)

    # the administrator's own session (opened with TOTP) may do both
    made = ak.create_user(a, "admin", login=False)
    r = a.patch("/api/v1/users/" + op.name, {"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin", ak.describe(r)
    assert a.get("/api/v1/users/" + made.name).json()["role"] == "admin"


# --------------------------------------------------------------------------
# refused setups and throttled logins, as docs/audit.md documents them
# --------------------------------------------------------------------------

def doc_row(action):
    """The cells of docs/audit.md's table row for action."""
    for line in open(os.path.join(REPO, "docs", "audit.md"), encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] == "`%s`" % action:
            return cells
    raise AssertionError("docs/audit.md has no row for %s" % action)


def assert_documented(e):
    """The entry's actor, outcome and detail keys are in its docs row."""
    action, when, actor, target, outcome = doc_row(e["action"])
    assert "`%s`" % e["actor"] in actor, (e["actor"], actor)
    keys = sorted(ak.detail(e))
    want = "`%s` `{%s}`" % (e["outcome"], ", ".join(keys))
    assert want in outcome, "docs/audit.md %s: %r is not in %r" % (e["action"], want, outcome)


def refusals(api, action, target, reason):
    return [x for x in ak.audit_all(api, action=action)
            if x["action"] == action and x["outcome"] == "denied" and x["target"] == target
            and (ak.detail(x) or {}).get("reason") == reason]


def test_refused_setups_and_throttled_logins_are_audited(api_server):
    s = api_server("refusals")
    # before setup: a wrong token, twice, with the user name tried
    c = s.client()
    for _ in range(2):
        r = c.post("/api/v1/setup", {"setup_token": "moat_st_" + "x" * 43,
                                     "username": "eve", "password": ak.strong_password()})
        ak.assert_problem(r, 403, "setup-unavailable", "setup_token")
    adm = ak.setup_admin(s)
    # after it: the setup is complete
    late = s.client()
    r = late.post("/api/v1/setup", {"setup_token": s.setup_token, "username": "late",
                                    "password": ak.strong_password()})
    ak.assert_problem(r, 403, "setup-unavailable")
    # a password typed as the user name is never recorded
    r = late.post("/api/v1/setup", {"setup_token": s.setup_token,
                                    "username": "Not A Name!", "password": "x"})
    ak.assert_problem(r, 403, "setup-unavailable")

    # a throttled login: one address past its free failures
    victim = ak.create_user(adm.api, "viewer", login=False)
    g = s.client()
    throttled = 0
    for _ in range(10):
        r = g.login(victim.name, WRONG, expect=None)
        assert r.status_code in (401, 429), ak.describe(r)
        throttled += r.status_code == 429
    assert throttled >= 1

    api = adm.api
    bad = ak.wait_audit(api, lambda log: refusals(api, "auth.setup", "eve",
                                                  "unknown setup token"),
                        what="the refused setup of eve", action="auth.setup")
    done = ak.wait_audit(api, lambda log: refusals(
        api, "auth.setup", "late", "setup is complete: an operator already exists"),
        what="the refused setup of late", action="auth.setup")
    thr = ak.wait_audit(api, lambda log: refusals(api, "auth.login", victim.name, "throttled"),
                        what="the throttled login", action="auth.login")
    hidden = ak.wait_audit(api, lambda log: refusals(api, "auth.setup", "<invalid user name>",
                                                     "setup is complete: an operator "
                                                     "already exists"),
                           what="the refused setup with an invalid name", action="auth.setup")
    assert sum(ak.detail(x)["count"] for x in bad) == 2, bad
    for e, user, peer in ((bad[0], "eve", c.source), (done[0], "late", late.source),
                          (thr[0], victim.name, g.source),
                          (hidden[0], "<invalid user name>", late.source)):
        assert e["actor"] == "anonymous" and e["outcome"] == "denied", e
        d = ak.detail(e)
        assert d["username"] == user and d["first_peer"] == peer and d["count"] >= 1, d
        assert e["target"] == user
        assert_documented(e)
    assert sum(ak.detail(x)["count"] for x in thr) == throttled
    assert "Not A Name!" not in str(ak.audit_all(api))
    # the old action names are gone
    assert not [x for x in ak.audit_all(api, action="auth.")
                if x["action"] in ("auth.setup_denied", "auth.login_throttled")]
    # the successful setup and a failed login match their rows too
    ok = [x for x in ak.audit_all(api, action="auth.setup") if x["outcome"] == "ok"]
    assert ok and ok[0]["actor"] == "setup" and ok[0]["target"] == adm.name
    assert_documented(ok[0])
    failed = [x for x in ak.audit_all(api, action="auth.login")
              if x["outcome"] == "failed" and x["target"] == victim.name]
    assert failed
    assert_documented(failed[0])
