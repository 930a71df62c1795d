"""Default policy on the mTLS listener (device X: publish d/X/..., subscribe
c/X/... and d/X/...), the open policy on the plaintext loopback listener,
and $SYS."""

import pytest

import mqttkit as mk

NOT_AUTHORIZED = 0x87


def watcher(client, topic_filter="#"):
    w = client(listener="open")
    assert w.subscribe(topic_filter, 2) == [2]
    return w


def assert_not_before_sentinel(w, sentinel_topic, forbidden):
    """Wait for the sentinel; nothing matching forbidden(m) may have arrived."""
    m = w.get_topic(sentinel_topic)
    assert m is not None
    leaked = [x for x in w.drain() if forbidden(x)]
    assert not leaked, "messages leaked past the policy: %r" % leaked


# ---------------------------------------------------------------- publish

@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_own_namespace_allowed(client, device, qos):
    dev = device()
    w = watcher(client, "d/%s/#" % dev.id)
    d = client(dev)
    rc = d.publish("d/%s/a/b" % dev.id, b"ok", qos=qos)
    assert rc in (None, 0)
    assert w.get_topic("d/%s/a/b" % dev.id).payload == b"ok"


@pytest.mark.parametrize("qos,kind", [(1, "PUBACK"), (2, "PUBREC")])
def test_publish_foreign_topic_denied_v5(client, device, qos, kind):
    dev, other = device("a"), device("b")
    w = watcher(client)
    d = client(dev)
    for topic in ("d/%s/x" % other.id, "c/%s/x" % dev.id, "c/%s/x" % other.id,
                  "telemetry/%s" % dev.id, "d/%sx/y" % dev.id, "$moat/x"):
        rc = d.publish(topic, b"forbidden", qos=qos)
        assert rc == NOT_AUTHORIZED, "%s reason for %r: %#x, expected 0x87" % (kind, topic, rc)
    assert d.connected, "v5 client should stay connected after a denied publish"
    d.publish("d/%s/sentinel" % dev.id, b"s", qos=qos)
    assert_not_before_sentinel(w, "d/%s/sentinel" % dev.id, lambda m: m.payload == b"forbidden")


def test_publish_denied_qos0_v5_not_delivered(client, device):
    dev, other = device("a"), device("b")
    w = watcher(client)
    d = client(dev)
    d.publish("d/%s/x" % other.id, b"forbidden", qos=0)
    d.publish("d/%s/sentinel" % dev.id, b"s", qos=0)
    assert_not_before_sentinel(w, "d/%s/sentinel" % dev.id, lambda m: m.payload == b"forbidden")


def test_publish_denied_qos0_v311_silently_dropped(client, device):
    dev, other = device("a"), device("b")
    w = watcher(client)
    d = client(dev, protocol=mk.V311)
    d.publish("d/%s/x" % other.id, b"forbidden", qos=0)
    d.publish("d/%s/sentinel" % dev.id, b"s", qos=1)  # proves the connection is still up
    assert d.connected
    assert_not_before_sentinel(w, "d/%s/sentinel" % dev.id, lambda m: m.payload == b"forbidden")


@pytest.mark.moat_only("v3 QoS>0 denied publish disconnects (mosquitto acks and drops)")
@pytest.mark.parametrize("qos", [1, 2])
def test_publish_denied_qos12_v311_disconnects(client, device, qos):
    dev, other = device("a"), device("b")
    w = watcher(client)
    d = client(dev, protocol=mk.V311)
    d.publish("d/%s/x" % other.id, b"forbidden", qos=qos, wait=False)
    d.wait_disconnect()
    # the message never reaches anyone: a sentinel from a fresh connection
    d2 = client(dev, protocol=mk.V311)
    d2.publish("d/%s/sentinel" % dev.id, b"s", qos=1)
    assert_not_before_sentinel(w, "d/%s/sentinel" % dev.id, lambda m: m.payload == b"forbidden")


# ---------------------------------------------------------------- subscribe

def allowed_filters(i):
    return ["c/%s/+" % i, "c/%s/#" % i, "d/%s/#" % i, "d/%s/status" % i, "c/%s/a/+/b" % i]


def denied_filters(i, j):
    return ["c/%s/#" % j, "d/%s/#" % j, "#", "+/%s/#" % i, "c/#", "d/+/x", "c/+/#",
            "$SYS/#", "$SYS/broker/uptime", "x/y", "$moat/#"]


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_subscribe_allowed_filters(client, device, proto):
    dev = device()
    d = client(dev, protocol=proto)
    for f in allowed_filters(dev.id):
        assert d.subscribe(f, 1) == [1], f


@pytest.mark.moat_only("mosquitto's ACL file grants SUBSCRIBE and filters at delivery")
@pytest.mark.parametrize("proto,code", [(mk.V5, 0x87), (mk.V311, 0x80)], ids=["v5", "v311"])
def test_subscribe_denied_filters(client, device, proto, code):
    dev, other = device("a"), device("b")
    d = client(dev, protocol=proto)
    for f in denied_filters(dev.id, other.id):
        assert d.subscribe(f, 1) == [code], "SUBACK for %r" % f
    assert d.connected


@pytest.mark.moat_only("mosquitto's ACL file grants SUBSCRIBE and filters at delivery")
@pytest.mark.parametrize("proto,code", [(mk.V5, 0x87), (mk.V311, 0x80)], ids=["v5", "v311"])
def test_subscribe_mixed_request_per_filter_codes(client, device, proto, code):
    dev, other = device("a"), device("b")
    d = client(dev, protocol=proto)
    codes = d.subscribe([("c/%s/+" % dev.id, 2), ("c/%s/+" % other.id, 1), ("d/%s/#" % dev.id, 0)])
    assert codes == [2, code, 0]


def test_denied_subscription_receives_nothing(client, device, target):
    dev, other = device("a"), device("b")
    d = client(dev)
    codes = d.subscribe("c/%s/#" % other.id, 1)
    if target == "moat":
        assert codes == [NOT_AUTHORIZED]
    assert d.subscribe("c/%s/#" % dev.id, 1) == [1]
    svc = client(listener="open")
    svc.publish("c/%s/secret" % other.id, b"not for you", qos=1)
    svc.publish("c/%s/sentinel" % dev.id, b"s", qos=1)
    # same publisher, in order: the sentinel arrives after anything leaked
    m = d.get()
    assert (m.topic, m.payload) == ("c/%s/sentinel" % dev.id, b"s"), "leaked: %r" % m


def test_device_receives_commands(client, device):
    dev = device()
    d = client(dev)
    assert d.subscribe("c/%s/+" % dev.id, 1) == [1]
    client(listener="open").publish("c/%s/reboot" % dev.id, b"now", qos=1)
    m = d.get_topic("c/%s/reboot" % dev.id)
    assert m.payload == b"now"


def test_device_can_read_own_telemetry(client, device):
    dev = device()
    d = client(dev)
    assert d.subscribe("d/%s/#" % dev.id, 1) == [1]
    d.publish("d/%s/echo" % dev.id, b"e", qos=1)
    assert d.get_topic("d/%s/echo" % dev.id).payload == b"e"


@pytest.mark.moat_only("shared subscription filters are checked after the $share/g/ prefix")
def test_shared_subscription_policy(client, device):
    dev, other = device("a"), device("b")
    d = client(dev)
    assert d.subscribe("$share/g/d/%s/#" % dev.id, 1) == [1]
    assert d.subscribe("$share/g/d/%s/#" % other.id, 1) == [NOT_AUTHORIZED]
    assert d.subscribe("$share/g/#", 1) == [NOT_AUTHORIZED]


def test_will_on_foreign_topic_never_delivered(client, device):
    """A device cannot use its will to publish outside its namespace: either
    the CONNECT is refused or the will is dropped."""
    dev, other = device("a"), device("b")
    w = watcher(client)
    d = client(dev, connect=False)
    d.will_set("d/%s/will" % other.id, b"forged will", qos=1)
    code, _, _ = d.connect(expect=None)
    if code == 0:
        d.drop()
    probe = client(dev)
    probe.publish("d/%s/sentinel" % dev.id, b"s", qos=1)
    w.get_topic("d/%s/sentinel" % dev.id)
    leaked = [m for m in w.drain() if m.payload == b"forged will"]
    assert not leaked


# ---------------------------------------------------------------- open listener

def test_open_listener_anonymous_anything_goes(client):
    a = client(listener="open", client_id="")  # anonymous, server-assigned id
    b = client(listener="open", protocol=mk.V311)
    assert b.subscribe("#", 2) == [2]
    assert b.subscribe("any/+/thing", 1) == [1]
    a.publish("any/where/thing", b"x", qos=2)
    assert b.get(pred=lambda m: m.topic == "any/where/thing").payload == b"x"


SYS_TOPICS = ["$SYS/broker/clients/connected", "$SYS/broker/messages/received",
              "$SYS/broker/messages/sent", "$SYS/broker/bytes/received",
              "$SYS/broker/bytes/sent", "$SYS/broker/uptime"]


def test_sys_topics_on_open_listener(client):
    s = client(listener="open")
    assert s.subscribe("$SYS/broker/#", 0) == [0]
    seen = {}
    for t in SYS_TOPICS:
        m = s.get_topic(t, timeout=15)  # retained on subscribe (or within the 10 s period)
        seen[t] = m.payload.decode()
    # values are numeric (uptime may carry a unit, as mosquitto's "N seconds")
    for t, v in seen.items():
        assert v.split()[0].isdigit(), "%s = %r" % (t, v)
    # while we are connected, the count reaches at least 1 (at the latest at
    # the next periodic publication)
    if int(seen["$SYS/broker/clients/connected"]) < 1:
        m = s.get(timeout=15, pred=lambda m: m.topic == "$SYS/broker/clients/connected"
                  and int(m.payload) >= 1, what="clients/connected >= 1")


@pytest.mark.moat_only("$SYS values are sent as retained on subscribe")
def test_sys_topics_retained_on_subscribe(client):
    s = client(listener="open")
    assert s.subscribe("$SYS/broker/uptime", 0) == [0]
    m = s.get_topic("$SYS/broker/uptime", timeout=3)
    assert m.retain


def test_sys_not_matched_by_leading_wildcards(client):
    s = client(listener="open")
    assert s.subscribe([("#", 0), ("+/broker/#", 0), ("+/broker/uptime", 0)]) == [0, 0, 0]
    # make sure $SYS exists (retained) before the sentinel
    probe = client(listener="open")
    assert probe.subscribe("$SYS/broker/uptime", 0) == [0]
    probe.get_topic("$SYS/broker/uptime", timeout=15)
    pub = client(listener="open")
    pub.publish("sentinel/%s" % pub.client_id, b"s", qos=1)
    s.get_topic("sentinel/%s" % pub.client_id)
    s.publish("sentinel/%s" % pub.client_id, b"s2", qos=1)  # own round trip: everything flushed
    s.get(pred=lambda m: m.payload == b"s2")
    leaked = [m for m in s.drain() if m.topic.startswith("$")]
    assert not leaked, "leading wildcard matched $ topics: %r" % leaked[:3]


@pytest.mark.moat_only("mosquitto's ACL file grants SUBSCRIBE and filters at delivery")
def test_device_cannot_subscribe_sys_v311(client, device):
    dev = device()
    d = client(dev, protocol=mk.V311)
    assert d.subscribe("$SYS/#", 0) == [0x80]
    assert d.subscribe("$SYS/broker/clients/connected", 0) == [0x80]


def test_sys_periodic_update(client):
    """$SYS values are republished periodically (every 10 s) and reflect
    traffic: uptime advances, messages/received counts what we sent."""
    s = client(listener="open")
    assert s.subscribe("$SYS/broker/#", 0) == [0]
    u0 = int(s.get_topic("$SYS/broker/uptime", timeout=15).payload.split()[0])
    r0 = int(s.get_topic("$SYS/broker/messages/received", timeout=15).payload.split()[0])
    for i in range(10):
        s.publish("sys/traffic", b"%d" % i, qos=1)
    m = s.get(timeout=15, pred=lambda m: m.topic == "$SYS/broker/uptime"
              and int(m.payload.split()[0]) > u0, what="a later uptime value")
    assert not m.retain, "periodic $SYS update delivered live should not carry RETAIN"
    s.get(timeout=15, pred=lambda m: m.topic == "$SYS/broker/messages/received"
               and int(m.payload.split()[0]) >= r0 + 10, what="messages/received +10")
