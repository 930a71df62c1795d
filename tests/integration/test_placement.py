"""Placement at CONNECT (src/mqtt/place.c): with a consumer of d/+/t
connected, new device sessions are made on the consumer's worker, so their
messages reach it without a hand-off to another worker; without one, new
sessions are packed onto one worker, where a consumer connecting later
joins them; sessions placed either way keep working across reconnects
(persistent session, queued command), and delivery is unchanged."""

import os
import re

import pytest
from paho.mqtt.packettypes import PacketTypes

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("worker placement and its metrics")

POLICY = "placement-ingest"


@pytest.fixture(scope="module")
def env(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "placement")
    s.broker.conf["unknown_devices"] = "refuse"
    assert s.broker.conf.get("workers", 2) == 2
    s.start()
    adm = ak.setup_admin(s)
    pki = mk.PKI(s.dir, os.path.join(scratch, "placement-certs"))
    api = adm.api
    # the back end: reads every device's telemetry, sends commands
    r = api.request("PUT", "/api/v1/policies/" + POLICY,
                    {"rules": ["allow subscribe d/+/t", "allow publish c/+/#"]})
    assert r.status_code in (200, 201), ak.describe(r)
    register(api, "place-ingest", kind="service")
    r = api.post("/api/v1/devices/place-ingest/policies", {"policy": POLICY})
    assert r.status_code in (200, 201, 204), ak.describe(r)
    e = {"s": s, "api": api, "pki": pki}
    yield e
    s.stop()


def register(api, dev, kind="device"):
    r = api.post("/api/v1/devices", {"id": dev, "state": "active", "kind": kind})
    assert r.status_code == 201, ak.describe(r)


def client(env, dev):
    return mk.TClient(mk.HOST, env["s"].mqtt_port, dev, mk.V5,
                      cert=env["pki"].issue(dev), name=dev)


def metric(env, name):
    text = env["api"].get("/metrics").text
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, "no %s in /metrics" % name
    return float(m.group(1))


def test_devices_join_their_consumer_and_stay_reachable(env):
    ingest = client(env, "place-ingest")
    ingest.connect()
    assert ingest.subscribe("d/+/t", qos=1) == [1]
    placed0 = metric(env, "moat_mqtt_sessions_placed_total")
    posted0 = metric(env, "moat_mqtt_routes_posted_total")
    devs = []
    for i in range(16):
        dev = ak.unique("place-dev-%02d-" % i)
        register(env["api"], dev)
        c = client(env, dev)
        c.connect(clean_start=True,
                  properties=mk.props(PacketTypes.CONNECT, SessionExpiryInterval=3600))
        assert c.subscribe("c/%s/#" % dev, qos=1) == [1]
        devs.append((dev, c))
    for dev, c in devs:
        assert c.publish("d/%s/t" % dev, dev.encode(), qos=1) == 0
    got = sorted(ingest.get(pred=lambda m: m.topic.endswith("/t")).payload.decode()
                 for _ in devs)
    assert got == sorted(d for d, _ in devs)
    # The kernel spread the 16 connections over 2 workers; the ones that
    # landed away from the consumer were handed to it (all landing on one
    # worker has odds 2^-15), and none of the 16 messages crossed workers.
    assert metric(env, "moat_mqtt_sessions_placed_total") > placed0
    assert metric(env, "moat_mqtt_routes_posted_total") == posted0
    # A placed session is found again: offline, a command is queued for it,
    # and the reconnect gets session present and the command.
    dev, c = devs[0]
    c.disconnect()
    c.close()
    assert ingest.publish("c/%s/cmd" % dev, b"reboot", qos=1) == 0
    again = client(env, dev)
    try:
        _, present, _ = again.connect(
            clean_start=False,
            properties=mk.props(PacketTypes.CONNECT, SessionExpiryInterval=3600))
        assert present
        assert again.get(pred=lambda m: m.topic == "c/%s/cmd" % dev).payload == b"reboot"
    finally:
        again.close()
    for _, c in devs[1:]:
        c.close()
    ingest.close()


def test_without_a_consumer_sessions_are_packed(env):
    """No subscriber for the devices' topics yet: their sessions are packed
    onto one worker (the kernel spread 16 connections over 2 workers, so
    some were handed over), and a consumer connecting afterwards is packed
    there too: none of the devices' messages crosses workers."""
    placed0 = metric(env, "moat_mqtt_sessions_placed_total")
    devs = []
    for i in range(16):
        dev = ak.unique("place-lone-%02d-" % i)
        register(env["api"], dev)
        c = client(env, dev)
        c.connect()
        devs.append((dev, c))
    assert metric(env, "moat_mqtt_sessions_placed_total") > placed0
    ingest = client(env, "place-ingest")
    ingest.connect()
    assert ingest.subscribe("d/+/t", qos=1) == [1]
    posted0 = metric(env, "moat_mqtt_routes_posted_total")
    for dev, c in devs:
        assert c.publish("d/%s/t" % dev, dev.encode(), qos=1) == 0
    got = sorted(ingest.get(pred=lambda m: m.topic.endswith("/t")).payload.decode()
                 for _ in devs)
    assert got == sorted(d for d, _ in devs)
    assert metric(env, "moat_mqtt_routes_posted_total") == posted0
    for _, c in devs:
        c.close()
    ingest.close()
