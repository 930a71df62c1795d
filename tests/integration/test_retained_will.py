"""Retained messages (set, replace, clear) and wills (abnormal disconnect,
DISCONNECT 0x00 / 0x04, will delay interval, cancellation by reconnect)."""

import time

import pytest

import mqttkit as mk
from mqttkit import PacketTypes, props


def sentinel_after(w, pub, topic):
    """Publish a non-retained sentinel through `pub` and wait for it on `w`;
    returns what arrived before it."""
    pub.publish(topic, b"--sentinel--", qos=1)
    w.get(pred=lambda m: m.topic == topic and m.payload == b"--sentinel--", what="sentinel")
    return w.drain()


# ---------------------------------------------------------------- retained

@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_retained_set_replace_clear(client, device, proto):
    dev = device()
    d = client(dev, protocol=proto)
    topic = "d/%s/state" % dev.id
    d.publish(topic, b"one", qos=1, retain=True)

    s1 = client(listener="open", protocol=proto)
    assert s1.subscribe(topic, 1) == [1]
    m = s1.get_topic(topic)
    assert (m.payload, m.retain) == (b"one", 1)

    d.publish(topic, b"two", qos=1, retain=True)
    live = s1.get_topic(topic)
    assert live.payload == b"two"
    assert not live.retain, "live delivery of a retained publish must not carry RETAIN (no RAP)"

    s2 = client(listener="open", protocol=proto)
    assert s2.subscribe([(topic, 1), ("d/%s/sentinel" % dev.id, 1)]) == [1, 1]
    m = s2.get_topic(topic)
    assert (m.payload, m.retain) == (b"two", 1), "replace failed: %r" % m
    assert sentinel_after(s2, d, "d/%s/sentinel" % dev.id) == []  # exactly one retained

    d.publish(topic, b"", qos=1, retain=True)  # clear
    s3 = client(listener="open", protocol=proto)
    assert s3.subscribe([(topic, 1), ("d/%s/sentinel" % dev.id, 1)]) == [1, 1]
    left = sentinel_after(s3, d, "d/%s/sentinel" % dev.id)
    assert left == [], "cleared retained message still delivered: %r" % left


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_retained_visible_to_next_subscriber(client, device, proto):
    """Once the publisher holds the PUBACK, a subscriber that arrives
    afterwards gets the retained message - whatever worker it lands on
    (fresh connections each round)."""
    dev = device()
    d = client(dev, protocol=proto)
    missing = []
    for i in range(25):
        topic = "d/%s/r%d" % (dev.id, i)
        d.publish(topic, b"v%d" % i, qos=1, retain=True)
        s = client(listener="open", protocol=proto)
        assert s.subscribe(topic, 1) == [1]
        try:
            m = s.get_topic(topic)
            assert (m.payload, m.retain) == (b"v%d" % i, 1)
        except AssertionError as e:
            missing.append((i, str(e)[:80]))
        s.close()
    assert not missing, "retained message not delivered after its PUBACK: %r" % missing


def test_retained_clear_is_forwarded_live(client, device):
    """An empty retained publish is still delivered to existing subscribers."""
    dev = device()
    d = client(dev)
    topic = "d/%s/state" % dev.id
    s = client(listener="open")
    assert s.subscribe(topic, 1) == [1]
    d.publish(topic, b"v", qos=1, retain=True)
    assert s.get_topic(topic).payload == b"v"
    d.publish(topic, b"", qos=1, retain=True)
    assert s.get_topic(topic).payload == b""


def test_retained_wildcard_many(client, device):
    dev = device()
    d = client(dev)
    topics = ["d/%s/r/%d" % (dev.id, i) for i in range(20)]
    for i, t in enumerate(topics):
        d.publish(t, b"%d" % i, qos=1, retain=True)
    s = client(listener="open")
    assert s.subscribe("d/%s/r/+" % dev.id, 1) == [1]
    got = s.collect(20)
    assert sorted(m.topic for m in got) == sorted(topics)
    assert all(m.retain for m in got)
    assert {m.topic: m.payload for m in got} == {t: b"%d" % i for i, t in enumerate(topics)}


@pytest.mark.parametrize("pub_qos,sub_qos", [(2, 1), (1, 2), (0, 2)])
def test_retained_qos_is_min(client, device, pub_qos, sub_qos):
    dev = device()
    topic = "d/%s/q" % dev.id
    client(dev).publish(topic, b"q", qos=pub_qos, retain=True)
    s = client(listener="open")
    # the retained message was stored before this subscription exists
    assert s.subscribe(topic, sub_qos) == [sub_qos]
    m = s.get_topic(topic)
    assert m.qos == min(pub_qos, sub_qos) and m.retain


def test_retained_survives_publisher_disconnect(client, device):
    dev = device()
    d = client(dev)
    topic = "d/%s/persist" % dev.id
    d.publish(topic, b"stay", qos=1, retain=True)
    d.disconnect()
    s = client(listener="open")
    s.subscribe(topic, 0)
    assert s.get_topic(topic).payload == b"stay"


# ---------------------------------------------------------------- wills

def will_client(client, dev, proto=mk.V5, delay=None, expiry=None, qos=1, retain=False,
                payload=b"gone"):
    c = client(dev, protocol=proto, connect=False)
    wp = None
    if proto == mk.V5 and delay is not None:
        wp = props(PacketTypes.WILLMESSAGE, WillDelayInterval=delay)
    c.will_set("d/%s/will" % dev.id, payload, qos=qos, retain=retain, properties=wp)
    cp = None
    if proto == mk.V5 and expiry is not None:
        cp = props(PacketTypes.CONNECT, SessionExpiryInterval=expiry)
    c.connect(properties=cp)
    return c


def watch_will(client, dev):
    w = client(listener="open")
    assert w.subscribe("d/%s/#" % dev.id, 1) == [1]
    return w


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_will_sent_on_abnormal_disconnect(client, device, proto):
    dev = device()
    w = watch_will(client, dev)
    c = will_client(client, dev, proto)
    c.drop()
    m = w.get_topic("d/%s/will" % dev.id)
    assert (m.payload, m.qos) == (b"gone", 1)


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_will_not_sent_on_normal_disconnect(client, device, proto):
    dev = device()
    w = watch_will(client, dev)
    c = will_client(client, dev, proto)
    c.disconnect()  # v5: reason 0x00
    # a new connection of the same identity publishes a sentinel; the broker
    # has necessarily processed the first session's end before accepting it
    c2 = client(dev, protocol=proto)
    left = sentinel_after(w, c2, "d/%s/after" % dev.id)
    assert not [m for m in left if m.topic.endswith("/will")], left


def test_will_sent_on_disconnect_with_will_message_0x04(client, device):
    dev = device()
    w = watch_will(client, dev)
    c = will_client(client, dev)
    c.disconnect(reasoncode=0x04)
    m = w.get_topic("d/%s/will" % dev.id)
    assert m.payload == b"gone"


def test_will_retained(client, device):
    dev = device()
    w = watch_will(client, dev)
    c = will_client(client, dev, retain=True, payload=b"offline")
    c.drop()
    w.get_topic("d/%s/will" % dev.id)
    late = client(listener="open")
    late.subscribe("d/%s/will" % dev.id, 1)
    m = late.get_topic("d/%s/will" % dev.id)
    assert (m.payload, m.retain) == (b"offline", 1)


def test_will_properties_forwarded(client, device):
    dev = device()
    w = watch_will(client, dev)
    c = client(dev, connect=False)
    wp = props(PacketTypes.WILLMESSAGE, ContentType="text/plain", ResponseTopic="d/%s/r" % dev.id,
               CorrelationData=b"\x01\x02", UserProperty=[("k", "v")])
    c.will_set("d/%s/will" % dev.id, b"w", qos=1, properties=wp)
    c.connect()
    c.drop()
    m = w.get_topic("d/%s/will" % dev.id)
    assert m.prop("ContentType") == "text/plain"
    assert m.prop("ResponseTopic") == "d/%s/r" % dev.id
    assert m.prop("CorrelationData") == b"\x01\x02"
    assert m.prop("UserProperty") == [("k", "v")]


def test_will_delay_interval_honoured(client, device):
    dev = device()
    w = watch_will(client, dev)
    delay = 2
    c = will_client(client, dev, delay=delay, expiry=60)
    t0 = time.monotonic()
    c.drop()
    m = w.get_topic("d/%s/will" % dev.id, timeout=delay + 10)
    elapsed = m.t - t0
    # semantic lower bound (not a performance threshold): not before the delay
    assert elapsed >= delay - 0.5, "will sent after %.2fs, before its %ds delay" % (elapsed, delay)


def test_will_delay_cancelled_by_reconnect(client, device):
    dev = device()
    w = watch_will(client, dev)
    c = will_client(client, dev, delay=30, expiry=60)
    c.drop()
    c2 = client(dev, connect=False)
    code, present, _ = c2.connect(clean_start=False,
                                  properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    assert code == 0
    left = sentinel_after(w, c2, "d/%s/after" % dev.id)
    assert not [m for m in left if m.topic.endswith("/will")], left
    c2.disconnect()
    # still nothing after the reconnect ended normally
    c3 = client(dev)
    left = sentinel_after(w, c3, "d/%s/after2" % dev.id)
    assert not [m for m in left if m.topic.endswith("/will")], left


def test_will_delay_longer_than_session_sent_at_session_end(client, device):
    """The will is published when the session ends, if that is earlier
    than the will delay (MQTT 5 3.1.3.2.2)."""
    dev = device()
    w = watch_will(client, dev)
    c = will_client(client, dev, delay=300, expiry=1)
    c.drop()
    m = w.get_topic("d/%s/will" % dev.id, timeout=12)
    assert m.payload == b"gone"


def test_will_on_keepalive_timeout(client, device):
    """A silent client is disconnected after 1.5 x keepalive, and its will sent."""
    dev = device()
    w = watch_will(client, dev)
    c = client(dev, connect=False)
    c.will_set("d/%s/will" % dev.id, b"timeout", qos=1)
    c.connect(keepalive=1)
    c.c._keepalive = 3600  # stop paho's PINGREQs: the client falls silent
    c.c._last_msg_out = c.c._last_msg_in = time.monotonic() + 3600
    m = w.get_topic("d/%s/will" % dev.id, timeout=10)
    assert m.payload == b"timeout"
    c.wait_disconnect(timeout=10)
