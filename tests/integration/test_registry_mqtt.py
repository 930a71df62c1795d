"""
The registry enforced on the MQTT path (issue 5): only registered, active
identities connect; policies from groups and direct attachments decide
every publish and subscribe; state changes and policy changes apply to live
sessions at once.
"""

import os
import time

import pytest

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("device registry")


@pytest.fixture(scope="module")
def reg(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "registry-mqtt")
    s.broker.conf["unknown_devices"] = "refuse"  # the default moat init writes
    s.start()
    adm = ak.setup_admin(s)
    pki = mk.PKI(s.dir, os.path.join(scratch, "registry-mqtt-certs"))
    yield {"s": s, "api": adm.api, "pki": pki}
    s.stop()


def register(api, dev, state="active", kind="device", groups=None):
    body = {"id": dev, "state": state, "kind": kind}
    if groups is not None:
        body["groups"] = groups
    r = api.post("/api/v1/devices", body)
    assert r.status_code == 201, ak.describe(r)


def client(reg, dev, cert=None):
    return mk.TClient(mk.HOST, reg["s"].mqtt_port, dev, mk.V5,
                      cert=cert or reg["pki"].issue(dev), name=dev)


def test_unknown_and_registered_identities_are_refused(reg):
    c = client(reg, "ghost-1")
    try:
        assert c.connect(expect=None)[0] == 0x87
    finally:
        c.close()
    register(reg["api"], "pending-1", state="registered")
    c = client(reg, "pending-1")
    try:
        assert c.connect(expect=None)[0] == 0x87
    finally:
        c.close()


def test_active_device_gets_the_device_default_policy(reg):
    register(reg["api"], "dev-a")
    register(reg["api"], "dev-b")
    a, b = client(reg, "dev-a"), client(reg, "dev-b")
    try:
        a.connect()
        b.connect()
        assert a.subscribe("d/dev-a/#", qos=1) == [1]
        assert b.subscribe("d/+/temp", qos=1)[0] == 0x87, "another device's data"
        assert b.publish("d/dev-a/temp", b"x", qos=1) == 0x87
        assert a.publish("d/dev-a/temp", b"21", qos=1) == 0
        assert a.get_topic("d/dev-a/temp").payload == b"21"
    finally:
        a.close()
        b.close()


def test_disable_disconnects_a_live_session_with_0x98(reg):
    register(reg["api"], "dev-off")
    c = client(reg, "dev-off")
    try:
        c.connect()
        t0 = time.monotonic()
        r = reg["api"].post("/api/v1/devices/dev-off/state", {"state": "disabled"})
        assert r.status_code == 200, ak.describe(r)
        d = c.wait_disconnect(timeout=5)
        assert time.monotonic() - t0 < 5
        assert d is not None
        # and it cannot come back
        c2 = client(reg, "dev-off")
        try:
            assert c2.connect(expect=None)[0] == 0x87
        finally:
            c2.close()
    finally:
        c.close()


def test_quarantine_limits_a_live_device_to_its_quarantine_topic(reg):
    register(reg["api"], "dev-q")
    c = client(reg, "dev-q")
    try:
        c.connect()
        assert c.subscribe("c/dev-q/#", qos=1) == [1]
        r = reg["api"].post("/api/v1/devices/dev-q/state", {"state": "quarantined"})
        assert r.status_code == 200, ak.describe(r)
        # stays connected, may only publish under $moat/q/dev-q/
        mk.wait_until(lambda: c.publish("d/dev-q/x", b"1", qos=1) == 0x87, timeout=5,
                    what="the quarantine policy to apply")
        assert c.publish("$moat/q/dev-q/report", b"ok", qos=1) == 0
        assert c.subscribe("d/dev-q/#", qos=1)[0] == 0x87
        r = reg["api"].post("/api/v1/devices/dev-q/state", {"state": "active"})
        assert r.status_code == 200, ak.describe(r)
        mk.wait_until(lambda: c.publish("d/dev-q/x", b"1", qos=1) == 0, timeout=5,
                    what="the release to apply")
    finally:
        c.close()


def test_service_identity_reads_every_device_through_its_policy(reg):
    api = reg["api"]
    r = api.request("PUT", "/api/v1/policies/telemetry-reader",
                    {"rules": ["allow subscribe d/+/t/#"]})
    assert r.status_code in (200, 201), ak.describe(r)
    register(api, "svc-reader", kind="service")
    r = api.post("/api/v1/devices/svc-reader/policies", {"policy": "telemetry-reader"})
    assert r.status_code in (200, 201, 204), ak.describe(r)
    register(api, "dev-t")
    svc, dev = client(reg, "svc-reader"), client(reg, "dev-t")
    try:
        svc.connect()
        dev.connect()
        assert svc.subscribe("d/+/t/#", qos=1) == [1]
        assert svc.subscribe("d/+/secret", qos=1)[0] == 0x87
        assert dev.publish("d/dev-t/t/temp", b"20", qos=1) == 0
        assert svc.get_topic("d/dev-t/t/temp").payload == b"20"
        assert svc.publish("d/dev-t/t/temp", b"x", qos=1) == 0x87, "read-only service"
    finally:
        svc.close()
        dev.close()


def test_live_policy_change_prunes_subscriptions(reg):
    api = reg["api"]

    def put(rules):
        r = api.request("PUT", "/api/v1/policies/cmd-readers", {"rules": rules})
        assert r.status_code in (200, 201), ak.describe(r)

    put(["allow subscribe c/${device}/#", "allow publish d/${device}/#"])
    r = api.post("/api/v1/groups", {"name": "cmd-group"})
    assert r.status_code == 201, ak.describe(r)
    r = api.post("/api/v1/groups/cmd-group/policies", {"policy": "cmd-readers"})
    assert r.status_code in (200, 201, 204), ak.describe(r)
    register(api, "dev-live", groups=["cmd-group"])
    c = client(reg, "dev-live")
    try:
        c.connect()
        assert c.subscribe("c/dev-live/#", qos=1) == [1]
        # the policy loses the subscribe rule: the live subscription goes
        put(["allow publish d/${device}/#"])
        mk.wait_until(lambda: c.subscribe("c/dev-live/x", qos=1)[0] == 0x87, timeout=5,
                    what="the new policy")
        s = reg["s"]
        assert [l for l in s.broker.log_lines()
                if "subscription_removed" in l and "dev-live" in l], s.broker.tail()
    finally:
        c.close()


def test_cert_issue_registers_the_device_and_sighup_loads_it(reg, moat_bin):
    """`moat cert issue` (development certificates) registers the device as
    active; a running server picks it up on SIGHUP."""
    s = reg["s"]
    p = mk.run([moat_bin, "cert", "issue", "--dir", s.dir, "--device", "dev-issued"],
               check=False)
    assert p.returncode == 0, p.stderr
    cert = mk.Cert("dev-issued", os.path.join(s.dir, "devices", "dev-issued.crt"),
                   os.path.join(s.dir, "devices", "dev-issued.key"), s.ca)
    mark = s.broker.mark()
    s.broker.signal(__import__("signal").SIGHUP)
    s.broker.wait_log(r"event=reload ok=1", since=mark)
    c = client(reg, "dev-issued", cert=cert)
    try:
        c.connect()
        assert c.publish("d/dev-issued/x", b"1", qos=1) == 0
    finally:
        c.close()
    r = reg["api"].get("/api/v1/devices/dev-issued")
    assert r.status_code == 200 and r.json()["state"] == "active", ak.describe(r)


def test_registry_records_seen_address_and_reported_firmware(reg):
    from paho.mqtt.packettypes import PacketTypes
    register(reg["api"], "dev-seen")
    c = client(reg, "dev-seen")
    try:
        c.connect(properties=mk.props(PacketTypes.CONNECT,
                                      UserProperty=[("firmware", "2.4.1")]))
    finally:
        c.close()

    def seen():
        d = reg["api"].get("/api/v1/devices/dev-seen").json()
        return d if d["last_seen"] else None
    d = mk.wait_until(seen, what="last_seen to be recorded")
    assert d["first_seen"] and d["last_addr"] == "127.0.0.1" and d["firmware"] == "2.4.1", d
