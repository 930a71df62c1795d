"""MQTT 5 features: CONNACK capabilities, topic aliases, receive maximum,
maximum packet size, message expiry, subscription identifiers, no-local,
retain-as-published, retain handling, shared subscriptions,
request/response, user properties, content type, payload format."""

import time

import pytest

import mqttkit as mk
from mqttkit import PacketTypes, SubscribeOptions, props

RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
PROTOCOL_ERROR = 0x82


def pubprops(**kw):
    return props(PacketTypes.PUBLISH, **kw)


def conprops(**kw):
    return props(PacketTypes.CONNECT, **kw)


def sentinel(w, pub, topic, qos=1):
    """Publish a sentinel, wait for it, return what arrived before it."""
    pub.publish(topic, b"--sentinel--", qos=qos)
    w.get(pred=lambda m: m.topic == topic and m.payload == b"--sentinel--", what="sentinel")
    return w.drain()


# ---------------------------------------------------------------- CONNACK

def test_connack_capabilities(client, device, broker, target):
    dev = device()
    c = client(dev, connect=False)
    code, _, p = c.connect()
    assert code == 0
    assert getattr(p, "TopicAliasMaximum", 0) > 0, "no Topic Alias Maximum in CONNACK: %s" % p
    assert getattr(p, "MaximumPacketSize", None) == broker.conf["max_packet_size"], p
    if target == "moat":
        assert getattr(p, "ReceiveMaximum", 65535) == broker.conf["receive_maximum"], p
    # features Moat supports must not be announced as unavailable
    for name in ("RetainAvailable", "WildcardSubscriptionAvailable",
                 "SubscriptionIdentifierAvailable", "SharedSubscriptionAvailable"):
        assert getattr(p, name, 1) == 1, "%s = 0 in CONNACK" % name
    assert getattr(p, "MaximumQoS", 2) == 2


def test_assigned_client_identifier_on_open_listener(client):
    c = client(listener="open", client_id="", connect=False)
    code, _, p = c.connect()
    assert code == 0
    assigned = getattr(p, "AssignedClientIdentifier", "")
    assert assigned, "empty client id accepted without an Assigned Client Identifier"


# ---------------------------------------------------------------- topic aliases

def test_topic_alias_client_to_server(client, device):
    dev = device()
    w = client(listener="open")
    assert w.subscribe("d/%s/#" % dev.id, 1) == [1]
    d = client(dev)
    t = "d/%s/aliased/topic" % dev.id
    assert d.publish(t, b"1", qos=1, properties=pubprops(TopicAlias=1)) == 0
    assert d.publish("", b"2", qos=1, properties=pubprops(TopicAlias=1)) == 0
    # re-map the alias to another topic
    t2 = "d/%s/other" % dev.id
    assert d.publish(t2, b"3", qos=1, properties=pubprops(TopicAlias=1)) == 0
    assert d.publish("", b"4", qos=0, properties=pubprops(TopicAlias=1)) is None
    got = w.collect(4)
    assert [(m.topic, m.payload) for m in got] == [(t, b"1"), (t, b"2"), (t2, b"3"), (t2, b"4")]


@pytest.mark.moat_only("the policy applies to the topic an alias stands for")
def test_topic_alias_cannot_bypass_policy(client, device):
    dev, other = device("a"), device("b")
    w = client(listener="open")
    assert w.subscribe("d/#", 1) == [1]
    d = client(dev)
    assert d.publish("d/%s/x" % other.id, b"no", qos=1, properties=pubprops(TopicAlias=2)) == 0x87
    # the alias now maps to the forbidden topic (-> 0x87) or was never set
    # (-> protocol error): either way nothing is delivered
    code = d.publish("", b"no", qos=1, properties=pubprops(TopicAlias=2))
    assert code in (0x87, "disconnected"), code
    probe = d if d.connected else client(dev)
    left = sentinel(w, probe, "d/%s/sentinel" % dev.id)
    assert not [m for m in left if m.payload == b"no"], left


def test_topic_alias_above_maximum_disconnects(client, device):
    dev = device()
    d = client(dev, connect=False)
    _, _, p = d.connect()
    tam = getattr(p, "TopicAliasMaximum", 0)
    d.publish("d/%s/x" % dev.id, b"x", qos=0, properties=pubprops(TopicAlias=tam + 1))
    assert d.wait_disconnect() == TOPIC_ALIAS_INVALID


def test_topic_alias_unknown_mapping_disconnects(client, device):
    """Zero-length topic with an alias never set: a protocol error. The spec
    names no single code for it (0x82 Protocol Error, or 0x94 Topic Alias
    invalid) - both accepted."""
    dev = device()
    d = client(dev)
    d.publish("", b"x", qos=0, properties=pubprops(TopicAlias=3))
    assert d.wait_disconnect() in (PROTOCOL_ERROR, TOPIC_ALIAS_INVALID)


def test_topic_alias_zero_disconnects(broker):
    """Topic Alias 0 is not permitted (MQTT-3.3.2-8); the code the receiver
    uses is not pinned down by the spec (0x94 Topic Alias invalid is the
    natural one; mosquitto says 0x81) - the connection must end."""
    c, _ = mk.raw_connect(mk.HOST, broker.open_port, "alias-zero")
    c.send(mk.publish_pkt("a/b", b"x", props_raw=b"\x23\x00\x00"))
    got = c.wait_closed()
    assert all(p.type == mk.DISCONNECT for p in got), got
    if got:
        assert got[-1].reason() in (0x81, PROTOCOL_ERROR, TOPIC_ALIAS_INVALID), got
    c.close()


def test_empty_topic_without_alias_is_protocol_error(broker):
    c, _ = mk.raw_connect(mk.HOST, broker.open_port, "empty-topic")
    c.send(mk.publish_pkt("", b"x"))
    got = c.wait_closed()
    assert got and got[-1].type == mk.DISCONNECT and got[-1].reason() == PROTOCOL_ERROR, got
    c.close()


def test_no_server_topic_alias_when_client_allows_none(client, device):
    dev = device()
    s = client(listener="open")  # no Topic Alias Maximum in CONNECT => 0
    assert s.subscribe("d/%s/#" % dev.id, 0) == [0]
    d = client(dev)
    for i in range(6):
        d.publish("d/%s/same" % dev.id, b"%d" % i, qos=1)
    got = s.collect(6)
    assert all(m.prop("TopicAlias") is None and m.raw_topic for m in got), got


def test_server_topic_aliases_within_client_maximum(client, device):
    dev = device()
    s = client(listener="open", connect=False)
    s.connect(properties=conprops(TopicAliasMaximum=2))
    assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
    d = client(dev)
    topics = ["d/%s/t%d" % (dev.id, i) for i in range(3)]
    sent = []
    for rnd in range(3):
        for t in topics:
            d.publish(t, b"%s-%d" % (t.encode(), rnd), qos=1)
            sent.append((t, b"%s-%d" % (t.encode(), rnd)))
    got = s.collect(len(sent))
    for m in got:
        a = m.prop("TopicAlias")
        assert a is None or 1 <= a <= 2, "alias %r beyond the client's maximum 2" % a
    assert sorted((m.topic, m.payload) for m in got) == sorted(sent)


# ---------------------------------------------------------------- flow control

@pytest.mark.moat_only("mosquitto 2.0.11 answers PUBREC 0x97 instead of DISCONNECT 0x93 (MQTT 5 3.3.4)")
def test_receive_maximum_exceeded_disconnects(broker, target):
    """QoS 2 PUBLISHes left unreleased (no PUBREL) count against the server's
    Receive Maximum; one more is a protocol violation -> DISCONNECT 0x93."""
    c, ack = mk.raw_connect(mk.HOST, broker.open_port, "rm-violator")
    p = mk.parse_connack_props(ack)
    rm = getattr(p, "ReceiveMaximum", 65535)
    assert rm <= 1024, "server Receive Maximum %d too large to test" % rm
    # The first rm are accepted (each gets its PUBREC, possibly only once it
    # is stored, so wait for them); none is released with PUBREL.
    for pid in range(1, rm + 1):
        c.send(mk.publish_pkt("rm/test", b"x", qos=2, pid=pid))
    for pid in range(1, rm + 1):
        c.expect(mk.PUBREC)
    c.send(mk.publish_pkt("rm/test", b"x", qos=2, pid=rm + 1))
    got = c.wait_closed(timeout=10)
    assert not [x for x in got if x.type == mk.PUBREC], "PUBREC beyond Receive Maximum: %r" % got
    assert got and got[-1].type == mk.DISCONNECT, "no DISCONNECT before close: %r" % got[-3:]
    assert got[-1].reason() == RECEIVE_MAXIMUM_EXCEEDED, "DISCONNECT %#x" % got[-1].reason()
    c.close()


def test_receive_maximum_within_limit_ok(broker):
    c, ack = mk.raw_connect(mk.HOST, broker.open_port, "rm-ok")
    rm = getattr(mk.parse_connack_props(ack), "ReceiveMaximum", 65535)
    n = min(rm, 64)
    for pid in range(1, n + 1):
        c.send(mk.publish_pkt("rm/ok", b"x", qos=2, pid=pid))
    for pid in range(1, n + 1):
        c.expect(mk.PUBREC)
    for pid in range(1, n + 1):
        c.send(mk.packet(mk.PUBREL, 2, bytes([pid >> 8, pid & 255])))
    for pid in range(1, n + 1):
        c.expect(mk.PUBCOMP)
    # the window is free again
    for pid in range(1, n + 1):
        c.send(mk.publish_pkt("rm/ok", b"y", qos=2, pid=pid))
    for pid in range(1, n + 1):
        c.expect(mk.PUBREC)
    c.close()


def test_server_respects_client_receive_maximum(client, device):
    dev = device()
    d = client(dev, connect=False)
    d.connect(properties=conprops(ReceiveMaximum=2))
    assert d.subscribe("c/%s/#" % dev.id, 1) == [1]
    d.c.t_hold_puback = True
    svc = client(listener="open")
    for i in range(6):
        svc.publish("c/%s/m" % dev.id, b"%d" % i, qos=1)
    first = d.collect(2)
    assert [m.payload for m in first] == [b"0", b"1"]
    # no event can prove absence: give the broker a moment to (wrongly) send more
    time.sleep(1.0)
    assert d.pending() == [], "server sent more than the client's Receive Maximum (2) unacked"
    held = list(d.c.t_held_pubacks)
    d.c.t_hold_puback = False
    for mid in held:
        d.c._send_puback(mid)
    rest = d.collect(4)
    assert [m.payload for m in rest] == [b"2", b"3", b"4", b"5"]


def test_client_maximum_packet_size_respected(client, device):
    dev = device()
    s = client(listener="open", connect=False)
    s.connect(properties=conprops(MaximumPacketSize=512))
    topic = "d/%s/big" % dev.id
    assert s.subscribe(topic, 1) == [1]
    d = client(dev)
    d.publish(topic, b"B" * 2000, qos=1)
    d.publish(topic, b"small", qos=1)
    m = s.get_topic(topic)
    assert m.payload == b"small", "a packet above the client's Maximum Packet Size was sent"
    assert s.connected


def test_oversize_publish_disconnects_0x95(broker, device):
    """Declared remaining length above the server's Maximum Packet Size:
    DISCONNECT 0x95 before the body is even sent (raw mTLS, v5)."""
    dev = device()
    c, _ = mk.raw_connect(mk.HOST, broker.port, dev.id,
                          ssl_ctx=mk.client_ssl_context(dev.ca, dev.cert, dev.key))
    topic = ("d/%s/huge" % dev.id).encode()
    size = broker.conf["max_packet_size"] + 1
    head = bytes([0x30]) + mk.varint(size)
    c.send(head + mk.struct.pack("!H", len(topic)) + topic + b"\x00" + b"H" * 1000)
    got = c.wait_closed(timeout=10)
    assert got and got[-1].type == mk.DISCONNECT, "no DISCONNECT before close: %r" % got
    assert got[-1].reason() == PACKET_TOO_LARGE, "DISCONNECT %#x" % got[-1].reason()
    c.close()


# ---------------------------------------------------------------- expiry

def test_message_expiry_forwarded_live(client, device):
    dev = device()
    s = client(listener="open")
    assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
    client(dev).publish("d/%s/e" % dev.id, b"e", qos=1, properties=pubprops(MessageExpiryInterval=100))
    m = s.get_topic("d/%s/e" % dev.id)
    assert 0 < m.prop("MessageExpiryInterval", -1) <= 100


def test_message_expiry_never_exceeds_original(client, device):
    """The forwarded Message Expiry Interval is the received value minus the
    time waited: never more than the original, whichever workers the
    publisher and subscriber land on (fresh connections each round)."""
    dev = device()
    bad = []
    for i in range(80):
        s = client(listener="open")
        assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
        d = client(dev)
        d.publish("d/%s/e" % dev.id, b"%d" % i, qos=1, properties=pubprops(MessageExpiryInterval=100))
        v = s.get_topic("d/%s/e" % dev.id).prop("MessageExpiryInterval", -1)
        if not 0 < v <= 100:
            bad.append((i, v))
        s.close()
        d.close()
    assert not bad, "forwarded Message Expiry Interval outside 1..100 (round, value): %r" % bad


def test_message_expiry_queued(client, device):
    """An expired queued message is not delivered; the survivor carries the
    remaining expiry (received value minus the time it waited)."""
    dev = device()
    topic = "c/%s/cmd" % dev.id
    d = client(dev, connect=False)
    d.connect(properties=conprops(SessionExpiryInterval=300))
    assert d.subscribe(topic, 1) == [1]
    d.disconnect()
    svc = client(listener="open")
    svc.publish(topic, b"short", qos=1, properties=pubprops(MessageExpiryInterval=1))
    svc.publish(topic, b"long", qos=1, properties=pubprops(MessageExpiryInterval=60))
    time.sleep(2.2)  # the expiry interval is the behaviour under test
    d2 = client(dev, connect=False)
    assert d2.connect(clean_start=False, properties=conprops(SessionExpiryInterval=300))[1] == 1
    m = d2.get_topic(topic)
    assert m.payload == b"long", "expired message delivered: %r" % m
    assert 0 < m.prop("MessageExpiryInterval", -1) <= 59, \
        "remaining expiry %r not reduced by the time queued" % m.prop("MessageExpiryInterval")
    assert sentinel(d2, svc, topic) == []


def test_retained_message_expiry(client, device):
    dev = device()
    d = client(dev)
    d.publish("d/%s/gone" % dev.id, b"x", qos=1, retain=True, properties=pubprops(MessageExpiryInterval=1))
    d.publish("d/%s/kept" % dev.id, b"y", qos=1, retain=True, properties=pubprops(MessageExpiryInterval=300))
    time.sleep(2.2)
    s = client(listener="open")
    assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
    m = s.get()
    assert (m.topic, m.payload) == ("d/%s/kept" % dev.id, b"y")
    assert m.prop("MessageExpiryInterval", 0) <= 299
    assert sentinel(s, d, "d/%s/s" % dev.id) == []


# ---------------------------------------------------------------- subscriptions

def test_subscription_identifiers(client, device):
    dev = device()
    d = client(dev)
    assert d.subscribe("c/%s/a/#" % dev.id, 1,
                       properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42)) == [1]
    assert d.subscribe("c/%s/+/b" % dev.id, 1,
                       properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7)) == [1]
    assert d.subscribe("c/%s/plain" % dev.id, 1) == [1]
    svc = client(listener="open")
    svc.publish("c/%s/a/b" % dev.id, b"both", qos=1)
    svc.publish("c/%s/x/b" % dev.id, b"seven", qos=1)
    svc.publish("c/%s/plain" % dev.id, b"none", qos=1)
    left = sentinel(d, svc, "c/%s/a/s" % dev.id)
    both = [m for m in left if m.payload == b"both"]
    ids = set()
    for m in both:
        ids |= set(m.prop("SubscriptionIdentifier", []))
    assert ids == {42, 7}, "overlapping subscriptions: ids %r in %r" % (ids, both)
    seven = [m for m in left if m.payload == b"seven"]
    assert len(seven) == 1 and seven[0].prop("SubscriptionIdentifier") == [7]
    none = [m for m in left if m.payload == b"none"]
    assert len(none) == 1 and none[0].prop("SubscriptionIdentifier") is None


def test_no_local(client, device):
    dev = device()
    d = client(dev)
    topic = "d/%s/loop" % dev.id
    assert d.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True)) == [1]
    assert d.publish(topic, b"own", qos=1) == 0
    client(listener="open").publish(topic, b"foreign", qos=1)
    m = d.get()
    assert m.payload == b"foreign", "no-local subscription received its own message: %r" % m


def test_local_delivery_without_no_local(client, device):
    dev = device()
    d = client(dev)
    topic = "d/%s/loop" % dev.id
    assert d.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=False)) == [1]
    d.publish(topic, b"own", qos=1)
    assert d.get_topic(topic).payload == b"own"


@pytest.mark.parametrize("rap", [True, False])
def test_retain_as_published(client, device, rap):
    dev = device()
    s = client(listener="open")
    assert s.subscribe("d/%s/#" % dev.id, options=SubscribeOptions(qos=1, retainAsPublished=rap)) == [1]
    client(dev).publish("d/%s/r" % dev.id, b"r", qos=1, retain=True)
    m = s.get_topic("d/%s/r" % dev.id)
    assert m.retain == (1 if rap else 0)


def test_retain_handling(client, device):
    dev = device()
    d = client(dev)
    topic = "d/%s/rh" % dev.id
    d.publish(topic, b"kept", qos=1, retain=True)
    s_topic = "d/%s/s" % dev.id

    # 0: send retained at every subscribe
    s0 = client(listener="open")
    assert s0.subscribe(s_topic, 1) == [1]
    for _ in range(2):
        assert s0.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=0)) == [1]
        m = s0.get_topic(topic)
        assert m.retain and m.payload == b"kept"

    # 1: only when the subscription is new
    s1 = client(listener="open")
    assert s1.subscribe(s_topic, 1) == [1]
    assert s1.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1)) == [1]
    assert s1.get_topic(topic).payload == b"kept"
    assert s1.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=1)) == [1]
    left = sentinel(s1, d, s_topic)
    assert left == [], "retain handling 1 re-sent retained on an existing subscription: %r" % left

    # 2: never
    s2 = client(listener="open")
    assert s2.subscribe(s_topic, 1) == [1]
    assert s2.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2)) == [1]
    left = sentinel(s2, d, s_topic)
    assert left == [], "retain handling 2 sent retained: %r" % left
    # live messages still flow
    d.publish(topic, b"live", qos=1)
    assert s2.get_topic(topic).payload == b"live"


def test_shared_subscription_each_message_to_one_member(client, device):
    dev = device()
    topic = "d/%s/work" % dev.id
    members = [client(listener="open") for _ in range(3)]
    for m in members:
        assert m.subscribe("$share/grp/" + topic, 1) == [1]
    normal = client(listener="open")
    assert normal.subscribe(topic, 1) == [1]
    other_group = client(listener="open")
    assert other_group.subscribe("$share/other/" + topic, 1) == [1]
    d = client(dev)
    n = 30
    for i in range(n):
        d.publish(topic, b"%d" % i, qos=1)
    assert sorted(int(m.payload) for m in normal.collect(n)) == list(range(n))
    assert sorted(int(m.payload) for m in other_group.collect(n)) == list(range(n))

    def shared_total():
        return sum(len(m.pending()) for m in members)
    mk.wait_until(lambda: shared_total() >= n, what="%d messages across the group" % n)
    d.publish(topic, b"last", qos=1)
    mk.wait_until(lambda: any(x.payload == b"last" for mem in members for x in mem.pending()),
                  what="last message in the group")
    got = [x.payload for mem in members for x in mem.drain()]
    assert sorted(got) == sorted([b"%d" % i for i in range(n)] + [b"last"]), \
        "shared group: duplicates or losses: %d messages" % len(got)


def test_shared_subscription_member_leaves(client, device):
    dev = device()
    topic = "d/%s/jobs" % dev.id
    a, b = client(listener="open"), client(listener="open")
    assert a.subscribe("$share/g/" + topic, 1) == [1]
    assert b.subscribe("$share/g/" + topic, 1) == [1]
    b.disconnect()
    d = client(dev)
    for i in range(5):
        d.publish(topic, b"%d" % i, qos=1)
    assert sorted(int(m.payload) for m in a.collect(5)) == list(range(5))


@pytest.mark.moat_only("mosquitto 2.0.11 accepts it (MQTT 5 3.8.3.1: protocol error)")
def test_no_local_on_shared_subscription_is_protocol_error(client):
    c = client(listener="open")
    c.c.subscribe("$share/g/x/y", options=SubscribeOptions(qos=1, noLocal=True))
    assert c.wait_disconnect() == PROTOCOL_ERROR


# ---------------------------------------------------------------- properties

def test_request_response(client, device):
    dev = device()
    req_topic, resp_topic = "d/%s/req" % dev.id, "c/%s/resp" % dev.id
    d = client(dev)
    assert d.subscribe(resp_topic, 1) == [1]
    svc = client(listener="open")
    assert svc.subscribe(req_topic, 1) == [1]
    d.publish(req_topic, b"what time?", qos=1,
              properties=pubprops(ResponseTopic=resp_topic, CorrelationData=b"\x00corr-1\xff"))
    req = svc.get_topic(req_topic)
    assert req.prop("ResponseTopic") == resp_topic
    assert req.prop("CorrelationData") == b"\x00corr-1\xff"
    svc.publish(req.prop("ResponseTopic"), b"noon", qos=1,
                properties=pubprops(CorrelationData=req.prop("CorrelationData")))
    resp = d.get_topic(resp_topic)
    assert (resp.payload, resp.prop("CorrelationData")) == (b"noon", b"\x00corr-1\xff")


def test_user_properties_forwarded_in_order(client, device):
    dev = device()
    s = client(listener="open")
    assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
    up = [("a", "1"), ("b", "2"), ("a", "3"), ("z", ""), ("ünï", "çødé")]
    client(dev).publish("d/%s/up" % dev.id, b"u", qos=1, properties=pubprops(UserProperty=up))
    m = s.get_topic("d/%s/up" % dev.id)
    assert m.prop("UserProperty") == up


def test_content_type_and_payload_format_forwarded(client, device):
    dev = device()
    s = client(listener="open")
    assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
    client(dev).publish("d/%s/ct" % dev.id, "{\"t\": 1}".encode(), qos=1,
                        properties=pubprops(ContentType="application/json", PayloadFormatIndicator=1))
    m = s.get_topic("d/%s/ct" % dev.id)
    assert m.prop("ContentType") == "application/json"
    assert m.prop("PayloadFormatIndicator") == 1


def test_properties_forwarded_to_v311_subscriber_stripped(client, device):
    """A v3.1.1 subscriber gets the payload of a v5 message with properties."""
    dev = device()
    s = client(listener="open", protocol=mk.V311)
    assert s.subscribe("d/%s/#" % dev.id, 1) == [1]
    client(dev).publish("d/%s/mix" % dev.id, b"p", qos=1,
                        properties=pubprops(UserProperty=[("k", "v")], MessageExpiryInterval=50))
    m = s.get_topic("d/%s/mix" % dev.id)
    assert m.payload == b"p"


def test_unsubscribe_reason_codes(client, device):
    dev = device()
    d = client(dev)
    assert d.subscribe("c/%s/x" % dev.id, 1) == [1]
    assert d.unsubscribe("c/%s/x" % dev.id) == [0x00]
    assert d.unsubscribe("c/%s/x" % dev.id) == [0x11]
