"""Role-based access over real HTTPS: every route of docs/api.md against
every role, as a session (console/CLI) and as an API token, plus
anonymous; token scopes (never more rights than the creator), revoked,
expired and garbage tokens, and token secrets never shown twice."""

import os
import sqlite3
import time

import pytest

import apikit as ak
from apikit import admin_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("management API")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

ROLES = ("admin", "operator", "auditor", "viewer")

# docs/api.md "Roles"
PERMS = {
    "admin": {"self", "users:read", "users:write", "sessions:admin", "tokens:read",
              "tokens:write", "audit:read", "metrics:read", "devices:read", "devices:write",
              "policies:write"},
    "operator": {"self", "users:read", "tokens:read", "tokens:write", "metrics:read",
                 "devices:read", "devices:write"},
    "auditor": {"self", "users:read", "tokens:read", "audit:read", "metrics:read",
                "devices:read"},
    "viewer": {"self", "users:read", "devices:read"},
    "metrics": {"metrics:read"},
}

BOGUS = {"bogus": 1}  # a body every route with a body refuses with 422 (no side effect)
NO_SESSION = "0123456789abcdef"
NO_TOKEN = "fedcba9876543210"
NO_SERIAL = "0123456789abcdef0123456789abcdef"
# The credential of EST simpleenroll: an enrollment token, neither a role
# permission nor a session or API token, so the route is not in the matrix
# (test_enroll_takes_no_api_credentials checks it refuses every principal).
ENROLL_TOKEN = "enroll token"
DEVICE_CERT = "device certificate"  # EST simplereenroll: TLS client authentication

# docs/api.md "Routes": (method, path template, permission or None, body to send)
DOC_ROUTES = [
    ("GET", "/healthz", None, None),
    ("GET", "/metrics", "metrics:read", None),
    ("POST", "/api/v1/setup", None, BOGUS),
    ("POST", "/api/v1/auth/login", None, BOGUS),
    ("POST", "/api/v1/auth/logout", "self", None),
    ("GET", "/api/v1/me", "self", None),
    ("POST", "/api/v1/me/password", "self", BOGUS),
    ("POST", "/api/v1/me/totp", "self", BOGUS),
    ("POST", "/api/v1/me/totp/confirm", "self", BOGUS),
    ("GET", "/api/v1/sessions", "self", None),
    ("DELETE", "/api/v1/sessions/{id}", "self", None),
    ("GET", "/api/v1/users", "users:read", None),
    ("POST", "/api/v1/users", "users:write", BOGUS),
    ("GET", "/api/v1/users/{name}", "users:read", None),
    ("PATCH", "/api/v1/users/{name}", "users:write", BOGUS),
    ("POST", "/api/v1/users/{name}/reset-mfa", "users:write", BOGUS),
    ("GET", "/api/v1/tokens", "tokens:read", None),
    ("POST", "/api/v1/tokens", "tokens:write", BOGUS),
    ("DELETE", "/api/v1/tokens/{id}", "tokens:write", None),
    ("GET", "/api/v1/audit", "audit:read", None),
    ("GET", "/api/v1/audit/verify", "audit:read", None),
    ("GET", "/api/v1/events/ws", "audit:read", None),
    ("GET", "/api/v1/devices", "devices:read", None),
    ("POST", "/api/v1/devices", "devices:write", BOGUS),
    ("GET", "/api/v1/devices/{id}", "devices:read", None),
    ("POST", "/api/v1/devices/{id}/state", "devices:write", BOGUS),
    ("POST", "/api/v1/devices/{id}/groups", "devices:write", BOGUS),
    ("DELETE", "/api/v1/devices/{id}/groups/{group}", "devices:write", None),
    ("POST", "/api/v1/devices/{id}/policies", "devices:write", BOGUS),
    ("DELETE", "/api/v1/devices/{id}/policies/{policy}", "devices:write", None),
    ("GET", "/api/v1/groups", "devices:read", None),
    ("POST", "/api/v1/groups", "devices:write", BOGUS),
    ("GET", "/api/v1/groups/{name}", "devices:read", None),
    ("DELETE", "/api/v1/groups/{name}", "devices:write", None),
    ("POST", "/api/v1/groups/{name}/policies", "devices:write", BOGUS),
    ("DELETE", "/api/v1/groups/{name}/policies/{policy}", "devices:write", None),
    ("GET", "/api/v1/policies", "devices:read", None),
    ("GET", "/api/v1/policies/{name}", "devices:read", None),
    ("PUT", "/api/v1/policies/{name}", "policies:write", BOGUS),
    ("DELETE", "/api/v1/policies/{name}", "policies:write", None),
    ("POST", "/api/v1/devices/{id}/decommission", "devices:write", BOGUS),
    ("GET", "/api/v1/manufacturer-cas", "devices:read", None),
    ("POST", "/api/v1/manufacturer-cas", "policies:write", BOGUS),
    ("DELETE", "/api/v1/manufacturer-cas/{name}", "policies:write", None),
    ("GET", "/api/v1/enroll-tokens", "devices:read", None),
    ("POST", "/api/v1/enroll-tokens", "devices:write", BOGUS),
    ("GET", "/api/v1/certificates", "devices:read", None),
    ("POST", "/api/v1/certificates/{serial}/revoke", "devices:write", BOGUS),
    ("GET", "/.well-known/est/cacerts", None, None),
    ("POST", "/.well-known/est/simpleenroll", ENROLL_TOKEN, None),
    ("POST", "/.well-known/est/simplereenroll", DEVICE_CERT, None),
    ("GET", "/.well-known/est/csrattrs", None, None),
    ("GET", "/crl", None, None),
]

SPEC = os.path.join(REPO, "docs", "openapi.yaml")


def spec_routes():
    """(method, path, permission) of every operation in docs/openapi.yaml
    (x-moat-permission), or None without the spec or a YAML parser."""
    try:
        import yaml
    except ImportError:
        return None
    if not os.path.exists(SPEC):
        return None
    with open(SPEC) as f:
        doc = yaml.safe_load(f)
    out = []
    for path, ops in (doc.get("paths") or {}).items():
        for m, op in ops.items():
            if m.lower() not in ("get", "post", "put", "patch", "delete"):
                continue
            perm = op.get("x-moat-permission")
            out.append((m.upper(), path, None if perm in ("none", "setup token") else perm))
    return out


def _routes():
    """The matrix walks the spec's routes when there is a spec, else the
    table of docs/api.md; POST/PATCH carry a body every route refuses."""
    sr = spec_routes()
    if sr is None:
        return [r for r in DOC_ROUTES if r[2] not in (ENROLL_TOKEN, DEVICE_CERT)]
    return [(m, p, perm, BOGUS if m in ("POST", "PUT", "PATCH") and p != "/api/v1/auth/logout"
             else None) for m, p, perm in sr if perm not in (ENROLL_TOKEN, DEVICE_CERT)]


ROUTES = _routes()

PRINCIPALS = (["session:%s" % r for r in ROLES] + ["token:%s" % r for r in ROLES + ("metrics",)]
              + ["anonymous"])


class World:
    """One user and one session per role, one token per role (made by the
    first admin), an anonymous client."""

    def __init__(self, env):
        self.env = env
        s = env.server
        self.users = {"admin": env.admin}
        for role in ROLES[1:]:
            self.users[role] = ak.create_user(env.admin.api, role)
        self.clients = {"session:admin": env.admin.api}
        for role in ROLES[1:]:
            self.clients["session:" + role] = self.users[role].api
        self.tokens = {}
        for role in ROLES + ("metrics",):
            t = ak.create_token(env.admin.api, role, name="matrix-" + role)
            self.tokens[role] = t
            self.clients["token:" + role] = s.client(token=t["token"])
        self.clients["anonymous"] = s.client()

    def perms(self, principal):
        if principal == "anonymous":
            return set()
        kind, role = principal.split(":")
        p = set(PERMS[role])
        if kind == "token":
            p.discard("self")  # a token has no profile, password, TOTP or sessions
        return p


@pytest.fixture(scope="module")
def world(admin_env):
    return World(admin_env)


def _path(world, template):
    """Names that exist nowhere (a DELETE that is allowed answers 404 and
    changes nothing), except user names: the viewer's account."""
    return (template.replace("{id}", NO_TOKEN if "/tokens/" in template else NO_SESSION)
            .replace("{name}", world.users["viewer"].name if "/users/" in template
                     else "no-such-name")
            .replace("{group}", "no-such-group").replace("{policy}", "no-such-policy")
            .replace("{serial}", NO_SERIAL))


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("method,template,perm,body", ROUTES,
                         ids=["%s %s" % (r[0], r[1]) for r in ROUTES])
def test_permission_matrix(world, principal, method, template, perm, body):
    path = _path(world, template)
    c = world.clients[principal]
    if template == "/api/v1/auth/logout" and principal.startswith("session:"):
        # allowed for every session: spend a throwaway one, not the shared one
        u = world.users[principal.split(":")[1]]
        c = world.env.server.client()
        if u.role == "admin":
            c.login(u.name, u.password, recovery=u.recovery_codes.pop())
        else:
            c.login(u.name, u.password)
    r = c.request(method, path, body) if body is not None else c.request(method, path)
    if perm is None:
        assert r.status_code not in (401, 500), ak.describe(r)
        assert not (r.status_code == 403 and r.json()["type"] == ak.problem("forbidden")), \
            ak.describe(r)
    elif principal == "anonymous":
        ak.assert_problem(r, 401, "unauthorized")
    elif perm in world.perms(principal):
        assert r.status_code not in (401, 403) and r.status_code < 500, \
            "%s should be allowed %s %s: %s" % (principal, method, path, ak.describe(r))
    else:
        ak.assert_problem(r, 403, "forbidden")


def test_route_list_matches_openapi():
    """docs/api.md's table and docs/openapi.yaml list the same routes with
    the same permissions."""
    sr = spec_routes()
    if sr is None:
        pytest.skip("no docs/openapi.yaml (or no YAML parser): routes from docs/api.md")
    assert sorted(sr) == sorted((m, p, perm) for m, p, perm, _ in DOC_ROUTES)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_enroll_takes_no_api_credentials(world, principal):
    """EST simpleenroll wants an enrollment token: a session (with its CSRF
    token) or an API token of any role is no credential there."""
    r = world.clients[principal].request(
        "POST", "/.well-known/est/simpleenroll", data=b"MIIBbogus\n",
        headers={"Content-Type": "application/pkcs10"})
    ak.assert_problem(r, 401, "unauthorized")


def test_only_admins_see_everyones_sessions(world):
    for principal, c in world.clients.items():
        r = c.get("/api/v1/sessions", params={"all": "true"})
        if principal == "session:admin":
            assert r.status_code == 200, ak.describe(r)
            names = {i["username"] for i in r.json()["items"]}
            assert {world.users[x].name for x in ("operator", "auditor", "viewer")} <= names
        elif principal == "anonymous":
            ak.assert_problem(r, 401, "unauthorized")
        else:
            ak.assert_problem(r, 403, "forbidden")
    # without all=true everyone sees only their own
    for role in ROLES:
        r = world.clients["session:" + role].get("/api/v1/sessions")
        assert r.status_code == 200, ak.describe(r)
        assert {i["username"] for i in r.json()["items"]} == {world.users[role].name}


def test_metrics_token_reads_prometheus_text(world):
    r = world.clients["token:metrics"].get("/metrics")
    assert r.status_code == 200, ak.describe(r)
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    assert "# TYPE " in r.text and "moat_" in r.text, r.text[:300]


def test_token_cannot_outrank_its_creator(world):
    s = world.env.server
    op = world.clients["session:operator"]
    for role in ("admin", "auditor"):  # auditor has audit:read, which an operator lacks
        r = op.post("/api/v1/tokens", {"name": "up-" + role, "role": role})
        ak.assert_problem(r, 403, "forbidden", field="role")
    made = {}
    for role in ("operator", "viewer", "metrics"):
        made[role] = ak.create_token(op, role)
        assert made[role]["role"] == role and made[role]["creator"] == "user:" + \
            world.users["operator"].name, made[role]
    # a token never mints tokens (it could renew itself forever)
    opt = s.client(token=made["operator"]["token"])
    ak.assert_problem(opt.post("/api/v1/tokens", {"name": "x", "role": "admin"}), 403,
                      "forbidden")
    ak.assert_problem(opt.post("/api/v1/tokens", {"name": "x", "role": "metrics"}), 403,
                      "forbidden")
    # ... and cannot take back a token with more rights
    adm_tok = world.tokens["admin"]
    ak.assert_problem(op.delete("/api/v1/tokens/" + adm_tok["id"]), 403, "forbidden")
    assert world.clients["token:admin"].get("/api/v1/audit/verify").status_code == 200
    # roles without tokens:write make none at all
    for who in ("session:auditor", "session:viewer", "token:auditor", "token:metrics"):
        ak.assert_problem(world.clients[who].post("/api/v1/tokens", {"name": "n", "role": "metrics"}),
                          403, "forbidden")
    # an admin makes any role; unknown roles are invalid
    adm = world.env.admin.api
    ak.assert_problem(adm.post("/api/v1/tokens", {"name": "n", "role": "root"}), 422,
                      "validation", field="role")
    for days in (0, 366, -1):
        ak.assert_problem(adm.post("/api/v1/tokens", {"name": "n", "role": "viewer",
                                                      "expires_in_days": days}),
                          422, "validation", field="expires_in_days")


def _iso_ms(s):
    import datetime
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000)


def test_token_lifetime(world):
    adm = world.env.admin.api
    now = time.time() * 1000
    one = ak.create_token(adm, "viewer", days=1)
    dflt = ak.create_token(adm, "viewer")
    assert abs(_iso_ms(one["expires_at"]) - (now + 86400000)) < 120000, one
    assert abs(_iso_ms(dflt["expires_at"]) - (now + 90 * 86400000)) < 120000, dflt
    assert one["revoked"] is False and one["last_used"] is None, one


def test_expired_token_is_refused(world):
    """Age the token in the database instead of waiting a day."""
    s = world.env.server
    t = ak.create_token(world.env.admin.api, "viewer", days=1)
    c = s.client(token=t["token"])
    assert c.get("/api/v1/users").status_code == 200
    con = sqlite3.connect(os.path.join(s.dir, "moat.db"), timeout=15)
    try:
        with con:
            n = con.execute("UPDATE api_tokens SET expires_at = ? WHERE id = ?",
                            (int(time.time() * 1000) - 1000, t["id"])).rowcount
    finally:
        con.close()
    assert n == 1
    ak.assert_problem(c.get("/api/v1/users"), 401, "unauthorized")


def test_revoked_and_garbage_tokens(world):
    s = world.env.server
    adm = world.env.admin.api
    t = ak.create_token(adm, "operator")
    c = s.client(token=t["token"])
    assert c.get("/api/v1/tokens").status_code == 200
    r = adm.delete("/api/v1/tokens/" + t["id"])
    assert r.status_code == 204, ak.describe(r)
    ak.assert_problem(c.get("/api/v1/tokens"), 401, "unauthorized")
    ak.assert_problem(c.get("/metrics"), 401, "unauthorized")
    listed = {i["id"]: i for i in ak_list_tokens(adm)}
    assert listed[t["id"]]["revoked"] is True, listed[t["id"]]
    ak.assert_problem(adm.delete("/api/v1/tokens/" + NO_TOKEN), 404, "not-found")
    anon = s.client()
    for auth in ("Bearer moat_at_garbage", "Bearer " + t["token"][:-2] + "xx",
                 "Bearer " + t["token"] + "x", "Bearer ", "Bearer", "Basic YWRtaW46YWRtaW4=",
                 "bearer-" + world.tokens["admin"]["token"], "Bearer " + "A" * 300,
                 "Bearer " + s.setup_token):
        r = anon.get("/api/v1/users", headers={"Authorization": auth})
        ak.assert_problem(r, 401, "unauthorized")


def ak_list_tokens(api):
    out, cursor = [], None
    while True:
        params = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/api/v1/tokens", params=params)
        assert r.status_code == 200, ak.describe(r)
        j = r.json()
        out += j["items"]
        cursor = j["next_cursor"]
        if cursor is None:
            return out


def test_token_secret_never_listed(world):
    adm = world.env.admin.api
    t = ak.create_token(adm, "viewer", name="shown-once")
    user = world.env.server.client(token=t["token"])
    assert user.get("/api/v1/users").status_code == 200
    for principal in ("session:admin", "session:operator", "session:auditor", "token:auditor"):
        r = world.clients[principal].get("/api/v1/tokens", params={"limit": 200})
        assert r.status_code == 200, ak.describe(r)
        assert "moat_at_" not in r.text, "a token secret in the list"
        for i in r.json()["items"]:
            assert "token" not in i and "hash" not in i and "secret" not in i, i
            assert {"id", "name", "role", "creator", "created_at", "expires_at", "last_used",
                    "revoked"} <= set(i), i
    # the paginated walk sees every token exactly once, and no secret either
    items = ak_list_tokens(adm)
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) and t["id"] in ids
    assert all("token" not in i for i in items)
    # last_used is recorded (written in the background)
    deadline = time.monotonic() + 10
    while True:
        mine = [i for i in ak_list_tokens(adm) if i["id"] == t["id"]][0]
        if mine["last_used"] is not None:
            break
        assert time.monotonic() < deadline, mine
        time.sleep(0.2)
