"""
Authorization where data leaves (issue 9, section 3): a message is checked
against the receiver's ACL when it is queued and again when it is sent; a
policy change or a quarantine also applies to offline persistent sessions
(their subscriptions and queued messages that are no longer allowed go);
decommissioning erases synchronously, and after it none of the device's
payload bytes remain in moat.db or its WAL.
"""

import os
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("device registry")

CMD_POLICY = "authz-cmd-sender"


@pytest.fixture(scope="module")
def env(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "delivery-authz")
    s.broker.conf["unknown_devices"] = "refuse"
    s.start()
    adm = ak.setup_admin(s)
    pki = mk.PKI(s.dir, os.path.join(scratch, "delivery-authz-certs"))
    api = adm.api
    # a service identity that may send commands to every device
    r = api.request("PUT", "/api/v1/policies/" + CMD_POLICY,
                    {"rules": ["allow publish c/+/#"]})
    assert r.status_code in (200, 201), ak.describe(r)
    register(api, "authz-cmd", kind="service")
    r = api.post("/api/v1/devices/authz-cmd/policies", {"policy": CMD_POLICY})
    assert r.status_code in (200, 201, 204), ak.describe(r)
    e = {"s": s, "api": api, "pki": pki}
    yield e
    s.stop()


def register(api, dev, state="active", kind="device", groups=None):
    body = {"id": dev, "state": state, "kind": kind}
    if groups is not None:
        body["groups"] = groups
    r = api.post("/api/v1/devices", body)
    assert r.status_code == 201, ak.describe(r)


def client(env, dev, cert=None):
    return mk.TClient(mk.HOST, env["s"].mqtt_port, dev, mk.V5,
                      cert=cert or env["pki"].issue(dev), name=dev)


def persistent(c, clean=False):
    return c.connect(clean_start=clean,
                     properties=mk.props(PacketTypes.CONNECT, SessionExpiryInterval=3600))


def set_state(env, dev, state):
    r = env["api"].post("/api/v1/devices/%s/state" % dev, {"state": state})
    assert r.status_code == 200, ak.describe(r)


def send_cmd(env, topic, payload):
    svc = client(env, "authz-cmd", cert=env.setdefault("cmd_cert",
                                                      env["pki"].issue("authz-cmd")))
    try:
        svc.connect()
        assert svc.publish(topic, payload, qos=1) == 0
    finally:
        svc.close()


def offline_device_with_queued_command(env, dev, payload):
    """A device with a persistent session subscribed to its commands, gone
    offline, with one command queued for it."""
    cert = env["pki"].issue(dev)
    c = client(env, dev, cert)
    try:
        persistent(c, clean=True)
        assert c.subscribe("c/%s/#" % dev, qos=1) == [1]
        c.disconnect()
    finally:
        c.close()
    send_cmd(env, "c/%s/cmd" % dev, payload)
    return cert


def nothing_arrives(c, wait=1.0):
    time.sleep(wait)
    return c.pending() == []


def test_queued_command_reaches_a_device_that_stays_allowed(env):
    """The control case: without a registry change the queued command is
    delivered on reconnect (so the tests below can fail)."""
    dev = ak.unique("authz-ok-")
    register(env["api"], dev)
    cert = offline_device_with_queued_command(env, dev, b"reboot")
    c = client(env, dev, cert)
    try:
        code, present, _ = persistent(c)
        assert present == 1
        assert c.get_topic("c/%s/cmd" % dev).payload == b"reboot"
    finally:
        c.close()


def test_quarantine_while_offline_drops_the_queue_and_the_subscriptions(env):
    dev = ak.unique("authz-q-")
    register(env["api"], dev)
    cert = offline_device_with_queued_command(env, dev, b"queued-before")
    mark = env["s"].broker.mark()
    set_state(env, dev, "quarantined")
    env["s"].broker.wait_log(r"queue_pruned client=%s dropped=1" % dev, since=mark)
    # a command sent while quarantined is not queued either
    send_cmd(env, "c/%s/cmd" % dev, b"sent-during")
    c = client(env, dev, cert)
    try:
        code, present, _ = persistent(c)
        assert code == 0 and present == 1, "quarantined devices connect"
        assert nothing_arrives(c), c.pending()
    finally:
        c.close()
    # released: the subscription was removed, so a new command is not
    # delivered to the old session until the device subscribes again
    set_state(env, dev, "active")
    send_cmd(env, "c/%s/cmd" % dev, b"after-release")
    c = client(env, dev, cert)
    try:
        code, present, _ = persistent(c)
        assert present == 1
        assert nothing_arrives(c), c.pending()
    finally:
        c.close()


def test_disable_while_offline_drops_the_queue_and_queues_nothing(env):
    dev = ak.unique("authz-off-")
    register(env["api"], dev)
    cert = offline_device_with_queued_command(env, dev, b"before-disable")
    set_state(env, dev, "disabled")
    send_cmd(env, "c/%s/cmd" % dev, b"while-disabled")
    set_state(env, dev, "active")
    c = client(env, dev, cert)
    try:
        code, present, _ = persistent(c)
        assert present == 1
        assert nothing_arrives(c), c.pending()
        # its subscription was kept: what is sent now arrives
        send_cmd(env, "c/%s/cmd" % dev, b"after-enable")
        assert c.get_topic("c/%s/cmd" % dev).payload == b"after-enable"
    finally:
        c.close()


def test_policy_change_while_offline_applies_to_the_stored_session(env):
    api = env["api"]
    grp, pol = ak.unique("authz-g-"), ak.unique("authz-p-")

    def put(rules):
        r = api.request("PUT", "/api/v1/policies/" + pol, {"rules": rules})
        assert r.status_code in (200, 201), ak.describe(r)

    put(["allow subscribe c/${device}/#", "allow publish d/${device}/#"])
    assert api.post("/api/v1/groups", {"name": grp}).status_code == 201
    r = api.post("/api/v1/groups/%s/policies" % grp, {"policy": pol})
    assert r.status_code in (200, 201, 204), ak.describe(r)
    dev = ak.unique("authz-pol-")
    register(api, dev, groups=[grp])
    cert = offline_device_with_queued_command(env, dev, b"old-policy")
    put(["allow publish d/${device}/#"])
    send_cmd(env, "c/%s/cmd" % dev, b"new-policy")
    c = client(env, dev, cert)
    try:
        code, present, _ = persistent(c)
        assert present == 1
        assert nothing_arrives(c), c.pending()
    finally:
        c.close()
    lines = env["s"].broker.log_lines()
    assert [l for l in lines if "subscription_removed" in l and dev in l], env["s"].broker.tail()


def test_quarantine_applies_to_a_live_session_queue(env):
    """A live device whose in-flight window is full has messages queued;
    quarantining it drops them (the check when sent)."""
    dev = ak.unique("authz-live-")
    register(env["api"], dev)
    cert = env["pki"].issue(dev)
    raw = mk.RawConn(mk.HOST, env["s"].mqtt_port,
                     mk.client_ssl_context(cert.ca, cert.cert, cert.key))
    try:
        raw.send(mk.connect_pkt(dev, props_kw={"ReceiveMaximum": 1,
                                               "SessionExpiryInterval": 3600}))
        assert raw.expect(mk.CONNACK).reason() == 0
        raw.send(mk.subscribe_pkt(1, [("c/%s/#" % dev, 1)]))
        assert raw.expect(mk.SUBACK)
        for i in range(3):
            send_cmd(env, "c/%s/cmd" % dev, b"m%d" % i)
        first = raw.expect(mk.PUBLISH)  # the first PUBLISH; never acknowledged
        assert b"m0" in first.body
        mark = env["s"].broker.mark()
        set_state(env, dev, "quarantined")
        env["s"].broker.wait_log(r"queue_pruned client=%s dropped=3" % dev, since=mark)
    finally:
        raw.close()


def test_decommission_erases_before_it_answers(env):
    """Re-registered at once, the id gets a fresh session: nothing of the
    old device's session or queued command."""
    dev = ak.unique("authz-dec-")
    register(env["api"], dev)
    offline_device_with_queued_command(env, dev, b"old-device-command")
    r = env["api"].post("/api/v1/devices/%s/decommission" % dev)
    assert r.status_code == 200, ak.describe(r)
    assert r.json()["erased"] is True
    register(env["api"], dev)
    c = client(env, dev)
    try:
        code, present, _ = persistent(c)
        assert code == 0 and present == 0, "the old session must be gone"
        assert c.subscribe("c/%s/#" % dev, qos=1) == [1]
        assert nothing_arrives(c), c.pending()
    finally:
        c.close()


def _files_hold(d, needle):
    found = []
    for name in ("moat.db", "moat.db-wal"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                if needle in f.read():
                    found.append(name)
    return found


def test_decommission_leaves_no_payload_bytes_in_the_database_files(env):
    dev = ak.unique("authz-bytes-")
    register(env["api"], dev)
    retained = ("RETAINED-" + os.urandom(8).hex()).encode()
    command = ("COMMAND-" + os.urandom(8).hex()).encode()
    cert = env["pki"].issue(dev)
    c = client(env, dev, cert)
    try:
        persistent(c, clean=True)
        assert c.subscribe("c/%s/#" % dev, qos=1) == [1]
        assert c.publish("d/%s/state" % dev, retained, qos=1, retain=True) == 0
        c.disconnect()
    finally:
        c.close()
    send_cmd(env, "c/%s/cmd" % dev, command)
    d = env["s"].dir
    # both are on disk before (else this test could not fail)
    mk.wait_until(lambda: _files_hold(d, retained) and _files_hold(d, command), timeout=5,
                  what="the payloads to be stored")
    r = env["api"].post("/api/v1/devices/%s/decommission" % dev)
    assert r.status_code == 200, ak.describe(r)
    assert r.json()["removed"]["retained"] == 1, r.json()
    assert _files_hold(d, retained) == [], "retained payload still in the files"
    assert _files_hold(d, command) == [], "queued command still in the files"


def test_restart_keeps_what_the_registry_pruned(env, moat_bin, scratch):
    """A stored session pruned while offline stays pruned after a restart
    (the drop is written to the store, and a restart re-applies the
    registry to restored sessions)."""
    s = ak.ApiServer(moat_bin, scratch, "authz-restart")
    s.broker.conf["unknown_devices"] = "refuse"
    s.start()
    try:
        adm = ak.setup_admin(s)
        e = {"s": s, "api": adm.api, "pki": mk.PKI(s.dir, os.path.join(scratch, "authz-rs"))}
        r = e["api"].request("PUT", "/api/v1/policies/" + CMD_POLICY,
                             {"rules": ["allow publish c/+/#"]})
        assert r.status_code in (200, 201), ak.describe(r)
        register(e["api"], "authz-cmd", kind="service")
        assert e["api"].post("/api/v1/devices/authz-cmd/policies",
                             {"policy": CMD_POLICY}).status_code in (200, 201, 204)
        dev = ak.unique("authz-rs-")
        register(e["api"], dev)
        cert = offline_device_with_queued_command(e, dev, b"before-restart")
        set_state(e, dev, "quarantined")
        s.stop()
        s.start()
        c = client(e, dev, cert)
        try:
            code, present, _ = persistent(c)
            assert present == 1
            assert nothing_arrives(c), c.pending()
        finally:
            c.close()
    finally:
        s.stop()
