"""Durable state (issue 3, first slice): retained messages are written to the
store (moat.db in the data directory) and survive SIGKILL; a QoS 1/2 retained
PUBLISH is acknowledged only once it is on disk."""

import os
import sqlite3
import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqttkit as mk

pytestmark = pytest.mark.moat_only("moat's store and its restore at start")


def pubprops(**kw):
    p = Properties(PacketTypes.PUBLISH)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def restart_hard(b):
    """SIGKILL (no shutdown path at all), then start on the same directory."""
    b.kill()
    b.stop()
    b.start(write_config=False)


def first_after_subscribe(c, flt, sentinel_topic, publisher):
    """The messages a fresh subscription gets before a live sentinel: the
    retained ones, in order."""
    assert c.subscribe(flt, 1) == [1]
    publisher.publish(sentinel_topic, b"sentinel", qos=1)
    got = []
    while True:
        m = c.get(what="retained messages then the sentinel")
        if m.topic == sentinel_topic:
            return got
        got.append(m)


@pytest.mark.parametrize("qos", [1, 2])
def test_retained_survives_sigkill(make_broker, client, qos):
    b = make_broker(name="durable-q%d" % qos)
    p = client(listener="open", on=b)
    props = pubprops(UserProperty=[("k", "v")], ContentType="text/plain")
    assert p.publish("keep/%d" % qos, b"acked", qos=qos, retain=True, properties=props) == 0
    restart_hard(b)
    s = client(listener="open", on=b)
    p2 = client(listener="open", on=b)
    got = first_after_subscribe(s, "keep/#", "keep/sentinel", p2)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("keep/%d" % qos, b"acked", True)]
    assert got[0].prop("ContentType") == "text/plain"
    assert ("k", "v") in got[0].prop("UserProperty", [])
    assert os.stat(os.path.join(b.dir, "moat.db")).st_mode & 0o077 == 0


def test_replaced_and_cleared_retained_stay_so(make_broker, client):
    b = make_broker(name="durable-replace")
    p = client(listener="open", on=b)
    p.publish("r/a", b"old", qos=1, retain=True)
    p.publish("r/a", b"new", qos=1, retain=True)
    p.publish("r/b", b"gone", qos=1, retain=True)
    p.publish("r/b", b"", qos=1, retain=True)  # clears it
    restart_hard(b)
    s = client(listener="open", on=b)
    got = first_after_subscribe(s, "r/#", "r/sentinel", client(listener="open", on=b))
    assert [(m.topic, m.payload) for m in got] == [("r/a", b"new")]


def test_retained_expiry_counts_while_down(make_broker, client):
    b = make_broker(name="durable-expiry")
    p = client(listener="open", on=b)
    p.publish("x/short", b"s", qos=1, retain=True, properties=pubprops(MessageExpiryInterval=1))
    p.publish("x/long", b"l", qos=1, retain=True, properties=pubprops(MessageExpiryInterval=3600))
    b.kill()
    b.stop()
    time.sleep(1.5)  # the short one expires while the broker is down
    b.start(write_config=False)
    s = client(listener="open", on=b)
    got = first_after_subscribe(s, "x/#", "x/sentinel", client(listener="open", on=b))
    assert [m.topic for m in got] == ["x/long"]
    assert 0 < got[0].prop("MessageExpiryInterval", -1) <= 3600


def test_relaxed_durability_still_persists_on_clean_stop(make_broker, client):
    b = make_broker(name="durable-relaxed", broker_conf={"durability": "relaxed"})
    p = client(listener="open", on=b)
    p.publish("rl/a", b"v", qos=1, retain=True)
    assert b.stop() == 0
    b.start(write_config=False)
    s = client(listener="open", on=b)
    got = first_after_subscribe(s, "rl/#", "rl/sentinel", client(listener="open", on=b))
    assert [(m.topic, m.payload) for m in got] == [("rl/a", b"v")]


def test_newer_database_refused(make_broker):
    b = make_broker(name="durable-newer", start=False)
    b.write_config()
    b.start(write_config=False)
    b.stop()
    db = sqlite3.connect(os.path.join(b.dir, "moat.db"))
    db.execute("UPDATE schema_version SET version = 999 WHERE version = "
               "(SELECT max(version) FROM schema_version)" if _has_table(db, "schema_version")
               else "PRAGMA user_version = 999")
    db.commit()
    db.close()
    r = mk.run([b.moat_bin, "serve", "--dir", b.dir], check=False, timeout=10)
    assert r.returncode == 1
    assert "newer" in r.stderr, r.stderr


def _has_table(db, name):
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                      (name,)).fetchone() is not None


def conprops(**kw):
    p = Properties(PacketTypes.CONNECT)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


@pytest.mark.parametrize("hard", [True, False], ids=["sigkill", "sigterm"])
def test_persistent_session_and_subscriptions_survive_restart(make_broker, client, device, hard):
    b = make_broker(name="durable-session-%s" % ("kill" if hard else "term"))
    dev = device()
    topic = "c/%s/cmd" % dev.id
    d = client(dev, on=b, connect=False)
    code, present, _ = d.connect(properties=conprops(SessionExpiryInterval=300))
    assert (code, present) == (0, 0)
    assert d.subscribe([(topic, 1), ("d/%s/echo" % dev.id, 0)]) == [1, 0]
    if hard:
        restart_hard(b)
    else:
        assert b.stop() == 0
        b.start(write_config=False)
    d2 = client(dev, on=b, connect=False)
    code, present, _ = d2.connect(clean_start=False, properties=conprops(SessionExpiryInterval=300))
    assert (code, present) == (0, 1), "the session did not survive the restart"
    client(listener="open", on=b).publish(topic, b"after-restart", qos=1)
    m = d2.get_topic(topic)
    assert (m.payload, m.qos) == (b"after-restart", 1)


def test_session_expiry_counts_while_down(make_broker, client, device):
    b = make_broker(name="durable-session-expiry")
    dev = device()
    d = client(dev, on=b, connect=False)
    d.connect(properties=conprops(SessionExpiryInterval=1))
    assert d.subscribe("c/%s/x" % dev.id, 1) == [1]
    d.disconnect()
    b.stop()
    time.sleep(1.5)
    b.start(write_config=False)
    d2 = client(dev, on=b, connect=False)
    code, present, _ = d2.connect(clean_start=False, properties=conprops(SessionExpiryInterval=1))
    assert (code, present) == (0, 0)


def test_clean_start_and_unsubscribe_are_durable(make_broker, client, device):
    b = make_broker(name="durable-unsub")
    dev = device()
    a, keep = "c/%s/a" % dev.id, "c/%s/keep" % dev.id
    d = client(dev, on=b, connect=False)
    d.connect(properties=conprops(SessionExpiryInterval=300))
    assert d.subscribe([(a, 1), (keep, 1)]) == [1, 1]
    d.unsubscribe(a)
    restart_hard(b)
    d2 = client(dev, on=b, connect=False)
    assert d2.connect(clean_start=False, properties=conprops(SessionExpiryInterval=300))[:2] == (0, 1)
    svc = client(listener="open", on=b)
    svc.publish(a, b"unsubscribed", qos=1)
    svc.publish(keep, b"kept", qos=1)
    assert d2.get().payload == b"kept"
    # clean start drops the stored session too
    d2.disconnect()
    d3 = client(dev, on=b, connect=False)
    assert d3.connect(clean_start=True, properties=conprops(SessionExpiryInterval=300))[:2] == (0, 0)
    d3.disconnect()
    restart_hard(b)
    d4 = client(dev, on=b, connect=False)
    code, present, _ = d4.connect(clean_start=False, properties=conprops(SessionExpiryInterval=300))
    assert present == 1
    svc2 = client(listener="open", on=b)
    svc2.publish(keep, b"not-subscribed-any-more", qos=1)
    svc2.publish("c/%s/probe" % dev.id, b"x", qos=0)
    assert d4.subscribe("c/%s/probe" % dev.id, 0) == [0]
    svc2.publish("c/%s/probe" % dev.id, b"probe", qos=0)
    assert d4.get().payload == b"probe"
