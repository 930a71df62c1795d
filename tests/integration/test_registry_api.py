"""The device registry through the management API and the CLI: devices and
services (register, list, show, the lifecycle), groups and memberships,
policies and their attachments, the built-in group and policy protected,
bad rules refused with the index of the rule, every change audited, the
role matrix of the new permissions, and `moat device|group|policy`.

Enforcement by the broker is tested elsewhere; nothing here speaks MQTT."""

import json
import os
import sqlite3
import subprocess

import pytest

import apikit as ak
from apikit import admin_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("management API")

DEFAULT_RULES = ["allow publish d/${device}/#", "allow subscribe c/${device}/#",
                 "allow subscribe d/${device}/#"]
POLICY_MAX_RULES = 64  # src/core/limits.h MOAT_POLICY_MAX_RULES


class World:
    def __init__(self, env):
        self.env = env
        self.server = env.server
        self.admin = env.admin.api
        self.users = {r: ak.create_user(self.admin, r) for r in ("operator", "auditor",
                                                                 "viewer")}

    def api(self, role):
        return self.admin if role == "admin" else self.users[role].api


@pytest.fixture(scope="module")
def world(admin_env):
    return World(admin_env)


def put(api, path, body):
    return api.request("PUT", path, body)


def register(api, ident=None, status=201, **kw):
    body = {"id": ident or ak.unique("dev-")}
    body.update(kw)
    r = api.post("/api/v1/devices", body)
    assert r.status_code == status, ak.describe(r)
    return r.json()


def make_group(api, name=None, **kw):
    body = {"name": name or ak.unique("grp-")}
    body.update(kw)
    r = api.post("/api/v1/groups", body)
    assert r.status_code == 201, ak.describe(r)
    return r.json()


def make_policy(api, name=None, rules=None, **kw):
    name = name or ak.unique("pol-")
    body = {"rules": rules or ["allow publish t/${device}/#"]}
    body.update(kw)
    r = put(api, "/api/v1/policies/" + name, body)
    assert r.status_code == 201, ak.describe(r)
    return r.json()


def get_all(api, path, **params):
    out, cursor = [], None
    for _ in range(1000):
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        r = api.get(path, params=p)
        assert r.status_code == 200, ak.describe(r)
        j = r.json()
        out += j["items"]
        cursor = j["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("cursor walk did not end")


def set_state_in_db(world, ident, state):
    con = sqlite3.connect(os.path.join(world.server.dir, "moat.db"), timeout=15)
    try:
        with con:
            n = con.execute("UPDATE identities SET state = ? WHERE id = ?",
                            (state, ident)).rowcount
    finally:
        con.close()
    assert n == 1


IDENTITY_KEYS = {"id", "kind", "state", "groups", "policies", "created_at", "updated_at",
                 "first_seen", "last_seen", "last_addr", "firmware", "cert_expires_at"}


# --------------------------------------------------------------------------
# built-ins
# --------------------------------------------------------------------------

def test_builtin_group_and_policy(world):
    a = world.admin
    r = a.get("/api/v1/policies/device-default")
    assert r.status_code == 200, ak.describe(r)
    p = r.json()
    assert p["builtin"] is True and p["rules"] == DEFAULT_RULES, p
    assert set(p) == {"name", "description", "rules", "builtin", "created_at", "updated_at"}
    r = a.get("/api/v1/groups/devices")
    assert r.status_code == 200, ak.describe(r)
    g = r.json()
    assert g["builtin"] is True and g["policies"] == ["device-default"], g
    assert set(g) == {"name", "description", "builtin", "members", "policies", "created_at"}
    # read-only, undeletable
    ak.assert_problem(put(a, "/api/v1/policies/device-default", {"rules": ["allow publish #"]}),
                      409, "conflict")
    ak.assert_problem(a.delete("/api/v1/policies/device-default"), 409, "conflict")
    ak.assert_problem(a.delete("/api/v1/groups/devices"), 409, "conflict")
    assert a.get("/api/v1/policies/device-default").json()["rules"] == DEFAULT_RULES
    assert a.get("/api/v1/groups/devices").status_code == 200
    names = [i["name"] for i in get_all(a, "/api/v1/policies")]
    assert "device-default" in names
    assert "devices" in [i["name"] for i in get_all(a, "/api/v1/groups")]


# --------------------------------------------------------------------------
# devices and services
# --------------------------------------------------------------------------

def test_register_device_defaults(world):
    a = world.admin
    d = register(a)
    assert set(d) == IDENTITY_KEYS, d
    assert d["kind"] == "device" and d["state"] == "registered", d
    assert d["groups"] == ["devices"] and d["policies"] == [], d
    assert d["created_at"] and d["updated_at"] and d["first_seen"] is None, d
    assert d["last_seen"] is None and d["last_addr"] is None and d["firmware"] is None, d
    r = a.get("/api/v1/devices/" + d["id"])
    assert r.status_code == 200 and r.json() == d, ak.describe(r)
    # a service joins no group unless told; --active
    s = register(a, ak.unique("svc-"), kind="service", state="active")
    assert s["kind"] == "service" and s["state"] == "active" and s["groups"] == [], s
    # explicit groups replace the default
    g = make_group(a)
    d2 = register(a, groups=[g["name"]])
    assert d2["groups"] == [g["name"]], d2
    d3 = register(a, groups=[])
    assert d3["groups"] == [], d3
    d4 = register(a, groups=["devices", g["name"]])
    assert sorted(d4["groups"]) == sorted(["devices", g["name"]]), d4


def test_register_refusals(world):
    a = world.admin
    d = register(a)
    ak.assert_problem(a.post("/api/v1/devices", {"id": d["id"]}), 409, "conflict", field="id")
    ak.assert_problem(a.post("/api/v1/devices", {"id": d["id"], "kind": "service"}), 409,
                      "conflict", field="id")
    for bad in ("Upper", "-dash", ".dot", "a b", "a/b", "x" * 65, "ü"):
        ak.assert_problem(a.post("/api/v1/devices", {"id": bad}), 422, "validation", field="id")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ""}), 422, "validation", field="id")
    ak.assert_problem(a.post("/api/v1/devices", {}), 422, "validation", field="id")
    ak.assert_problem(a.post("/api/v1/devices", {"id": "ok1", "kind": "robot"}), 422,
                      "validation", field="kind")
    for st in ("disabled", "quarantined", "decommissioned", "bogus"):
        ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"), "state": st}), 422,
                          "validation", field="state")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"),
                                                 "groups": ["devices", "no-such-group"]}),
                      422, "validation", field="groups[1]")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"), "groups": ["Bad"]}),
                      422, "validation", field="groups[0]")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"), "groups": [1]}),
                      422, "validation", field="groups[0]")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"), "groups": "devices"}),
                      422, "validation", field="groups")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"),
                                                 "groups": ["devices"] * 33}),
                      422, "validation", field="groups")
    ak.assert_problem(a.post("/api/v1/devices", {"id": ak.unique("d-"), "extra": 1}), 422,
                      "validation", field="extra")
    # nothing of the refused ones was made
    ak.assert_problem(a.get("/api/v1/devices/no-such-device"), 404, "not-found")
    ids = {i["id"] for i in get_all(a, "/api/v1/devices", limit=200)}
    assert "ok1" not in ids and "Upper" not in ids


def test_list_filters_and_pages(world):
    a = world.admin
    mine = [register(a, ak.unique("pg-"))["id"] for _ in range(5)]
    svc = register(a, ak.unique("pgs-"), kind="service")["id"]
    act = register(a, ak.unique("pga-"), state="active")["id"]
    walked = get_all(a, "/api/v1/devices", limit=2)
    ids = [i["id"] for i in walked]
    assert len(ids) == len(set(ids)) and ids == sorted(ids), ids
    assert set(mine + [svc, act]) <= set(ids)
    assert all(set(i) == IDENTITY_KEYS for i in walked)
    services = get_all(a, "/api/v1/devices", kind="service")
    assert svc in [i["id"] for i in services] and all(i["kind"] == "service" for i in services)
    devices = get_all(a, "/api/v1/devices", kind="device")
    assert svc not in [i["id"] for i in devices]
    active = get_all(a, "/api/v1/devices", state="active")
    assert act in [i["id"] for i in active] and all(i["state"] == "active" for i in active)
    reg = get_all(a, "/api/v1/devices", state="registered", kind="device")
    assert set(mine) <= {i["id"] for i in reg}
    ak.assert_problem(a.get("/api/v1/devices", params={"kind": "robot"}), 400, "bad-request",
                      field="kind")
    ak.assert_problem(a.get("/api/v1/devices", params={"state": "asleep"}), 400, "bad-request",
                      field="state")
    ak.assert_problem(a.get("/api/v1/devices", params={"expiring": "7d"}), 400, "bad-request")
    ak.assert_problem(a.get("/api/v1/devices", params={"limit": "0"}), 400, "bad-request",
                      field="limit")


# --------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------

def state(api, ident, to):
    return api.post("/api/v1/devices/%s/state" % ident, {"state": to})


def test_lifecycle_allowed(world):
    a = world.admin
    d = register(a)["id"]
    for to in ("active", "quarantined", "active", "disabled", "quarantined", "disabled",
               "active"):
        r = state(a, d, to)
        assert r.status_code == 200, ak.describe(r)
        assert r.json()["state"] == to and set(r.json()) == IDENTITY_KEYS, r.json()
    d2 = register(a)["id"]
    r = state(a, d2, "disabled")
    assert r.status_code == 200 and r.json()["state"] == "disabled", ak.describe(r)
    assert a.get("/api/v1/devices/" + d2).json()["state"] == "disabled"


def test_lifecycle_refused(world):
    a = world.admin
    d = register(a)["id"]
    j = ak.assert_problem(state(a, d, "quarantined"), 409, "conflict", field="state")
    assert "registered" in j["detail"] and "quarantined" in j["detail"], j
    j = ak.assert_problem(state(a, d, "registered"), 422, "validation", field="state")
    ak.assert_problem(state(a, d, "decommissioned"), 422, "validation", field="state")
    ak.assert_problem(state(a, d, "bogus"), 422, "validation", field="state")
    ak.assert_problem(a.post("/api/v1/devices/%s/state" % d, {}), 422, "validation",
                      field="state")
    assert state(a, d, "active").status_code == 200
    j = ak.assert_problem(state(a, d, "active"), 409, "conflict")
    assert "active" in j["detail"], j
    ak.assert_problem(state(a, "no-such-device", "active"), 404, "not-found")
    assert a.get("/api/v1/devices/" + d).json()["state"] == "active"
    # decommissioned is terminal (set behind the API's back: decommissioning
    # is not a plain state change)
    set_state_in_db(world, d, "decommissioned")
    for to in ("active", "disabled", "quarantined"):
        j = ak.assert_problem(state(a, d, to), 409, "conflict")
        assert "decommissioned" in j["detail"], j
    ak.assert_problem(a.post("/api/v1/devices/%s/groups" % d, {"group": "devices"}), 409,
                      "conflict")
    # the id comes back only as a new device (registered, nothing carried over)
    r = a.post("/api/v1/devices", {"id": d})
    assert r.status_code == 201 and r.json()["state"] == "registered", ak.describe(r)
    # but a live id is never registered twice
    ak.assert_problem(a.post("/api/v1/devices", {"id": d}), 409, "conflict", field="id")


# --------------------------------------------------------------------------
# groups and memberships
# --------------------------------------------------------------------------

def test_groups(world):
    a = world.admin
    g = make_group(a, description="floor 3 sensors")
    assert g["description"] == "floor 3 sensors" and g["builtin"] is False, g
    assert g["members"] == 0 and g["policies"] == [], g
    ak.assert_problem(a.post("/api/v1/groups", {"name": g["name"]}), 409, "conflict",
                      field="name")
    ak.assert_problem(a.post("/api/v1/groups", {"name": "Bad Name"}), 422, "validation",
                      field="name")
    ak.assert_problem(a.post("/api/v1/groups", {"name": "ok", "description": "x" * 257}), 422,
                      "validation", field="description")
    ak.assert_problem(a.post("/api/v1/groups", {"name": "ok", "description": "a\nb"}), 422,
                      "validation", field="description")
    assert a.get("/api/v1/groups/" + g["name"]).json() == g
    ak.assert_problem(a.get("/api/v1/groups/no-such-group"), 404, "not-found")
    d = register(a)["id"]
    path = "/api/v1/devices/%s/groups" % d
    r = a.post(path, {"group": g["name"]})
    assert r.status_code == 200, ak.describe(r)
    assert sorted(r.json()["groups"]) == sorted(["devices", g["name"]]), r.json()
    ak.assert_problem(a.post(path, {"group": g["name"]}), 409, "conflict", field="group")
    ak.assert_problem(a.post(path, {"group": "no-such-group"}), 422, "validation",
                      field="group")
    ak.assert_problem(a.post(path, {"group": "Bad"}), 422, "validation", field="group")
    ak.assert_problem(a.post("/api/v1/devices/no-such-device/groups", {"group": g["name"]}),
                      404, "not-found")
    assert a.get("/api/v1/groups/" + g["name"]).json()["members"] == 1
    r = a.delete("%s/devices" % path)
    assert r.status_code == 204, ak.describe(r)
    ak.assert_problem(a.delete("%s/devices" % path), 404, "not-found")
    assert a.get("/api/v1/devices/" + d).json()["groups"] == [g["name"]]
    # a group's deletion ends its memberships and attachments
    p = make_policy(a)
    r = a.post("/api/v1/groups/%s/policies" % g["name"], {"policy": p["name"]})
    assert r.status_code == 200 and r.json()["policies"] == [p["name"]], ak.describe(r)
    r = a.delete("/api/v1/groups/" + g["name"])
    assert r.status_code == 204, ak.describe(r)
    ak.assert_problem(a.get("/api/v1/groups/" + g["name"]), 404, "not-found")
    ak.assert_problem(a.delete("/api/v1/groups/" + g["name"]), 404, "not-found")
    assert a.get("/api/v1/devices/" + d).json()["groups"] == []
    assert a.get("/api/v1/policies/" + p["name"]).status_code == 200


def test_group_policy_attachments(world):
    a = world.admin
    g = make_group(a)["name"]
    p = make_policy(a)["name"]
    path = "/api/v1/groups/%s/policies" % g
    r = a.post(path, {"policy": p})
    assert r.status_code == 200 and r.json()["policies"] == [p], ak.describe(r)
    ak.assert_problem(a.post(path, {"policy": p}), 409, "conflict", field="policy")
    ak.assert_problem(a.post(path, {"policy": "no-such-policy"}), 422, "validation",
                      field="policy")
    ak.assert_problem(a.post("/api/v1/groups/no-such-group/policies", {"policy": p}), 404,
                      "not-found")
    r = a.post(path, {"policy": "device-default"})
    assert r.status_code == 200 and sorted(r.json()["policies"]) == sorted([p, "device-default"])
    assert a.delete("%s/%s" % (path, p)).status_code == 204
    ak.assert_problem(a.delete("%s/%s" % (path, p)), 404, "not-found")
    assert a.get("/api/v1/groups/" + g).json()["policies"] == ["device-default"]


def test_device_policy_attachments(world):
    a = world.admin
    s = register(a, ak.unique("svc-"), kind="service")["id"]
    p = make_policy(a, rules=["allow subscribe d/+/telemetry"])["name"]
    path = "/api/v1/devices/%s/policies" % s
    r = a.post(path, {"policy": p})
    assert r.status_code == 200 and r.json()["policies"] == [p], ak.describe(r)
    ak.assert_problem(a.post(path, {"policy": p}), 409, "conflict", field="policy")
    ak.assert_problem(a.post(path, {"policy": "no-such-policy"}), 422, "validation",
                      field="policy")
    ak.assert_problem(a.post(path, {}), 422, "validation", field="policy")
    # allowed for devices too
    d = register(a)["id"]
    r = a.post("/api/v1/devices/%s/policies" % d, {"policy": p})
    assert r.status_code == 200 and r.json()["policies"] == [p], ak.describe(r)
    # deleting the policy detaches it everywhere
    assert a.delete("/api/v1/policies/" + p).status_code == 204
    assert a.get("/api/v1/devices/" + s).json()["policies"] == []
    assert a.get("/api/v1/devices/" + d).json()["policies"] == []
    s2 = register(a, ak.unique("svc-"), kind="service")["id"]
    p2 = make_policy(a)["name"]
    assert a.post("/api/v1/devices/%s/policies" % s2, {"policy": p2}).status_code == 200
    assert a.delete("/api/v1/devices/%s/policies/%s" % (s2, p2)).status_code == 204
    ak.assert_problem(a.delete("/api/v1/devices/%s/policies/%s" % (s2, p2)), 404, "not-found")
    ak.assert_problem(a.delete("/api/v1/devices/no-such-device/policies/" + p2), 404,
                      "not-found")


# --------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------

def test_policy_put_get_replace(world):
    a = world.admin
    name = ak.unique("pol-")
    rules = ["allow publish d/${device}/#", "deny publish d/${device}/secret/#",
             "allow pubsub g/${group}/+/status", "allow subscribe $moat/ota/${device}"]
    r = put(a, "/api/v1/policies/" + name, {"description": "fleet", "rules": rules})
    assert r.status_code == 201, ak.describe(r)
    p = r.json()
    assert p["name"] == name and p["rules"] == rules and p["builtin"] is False, p
    assert p["description"] == "fleet" and p["created_at"] and p["updated_at"], p
    assert a.get("/api/v1/policies/" + name).json() == p
    # replace: 200, description kept when not given
    r = put(a, "/api/v1/policies/" + name, {"rules": ["allow subscribe c/${device}/#"]})
    assert r.status_code == 200, ak.describe(r)
    assert r.json()["rules"] == ["allow subscribe c/${device}/#"], r.json()
    assert r.json()["description"] == "fleet" and r.json()["created_at"] == p["created_at"]
    r = put(a, "/api/v1/policies/" + name, {"rules": rules[:1], "description": ""})
    assert r.status_code == 200 and r.json()["description"] == "", ak.describe(r)
    # the most rules a policy may have, each as long as a rule may be
    long_rule = "allow publish " + "a" * 256
    r = put(a, "/api/v1/policies/" + ak.unique("big-"),
            {"rules": [long_rule] * POLICY_MAX_RULES, "description": "d" * 256})
    assert r.status_code == 201 and len(r.json()["rules"]) == POLICY_MAX_RULES, ak.describe(r)
    ak.assert_problem(a.get("/api/v1/policies/no-such-policy"), 404, "not-found")
    assert a.delete("/api/v1/policies/" + name).status_code == 204
    ak.assert_problem(a.get("/api/v1/policies/" + name), 404, "not-found")
    ak.assert_problem(a.delete("/api/v1/policies/" + name), 404, "not-found")


@pytest.mark.parametrize("rule", [
    "permit publish a/b",            # effect
    "allow pub a/b",                 # action
    "allow publish",                 # no filter
    "allow  publish a/b",            # two spaces
    "allow publish a/#/b",           # '#' not last
    "allow publish a/b+",            # '+' not a whole level
    "allow publish ${devices}/x",    # unknown variable
    "allow publish a/$moat/x",       # '$' elsewhere
    "allow publish " + "a" * 257,    # filter too long
    "allow publish a/b\nallow publish #",  # a newline would split the stored form
    "allow publish a\tb",            # control character
])
def test_policy_bad_rule_is_named(world, rule):
    a = world.admin
    name = ak.unique("badpol-")
    rules = ["allow publish ok/1", "allow subscribe ok/2", rule, "allow publish ok/4"]
    j = ak.assert_problem(put(a, "/api/v1/policies/" + name, {"rules": rules}), 422,
                          "validation", field="rules[2]")
    assert j.get("detail"), j
    ak.assert_problem(a.get("/api/v1/policies/" + name), 404, "not-found")


def test_policy_body_refusals(world):
    a = world.admin
    base = "/api/v1/policies/"
    ak.assert_problem(put(a, base + ak.unique("p-"), {"rules": []}), 422, "validation",
                      field="rules")
    ak.assert_problem(put(a, base + ak.unique("p-"), {}), 422, "validation", field="rules")
    ak.assert_problem(put(a, base + ak.unique("p-"), {"rules": "allow publish a"}), 422,
                      "validation", field="rules")
    ak.assert_problem(put(a, base + ak.unique("p-"),
                          {"rules": ["allow publish a"] * (POLICY_MAX_RULES + 1)}),
                      422, "validation", field="rules")
    ak.assert_problem(put(a, base + ak.unique("p-"), {"rules": ["allow publish a", 7]}), 422,
                      "validation", field="rules[1]")
    ak.assert_problem(put(a, base + ak.unique("p-"), {"rules": ["allow publish a"],
                                                     "description": "x" * 257}),
                      422, "validation", field="description")
    ak.assert_problem(put(a, base + "Bad.Name", {"rules": ["allow publish a"]}), 422,
                      "validation", field="name")
    ak.assert_problem(put(a, base + ak.unique("p-"), {"rules": ["allow publish a"], "x": 1}),
                      422, "validation", field="x")


# --------------------------------------------------------------------------
# audit
# --------------------------------------------------------------------------

def test_changes_are_audited(world):
    a = world.admin
    actor = "user:" + world.env.admin.name
    d = register(a)["id"]
    g = make_group(a, description="audited")["name"]
    p = make_policy(a, rules=["deny publish x/${device}"])["name"]
    assert state(a, d, "active").status_code == 200
    assert a.post("/api/v1/devices/%s/groups" % d, {"group": g}).status_code == 200
    assert a.delete("/api/v1/devices/%s/groups/%s" % (d, g)).status_code == 204
    assert a.post("/api/v1/devices/%s/policies" % d, {"policy": p}).status_code == 200
    assert a.delete("/api/v1/devices/%s/policies/%s" % (d, p)).status_code == 204
    assert a.post("/api/v1/groups/%s/policies" % g, {"policy": p}).status_code == 200
    assert a.delete("/api/v1/groups/%s/policies/%s" % (g, p)).status_code == 204
    assert put(a, "/api/v1/policies/" + p, {"rules": ["allow publish y/#"]}).status_code == 200
    assert a.delete("/api/v1/groups/" + g).status_code == 204
    assert a.delete("/api/v1/policies/" + p).status_code == 204
    entries = ak.audit_all(a, actor=actor)

    def one(action, target, **detail):
        got = [e for e in entries if e["action"] == action and e["target"] == target]
        assert len(got) == 1, (action, target, got)
        e = got[0]
        assert e["outcome"] == "ok" and e["peer"] == a.source, e
        dd = ak.detail(e)
        for k, v in detail.items():
            assert dd.get(k) == v, (action, dd)
        return dd

    one("device.register", d, kind="device", state="registered", groups=["devices"])
    one("device.state", d, **{"from": "registered", "to": "active"})
    one("device.group_add", d, group=g)
    one("device.group_remove", d, group=g)
    one("device.policy_attach", d, policy=p)
    one("device.policy_detach", d, policy=p)
    one("group.create", g, description="audited")
    one("group.policy_attach", g, policy=p)
    one("group.policy_detach", g, policy=p)
    one("group.delete", g)
    puts = [e for e in entries if e["action"] == "policy.put" and e["target"] == p]
    assert len(puts) == 2, puts
    details = sorted((ak.detail(e) for e in puts), key=lambda x: x["created"])
    assert details[0] == {"created": False, "rules": ["allow publish y/#"]}, details
    assert details[1] == {"created": True, "rules": ["deny publish x/${device}"]}, details
    one("policy.delete", p)
    # refusals change nothing and write no registry entry
    n = len(ak.audit_all(a, action="device."))
    ak.assert_problem(state(a, d, "active"), 409, "conflict")
    ak.assert_problem(a.post("/api/v1/devices", {"id": d}), 409, "conflict")
    assert len(ak.audit_all(a, action="device.")) == n
    # the chain still verifies
    r = a.get("/api/v1/audit/verify")
    assert r.status_code == 200 and r.json()["status"] == "intact", ak.describe(r)


# --------------------------------------------------------------------------
# roles
# --------------------------------------------------------------------------

def test_operator_manages_devices_not_policies(world):
    op = world.api("operator")
    d = register(op)["id"]
    g = make_group(op)["name"]
    assert op.post("/api/v1/devices/%s/groups" % d, {"group": g}).status_code == 200
    assert state(op, d, "active").status_code == 200
    assert op.post("/api/v1/groups/%s/policies" % g, {"policy": "device-default"}
                   ).status_code == 200
    assert op.get("/api/v1/policies/device-default").status_code == 200
    ak.assert_problem(put(op, "/api/v1/policies/" + ak.unique("p-"),
                          {"rules": ["allow publish #"]}), 403, "forbidden")
    p = make_policy(world.admin)["name"]
    ak.assert_problem(op.delete("/api/v1/policies/" + p), 403, "forbidden")
    assert world.admin.get("/api/v1/policies/" + p).status_code == 200
    assert op.delete("/api/v1/groups/" + g).status_code == 204


@pytest.mark.parametrize("role", ["auditor", "viewer"])
def test_read_only_roles(world, role):
    c = world.api(role)
    d = register(world.admin)["id"]
    g = make_group(world.admin)["name"]
    for path in ("/api/v1/devices", "/api/v1/devices/" + d, "/api/v1/groups",
                 "/api/v1/groups/" + g, "/api/v1/policies", "/api/v1/policies/device-default"):
        r = c.get(path)
        assert r.status_code == 200, ak.describe(r)
    for method, path, body in (
            ("POST", "/api/v1/devices", {"id": ak.unique("ro-")}),
            ("POST", "/api/v1/devices/%s/state" % d, {"state": "active"}),
            ("POST", "/api/v1/devices/%s/groups" % d, {"group": g}),
            ("DELETE", "/api/v1/devices/%s/groups/devices" % d, None),
            ("POST", "/api/v1/groups", {"name": ak.unique("ro-")}),
            ("DELETE", "/api/v1/groups/" + g, None),
            ("POST", "/api/v1/groups/%s/policies" % g, {"policy": "device-default"}),
            ("PUT", "/api/v1/policies/" + ak.unique("ro-"), {"rules": ["allow publish a"]})):
        r = c.request(method, path, body) if body is not None else c.request(method, path)
        ak.assert_problem(r, 403, "forbidden")
    assert world.admin.get("/api/v1/devices/" + d).json()["state"] == "registered"
    assert world.admin.get("/api/v1/groups/" + g).status_code == 200
    # the refusals are audited
    entries = ak.audit_all(world.admin, action="api.denied",
                           actor="user:" + world.users[role].name)
    assert any(e["target"] == "/api/v1/devices" for e in entries), entries


def test_tokens(world):
    s = world.server
    a = world.admin
    metrics = s.client(token=ak.create_token(a, "metrics")["token"])
    ak.assert_problem(metrics.get("/api/v1/devices"), 403, "forbidden")
    viewer = s.client(token=ak.create_token(a, "viewer")["token"])
    assert viewer.get("/api/v1/devices").status_code == 200
    ak.assert_problem(viewer.post("/api/v1/groups", {"name": ak.unique("t-")}), 403,
                      "forbidden")
    optok = s.client(token=ak.create_token(a, "operator")["token"])
    assert register(optok)["state"] == "registered"
    ak.assert_problem(put(optok, "/api/v1/policies/" + ak.unique("t-"),
                          {"rules": ["allow publish a"]}), 403, "forbidden")
    adm = s.client(token=ak.create_token(a, "admin")["token"])
    make_policy(adm)
    ak.assert_problem(s.client().get("/api/v1/devices"), 401, "unauthorized")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

class Cli:
    def __init__(self, world, scratch, role="admin"):
        self.bin = world.server.moat_bin
        home = os.path.join(scratch, ak.unique("reg-cli-home-"))
        os.makedirs(home)
        self.env = dict(os.environ)
        self.env.update({"XDG_CONFIG_HOME": home, "MOAT_SERVER": world.server.url,
                         "MOAT_CA": world.server.ca,
                         "MOAT_TOKEN": ak.create_token(world.admin, role)["token"]})

    def run(self, *args, code=0):
        p = subprocess.run([self.bin] + list(args), capture_output=True, text=True,
                           env=self.env, timeout=60)
        if code is not None:
            assert p.returncode == code, "moat %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(args), p.returncode, code, p.stdout, p.stderr)
        return p

    def json(self, *args):
        return json.loads(self.run(*(list(args) + ["--json"])).stdout)


@pytest.fixture(scope="module")
def cli(world, scratch):
    return Cli(world, scratch)


def test_cli_help(cli):
    for cmd in ("device", "group", "policy"):
        p = cli.run(cmd, "--help")
        assert "usage: moat %s" % cmd in p.stdout, p.stdout
        p = cli.run(cmd, code=2)
        assert "usage" in p.stderr
        p = cli.run(cmd, "frobnicate", code=2)
        assert "unknown subcommand" in p.stderr
    for cmd, sub in (("device", "register"), ("device", "list"), ("device", "release"),
                     ("device", "group-add"), ("device", "attach"), ("group", "create"),
                     ("group", "attach"), ("policy", "set"), ("policy", "delete")):
        p = cli.run(cmd, sub, "--help")
        assert p.stdout.startswith("usage: moat %s %s" % (cmd, sub)), p.stdout
    assert "--rule" in cli.run("policy", "set", "--help").stdout
    p = cli.run("--help")
    for cmd in ("device", "group", "policy"):
        assert "\n  %s " % cmd in p.stdout, p.stdout


def test_cli_usage_errors(cli):
    for args in (("device", "register"), ("device", "show", "Bad_Id"),
                 ("device", "register", "x1", "--kind", "robot"),
                 ("device", "list", "--state", "asleep"),
                 ("device", "group-add", "x1"), ("device", "show", "a", "b"),
                 ("device", "register", "x1", "--bogus"),
                 ("group", "create", "Bad Name"), ("group", "attach", "g1"),
                 ("policy", "set", "p1"), ("policy", "set", "p1", "--rule", "allow publish a",
                                           "--file", "/dev/null"),
                 ("policy", "show", "-")):
        p = cli.run(*args, code=2)
        assert p.stderr.startswith("moat "), (args, p.stderr)


def test_cli_devices(cli, world):
    a = world.admin
    d = ak.unique("clid-")
    p = cli.run("device", "register", d)
    assert "registered device %s (registered; groups: devices)" % d in p.stdout, p.stdout
    g = ak.unique("clig-")
    cli.run("group", "create", g, "--description", "from the cli")
    s = ak.unique("clis-")
    j = cli.json("device", "register", s, "--kind", "service", "--active", "--group", g)
    assert j["kind"] == "service" and j["state"] == "active" and j["groups"] == [g], j
    p = cli.run("device", "list")
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATE", "GROUPS", "POLICIES", "CERT-EXPIRES",
                                "LAST-SEEN"], lines
    row = [l for l in lines if l.startswith(d + " ")]
    assert len(row) == 1 and row[0].split()[1:4] == ["device", "registered", "devices"], lines
    p = cli.run("device", "list", "--kind", "service")
    assert s in p.stdout and d not in p.stdout, p.stdout
    items = cli.json("device", "list", "--state", "active")["items"]
    assert s in [i["id"] for i in items] and all(i["state"] == "active" for i in items)
    p = cli.run("device", "show", d)
    assert "id:" in p.stdout and d in p.stdout and "groups:" in p.stdout, p.stdout
    assert "state:" in p.stdout and "registered" in p.stdout
    # lifecycle
    p = cli.run("device", "release", d, code=1)
    assert "not quarantined" in p.stderr, p.stderr
    p = cli.run("device", "quarantine", d, code=1)
    assert "registered" in p.stderr and "quarantined" in p.stderr, p.stderr
    assert "%s is now active" % d in cli.run("device", "activate", d).stdout
    assert "%s is now quarantined" % d in cli.run("device", "quarantine", d).stdout
    assert "%s is now active" % d in cli.run("device", "release", d).stdout
    assert "%s is now disabled" % d in cli.run("device", "disable", d).stdout
    assert a.get("/api/v1/devices/" + d).json()["state"] == "disabled"
    # memberships and attachments
    assert "added %s to group %s" % (d, g) in cli.run("device", "group-add", d, g).stdout
    p = cli.run("device", "group-add", d, g, code=1)
    assert "Conflict" in p.stderr, p.stderr
    assert "removed %s from group devices" % d in cli.run("device", "group-remove", d,
                                                          "devices").stdout
    assert a.get("/api/v1/devices/" + d).json()["groups"] == [g]
    pol = make_policy(a)["name"]
    assert "attached policy %s to %s" % (pol, s) in cli.run("device", "attach", s, pol).stdout
    assert a.get("/api/v1/devices/" + s).json()["policies"] == [pol]
    assert "detached policy %s from %s" % (pol, s) in cli.run("device", "detach", s, pol).stdout
    p = cli.run("device", "detach", s, pol, code=1)
    assert "Not found" in p.stderr, p.stderr
    p = cli.run("device", "show", "no-such-device", code=1)
    assert "Not found" in p.stderr, p.stderr
    p = cli.run("device", "register", d, code=1)
    assert "Conflict" in p.stderr and "(field: id)" in p.stderr, p.stderr


def test_cli_groups(cli, world):
    a = world.admin
    g = ak.unique("clig-")
    assert "created group %s" % g in cli.run("group", "create", g).stdout
    p = cli.run("group", "create", g, code=1)
    assert "Conflict" in p.stderr
    pol = make_policy(a)["name"]
    assert "attached policy %s to group %s" % (pol, g) in cli.run("group", "attach", g,
                                                                  pol).stdout
    p = cli.run("group", "list")
    assert p.stdout.splitlines()[0].split() == ["NAME", "MEMBERS", "POLICIES", "BUILTIN",
                                                 "DESCRIPTION"], p.stdout
    row = [l for l in p.stdout.splitlines() if l.startswith(g + " ")]
    assert len(row) == 1 and row[0].split()[1:4] == ["0", pol, "false"], p.stdout
    p = cli.run("group", "show", "devices")
    assert "device-default" in p.stdout and "builtin:" in p.stdout, p.stdout
    j = cli.json("group", "show", g)
    assert j["policies"] == [pol] and j["members"] == 0, j
    assert "detached policy %s from group %s" % (pol, g) in cli.run("group", "detach", g,
                                                                    pol).stdout
    p = cli.run("group", "delete", "devices", code=1)
    assert "Conflict" in p.stderr and "devices" in p.stderr, p.stderr
    assert "deleted group %s" % g in cli.run("group", "delete", g).stdout
    cli.run("group", "show", g, code=1)


def test_cli_policies(cli, world, scratch):
    a = world.admin
    name = ak.unique("clip-")
    p = cli.run("policy", "set", name, "--rule", "allow publish d/${device}/#", "--rule",
                "deny publish d/${device}/admin/#", "--description", "cli made")
    assert "created policy %s (2 rules)" % name in p.stdout, p.stdout
    got = a.get("/api/v1/policies/" + name).json()
    assert got["rules"] == ["allow publish d/${device}/#", "deny publish d/${device}/admin/#"]
    assert got["description"] == "cli made", got
    # from a file, with comments, blank lines and indentation
    f = os.path.join(scratch, ak.unique("rules-"))
    with open(f, "w") as fh:
        fh.write("# telemetry\n\n  allow publish t/${device}/#\r\n"
                 "allow subscribe c/${device}/#   \n# end\n")
    p = cli.run("policy", "set", name, "--file", f)
    assert "replaced policy %s (2 rules)" % name in p.stdout, p.stdout
    got = a.get("/api/v1/policies/" + name).json()
    assert got["rules"] == ["allow publish t/${device}/#", "allow subscribe c/${device}/#"]
    assert got["description"] == "cli made", got
    # a bad rule: the server's sentence, the index, and the file's line
    with open(f, "w") as fh:
        fh.write("# header\nallow publish a/b\n\nallow publish a/#/b\n")
    p = cli.run("policy", "set", name, "--file", f, code=1)
    assert "rules[1]" in p.stderr and "line 4" in p.stderr and "#" in p.stderr, p.stderr
    p = cli.run("policy", "set", name, "--rule", "allow eat cake", code=1)
    assert "rules[0]" in p.stderr, p.stderr
    with open(f, "w") as fh:
        fh.write("# nothing\n\n")
    p = cli.run("policy", "set", name, "--file", f, code=1)
    assert "no rules" in p.stderr, p.stderr
    p = cli.run("policy", "set", name, "--file", f + ".missing", code=1)
    # show and list
    p = cli.run("policy", "show", name)
    assert "rules:\n  allow publish t/${device}/#\n  allow subscribe c/${device}/#\n" in \
        p.stdout, p.stdout
    assert cli.json("policy", "show", "device-default")["rules"] == DEFAULT_RULES
    p = cli.run("policy", "list")
    assert p.stdout.splitlines()[0].split() == ["NAME", "RULES", "BUILTIN", "DESCRIPTION"]
    row = [l for l in p.stdout.splitlines() if l.startswith("device-default ")]
    assert len(row) == 1 and row[0].split()[1:3] == ["3", "true"], p.stdout
    p = cli.run("policy", "set", "device-default", "--rule", "allow publish #", code=1)
    assert "Conflict" in p.stderr, p.stderr
    p = cli.run("policy", "delete", "device-default", code=1)
    assert "Conflict" in p.stderr, p.stderr
    assert "deleted policy %s" % name in cli.run("policy", "delete", name).stdout
    cli.run("policy", "show", name, code=1)


def test_cli_operator_cannot_set_policies(world, scratch):
    op = Cli(world, scratch, role="operator")
    d = ak.unique("opd-")
    op.run("device", "register", d, "--active")
    p = op.run("policy", "set", ak.unique("opp-"), "--rule", "allow publish #", code=1)
    assert "Not allowed" in p.stderr, p.stderr
    assert "device-default" in op.run("policy", "list").stdout
