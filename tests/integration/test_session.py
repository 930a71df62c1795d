"""Sessions: clean start / clean session, session expiry, queued QoS 1/2
messages for offline sessions, redelivery of unacknowledged messages,
session takeover, keepalive."""

import time

import pytest

import mqttkit as mk
from mqttkit import PacketTypes, props

SESSION_TAKEN_OVER = 0x8E


def expiry(sec):
    return props(PacketTypes.CONNECT, SessionExpiryInterval=sec)


def test_v5_session_resumes_with_queued_messages(client, device):
    dev = device()
    topic = "c/%s/cmd" % dev.id
    d = client(dev, connect=False)
    code, present, _ = d.connect(clean_start=True, properties=expiry(300))
    assert (code, present) == (0, 0)
    assert d.subscribe(topic, 2) == [2]
    d.disconnect()

    svc = client(listener="open")
    svc.publish(topic, b"q1", qos=1)
    svc.publish(topic, b"q2", qos=2)
    svc.publish(topic, b"q0", qos=0)  # may or may not be queued; not asserted

    d2 = client(dev, connect=False)
    code, present, _ = d2.connect(clean_start=False, properties=expiry(300))
    assert (code, present) == (0, 1), "session present flag"
    got = d2.collect(2, pred=lambda m: m.payload in (b"q1", b"q2"))
    assert [(m.payload, m.qos) for m in got] == [(b"q1", 1), (b"q2", 2)]
    # the subscription itself survived: live messages flow without re-subscribing
    svc.publish(topic, b"live", qos=1)
    assert d2.get(pred=lambda m: m.payload == b"live").qos == 1


def test_v311_persistent_session(client, device):
    dev = device()
    topic = "c/%s/cmd" % dev.id
    d = client(dev, protocol=mk.V311, clean_session=False, connect=False)
    code, present, _ = d.connect()
    assert code == 0
    assert d.subscribe(topic, 1) == [1]
    d.disconnect()
    svc = client(listener="open")
    for i in range(5):
        svc.publish(topic, b"m%d" % i, qos=1)
    d2 = client(dev, protocol=mk.V311, clean_session=False, connect=False)
    code, present, _ = d2.connect()
    assert (code, present) == (0, 1)
    got = d2.collect(5)
    assert [m.payload for m in got] == [b"m%d" % i for i in range(5)]


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_clean_start_discards_session(client, device, proto):
    dev = device()
    topic = "c/%s/cmd" % dev.id
    if proto == mk.V5:
        d = client(dev, connect=False)
        d.connect(clean_start=True, properties=expiry(300))
    else:
        d = client(dev, protocol=proto, clean_session=False)
    assert d.subscribe(topic, 1) == [1]
    d.disconnect()
    svc = client(listener="open")
    svc.publish(topic, b"stale", qos=1)

    d2 = client(dev, protocol=proto, connect=False)  # clean start / clean session
    code, present, _ = d2.connect()
    assert (code, present) == (0, 0)
    assert d2.subscribe("c/%s/sentinel" % dev.id, 1) == [1]
    svc.publish(topic, b"after", qos=1)  # old subscription must be gone too
    svc.publish("c/%s/sentinel" % dev.id, b"s", qos=1)
    m = d2.get()
    assert (m.topic, m.payload) == ("c/%s/sentinel" % dev.id, b"s"), "stale session data: %r" % m


def test_v5_session_expiry_zero_ends_at_disconnect(client, device):
    dev = device()
    d = client(dev, connect=False)
    d.connect(clean_start=True)  # no Session Expiry Interval = 0
    assert d.subscribe("c/%s/x" % dev.id, 1) == [1]
    d.disconnect()
    d2 = client(dev, connect=False)
    code, present, _ = d2.connect(clean_start=False)
    assert (code, present) == (0, 0)


def test_v5_session_expires_after_interval(client, device):
    dev = device()
    d = client(dev, connect=False)
    d.connect(clean_start=True, properties=expiry(1))
    assert d.subscribe("c/%s/x" % dev.id, 1) == [1]
    d.disconnect()
    time.sleep(2.5)  # the expiry interval is the behaviour under test
    d2 = client(dev, connect=False)
    code, present, _ = d2.connect(clean_start=False, properties=expiry(1))
    assert (code, present) == (0, 0), "session outlived its 1 s expiry"


def test_v5_session_expiry_set_on_disconnect(client, device):
    """A client may change a non-zero session expiry in DISCONNECT."""
    dev = device()
    d = client(dev, connect=False)
    d.connect(clean_start=True, properties=expiry(1))
    assert d.subscribe("c/%s/x" % dev.id, 1) == [1]
    n = len(d.disconnects)
    d.c.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=300))
    d._wait(lambda: len(d.disconnects) > n, mk.WAIT, "disconnect")
    d.stop_loop()
    time.sleep(2.0)
    d2 = client(dev, connect=False)
    code, present, _ = d2.connect(clean_start=False, properties=expiry(300))
    assert (code, present) == (0, 1)


def test_unacknowledged_qos1_redelivered_with_dup(client, device):
    """Nothing acknowledged is lost: a QoS 1 message the device never acked
    is sent again on session resumption, with DUP set."""
    dev = device()
    topic = "c/%s/cmd" % dev.id
    d = client(dev, connect=False)
    d.connect(clean_start=True, properties=expiry(300))
    assert d.subscribe(topic, 1) == [1]
    d.c.t_hold_puback = True
    client(listener="open").publish(topic, b"important", qos=1)
    first = d.get_topic(topic)
    assert first.dup == 0
    d.drop()  # PUBACK never sent
    d2 = client(dev, connect=False)
    code, present, _ = d2.connect(clean_start=False, properties=expiry(300))
    assert (code, present) == (0, 1)
    again = d2.get_topic(topic)
    assert (again.payload, again.dup, again.qos) == (b"important", 1, 1)


def test_unacknowledged_qos2_redelivered(client, device):
    dev = device()
    topic = "c/%s/cmd" % dev.id
    d = client(dev, protocol=mk.V311, clean_session=False)
    assert d.subscribe(topic, 2) == [2]
    d.c.t_hold_pubrec = True  # receive the PUBLISH but never answer PUBREC
    client(listener="open").publish(topic, b"exactly-once", qos=2)
    d.wait_paho(lambda c: c.t_held_pubrecs, what="incoming QoS 2 PUBLISH")
    d.drop()
    d2 = client(dev, protocol=mk.V311, clean_session=False, connect=False)
    code, present, _ = d2.connect()
    assert (code, present) == (0, 1)
    m = d2.get_topic(topic)
    assert (m.payload, m.qos, m.dup) == (b"exactly-once", 2, 1)
    # and only once
    client(listener="open").publish(topic, b"next", qos=2)
    assert d2.get_topic(topic).payload == b"next"
    assert d2.drain() == []


def test_offline_queue_order(client, device):
    dev = device()
    topic = "c/%s/q" % dev.id
    d = client(dev, connect=False)
    d.connect(properties=expiry(300))
    assert d.subscribe(topic, 1) == [1]
    d.disconnect()
    svc = client(listener="open")
    for i in range(100):
        svc.publish(topic, b"%d" % i, qos=1)
    d2 = client(dev, connect=False)
    assert d2.connect(clean_start=False, properties=expiry(300))[1] == 1
    got = d2.collect(100, timeout=15)
    assert [int(m.payload) for m in got] == list(range(100))


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_session_takeover(client, device, target, proto):
    dev = device()
    first = client(dev, protocol=proto)
    second = client(dev, protocol=proto)
    reason = first.wait_disconnect()
    if proto == mk.V5 and target == "moat":  # mosquitto 2.0.11 just closes
        assert reason == SESSION_TAKEN_OVER, "DISCONNECT reason %r, expected 0x8E" % (reason,)
    assert second.connected
    topic = "d/%s/after" % dev.id
    assert second.subscribe(topic, 1) == [1]
    second.publish(topic, b"ok", qos=1)
    assert second.get_topic(topic).payload == b"ok"


def test_takeover_keeps_persistent_session(client, device):
    dev = device()
    topic = "c/%s/cmd" % dev.id
    first = client(dev, connect=False)
    first.connect(properties=expiry(300))
    assert first.subscribe(topic, 1) == [1]
    second = client(dev, connect=False)
    code, present, _ = second.connect(clean_start=False, properties=expiry(300))
    assert (code, present) == (0, 1)
    first.wait_disconnect()
    client(listener="open").publish(topic, b"to-second", qos=1)
    assert second.get_topic(topic).payload == b"to-second"


def test_server_keep_alive_override(client, device, broker):
    dev = device()
    d = client(dev, connect=False)
    code, _, p = d.connect(keepalive=1000)
    assert code == 0
    assert getattr(p, "ServerKeepAlive", None) == broker.conf["max_keepalive"], p


def test_keepalive_within_limit_not_overridden(client, device):
    dev = device()
    d = client(dev, connect=False)
    code, _, p = d.connect(keepalive=60)
    assert getattr(p, "ServerKeepAlive", 60) == 60


def test_keepalive_enforced(client, device):
    dev = device()
    d = client(dev, connect=False)
    d.connect(keepalive=2)
    d.c._keepalive = 3600  # the client falls silent
    d.c._last_msg_out = d.c._last_msg_in = time.monotonic() + 3600
    reason = d.wait_disconnect(timeout=10)
    assert reason in (None, 0x8D), "DISCONNECT reason %#x, expected 0x8D or a close" % reason


def test_keepalive_pings_keep_connection(client, device):
    dev = device()
    d = client(dev, connect=False)
    d.connect(keepalive=1)
    # paho sends a PINGREQ every keepalive second: several round trips must succeed
    d.wait_paho(lambda c: c.t_pingresps >= 3 or not d.connected, timeout=15,
                what="3 PINGRESPs")
    assert d.connected, "disconnected although PINGREQs were sent"
    topic = "d/%s/x" % dev.id
    d.subscribe(topic, 0)
    d.publish(topic, b"alive", qos=1)
    assert d.get_topic(topic).payload == b"alive"


def test_unsubscribe_stops_delivery(client, device):
    dev = device()
    d = client(dev)
    assert d.subscribe([("c/%s/a" % dev.id, 1), ("c/%s/b" % dev.id, 1)]) == [1, 1]
    codes = d.unsubscribe("c/%s/a" % dev.id)
    assert codes in ([0], [0x00])
    svc = client(listener="open")
    svc.publish("c/%s/a" % dev.id, b"no", qos=1)
    svc.publish("c/%s/b" % dev.id, b"yes", qos=1)
    m = d.get()
    assert (m.topic, m.payload) == ("c/%s/b" % dev.id, b"yes")


def test_unsubscribe_unknown_filter_v5(client, device):
    dev = device()
    d = client(dev)
    assert d.unsubscribe("c/%s/never" % dev.id) == [0x11]  # No subscription existed
