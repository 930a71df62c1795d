"""
The registry service (issue 9): every registry write, including the
offline `moat cert issue`, commits with an audit entry that verifies.
"""

import json
import os
import pwd

import pytest

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("device registry")


def export(s, d):
    p = s.moat("audit", "export", "--dir", d)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def verify(s, d):
    p = s.moat("audit", "verify", "--dir", d)
    return p.returncode, p.stdout + p.stderr


def actor():
    return "cli:" + pwd.getpwuid(os.geteuid()).pw_name


def test_cert_issue_offline_is_audited_and_verifies(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "regsvc-offline")
    s.start()
    try:
        ak.setup_admin(s)
    finally:
        s.stop()
    before = export(s, s.dir)
    p = s.moat("cert", "issue", "--dir", s.dir, "--device", "dev-off")
    assert p.returncode == 0, p.stderr
    after = export(s, s.dir)
    assert len(after) == len(before) + 1, after[len(before):]
    e = after[-1]
    assert e["action"] == "certificate.issue" and e["target"] == "dev-off", e
    assert e["actor"] == actor() and e["outcome"] == "ok", e
    d = e["detail"] if isinstance(e["detail"], dict) else json.loads(e["detail"])
    assert d["registered"] is True and d["state"] == "active", d
    assert d["groups"] == ["devices"] and len(d["serial"]) >= 32, d
    rc, out = verify(s, s.dir)
    assert rc == 0 and "intact" in out and "NOT" not in out, out
    assert "%d entries" % len(after) in out, out
    assert "sealed up to seq %d" % e["seq"] in out, out
    # A second certificate for the same device records it without
    # registering again; still one entry, still intact.
    p = s.moat("cert", "issue", "--dir", s.dir, "--device", "dev-off", "--out",
               os.path.join(s.dir, "dev-off-2"))
    assert p.returncode == 0, p.stderr
    last = export(s, s.dir)[-1]
    d = last["detail"] if isinstance(last["detail"], dict) else json.loads(last["detail"])
    assert last["action"] == "certificate.issue" and d["registered"] is False, last
    rc, out = verify(s, s.dir)
    assert rc == 0 and "NOT" not in out, out


def test_cert_issue_while_serving_keeps_the_chain_intact(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "regsvc-live")
    s.start()
    try:
        adm = ak.setup_admin(s)
        p = s.moat("cert", "issue", "--dir", s.dir, "--device", "dev-live")
        assert p.returncode == 0, p.stderr
        # The server's next entry follows the one the command wrote.
        r = adm.api.post("/api/v1/devices", {"id": "dev-after", "state": "active"})
        assert r.status_code == 201, ak.describe(r)
        log = ak.audit_all(adm.api)
        issued = [x for x in log if x["action"] == "certificate.issue"]
        assert len(issued) == 1 and issued[0]["target"] == "dev-live", log[:5]
        assert issued[0]["actor"] == actor(), issued[0]
        r = adm.api.get("/api/v1/audit/verify")
        assert r.status_code == 200, ak.describe(r)
        assert r.json()["status"] == "intact", r.json()
        # The command sealed its entry with the key: the server adopts it
        # as it is instead of flagging an unsealed tail.
        assert not [x for x in log if x["action"] == "audit.unsealed_tail"], log[:5]
        assert [x["action"] for x in log[:2]] == ["device.register", "certificate.issue"], \
            log[:5]
        # SIGHUP loads the offline registration: the device connects.
        mark = s.broker.mark()
        s.broker.signal(__import__("signal").SIGHUP)
        s.broker.wait_log(r"event=reload ok=1", since=mark)
        cert = mk.Cert("dev-live", os.path.join(s.dir, "devices", "dev-live.crt"),
                       os.path.join(s.dir, "devices", "dev-live.key"), s.ca)
        c = mk.TClient(mk.HOST, s.mqtt_port, "dev-live", mk.V5, cert=cert, name="dev-live")
        try:
            c.connect()
        finally:
            c.close()
    finally:
        s.stop()
    rc, out = verify(s, s.dir)
    assert rc == 0 and "NOT" not in out, out


# --------------------------------------------------------------------------
# per-identity events: a change re-admits the sessions of the identities it
# touched, connected or offline; unknown devices (allow) keep working
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def allow(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "regsvc-allow")
    s.broker.conf["unknown_devices"] = "allow"
    s.start()
    adm = ak.setup_admin(s)
    pki = mk.PKI(s.dir, os.path.join(scratch, "regsvc-allow-certs"))
    yield {"s": s, "api": adm.api, "pki": pki}
    s.stop()


def aclient(env, dev):
    return mk.TClient(mk.HOST, env["s"].mqtt_port, dev, mk.V5, cert=env["pki"].issue(dev),
                      name=dev)


def test_builtin_group_policy_change_reaches_unknown_devices(allow):
    """Unregistered identities are members of `devices` under allow: a change
    to that group's policies re-admits their sessions too."""
    api = allow["api"]
    r = api.request("PUT", "/api/v1/policies/wide-read", {"rules": ["allow subscribe w/#"]})
    assert r.status_code == 201, ak.describe(r)
    c = aclient(allow, "ghost-w")
    try:
        c.connect()
        assert c.subscribe("w/x", qos=1)[0] == 0x87
        r = api.post("/api/v1/groups/devices/policies", {"policy": "wide-read"})
        assert r.status_code == 200, ak.describe(r)
        mk.wait_until(lambda: c.subscribe("w/x", qos=1) == [1], timeout=5,
                      what="the new policy of group devices")
        mark = allow["s"].broker.mark()
        r = api.delete("/api/v1/groups/devices/policies/wide-read")
        assert r.status_code == 204, ak.describe(r)
        allow["s"].broker.wait_log(r"event=subscription_removed client=ghost-w", since=mark)
    finally:
        c.close()


def test_registering_a_connected_unknown_device_applies_at_once(allow):
    """The change names an identity the table did not hold: its live
    session (admitted as unknown) is re-admitted as what it now is."""
    c = aclient(allow, "ghost-r")
    try:
        c.connect()
        assert c.publish("d/ghost-r/x", b"1", qos=1) == 0
        r = allow["api"].post("/api/v1/devices", {"id": "ghost-r", "state": "registered"})
        assert r.status_code == 201, ak.describe(r)
        assert c.wait_disconnect(timeout=5) == 0x98
    finally:
        c.close()


def test_a_change_loads_only_the_identities_it_touched(moat_bin, scratch):
    """A change reloads the records it touched and no others: a device
    registered offline behind the server's back stays unknown to it through
    an unrelated change, until SIGHUP loads everything."""
    s = ak.ApiServer(moat_bin, scratch, "regsvc-only")
    s.broker.conf["unknown_devices"] = "refuse"
    s.start()
    try:
        adm = ak.setup_admin(s)
        pki = mk.PKI(s.dir, os.path.join(scratch, "regsvc-only-certs"))
        p = s.moat("cert", "issue", "--dir", s.dir, "--device", "off-1")
        assert p.returncode == 0, p.stderr
        r = adm.api.post("/api/v1/devices", {"id": "on-1", "state": "active"})
        assert r.status_code == 201, ak.describe(r)
        on = mk.TClient(mk.HOST, s.mqtt_port, "on-1", mk.V5, cert=pki.issue("on-1"),
                        name="on-1")
        off = mk.TClient(mk.HOST, s.mqtt_port, "off-1", mk.V5, cert=pki.issue("off-1"),
                         name="off-1")
        try:
            on.connect()
            assert off.connect(expect=None)[0] == 0x87
        finally:
            on.close()
            off.close()
        mark = s.broker.mark()
        s.broker.signal(__import__("signal").SIGHUP)
        s.broker.wait_log(r"event=reload ok=1", since=mark)
        off = mk.TClient(mk.HOST, s.mqtt_port, "off-1", mk.V5, cert=pki.issue("off-1"),
                         name="off-1")
        try:
            off.connect()
        finally:
            off.close()
    finally:
        s.stop()
