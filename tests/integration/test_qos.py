"""QoS 0/1/2 end to end, in both directions (device -> service, service ->
device), MQTT 5 and 3.1.1."""

import pytest

import mqttkit as mk


@pytest.mark.parametrize("pub_qos", [0, 1, 2])
@pytest.mark.parametrize("sub_qos", [0, 1, 2])
def test_device_to_service_qos_matrix_v5(client, device, pub_qos, sub_qos):
    dev = device()
    svc = client(listener="open")
    topic = "d/%s/telemetry" % dev.id
    assert svc.subscribe(topic, sub_qos) == [sub_qos]
    pub = client(dev)
    payload = bytes(range(256)) * 4  # binary, with NULs
    rc = pub.publish(topic, payload, qos=pub_qos)
    if pub_qos:
        assert rc == 0, "PUBACK/PUBREC reason %#x for an allowed publish" % rc
    m = svc.get_topic(topic)
    assert m.payload == payload
    assert m.qos == min(pub_qos, sub_qos)
    assert not m.retain


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_service_to_device_v311(client, device, qos):
    dev = device()
    d = client(dev, protocol=mk.V311)
    topic = "c/%s/cmd" % dev.id
    assert d.subscribe(topic, 2) == [2]
    svc = client(listener="open", protocol=mk.V311)
    svc.publish(topic, b"reboot", qos=qos)
    m = d.get_topic(topic)
    assert (m.payload, m.qos) == (b"reboot", qos)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_device_to_service_v311(client, device, qos):
    dev = device()
    svc = client(listener="open", protocol=mk.V311)
    topic = "d/%s/t" % dev.id
    assert svc.subscribe(topic, 2) == [2]
    d = client(dev, protocol=mk.V311)
    d.publish(topic, b"x" * 100, qos=qos)
    m = svc.get_topic(topic)
    assert (m.payload, m.qos) == (b"x" * 100, qos)


@pytest.mark.parametrize("qos", [1, 2])
def test_order_preserved_and_exactly_once(client, device, qos):
    """Many messages from one publisher on one topic arrive in order; QoS 2
    never duplicates, QoS 1 is never lost."""
    dev = device()
    svc = client(listener="open")
    topic = "d/%s/seq" % dev.id
    assert svc.subscribe(topic, qos) == [qos]
    d = client(dev)
    n = 200
    infos = [d.publish(topic, b"%d" % i, qos=qos, wait=False) for i in range(n)]
    for i in infos:
        i.wait_for_publish(10)
        assert i.is_published(), "publish mid %d not acknowledged (connected=%s)" % (i.mid, d.connected)
    got = svc.collect(n, timeout=15)
    assert [int(m.payload) for m in got] == list(range(n))
    if qos == 2:
        # a QoS 2 duplicate would sit behind the last one: flush with a sentinel
        d.publish(topic, b"end", qos=qos)
        assert svc.get_topic(topic).payload == b"end"
        assert svc.drain() == []


def test_mixed_qos_subscribers_each_get_their_qos(client, device):
    dev = device()
    topic = "d/%s/fan" % dev.id
    subs = []
    for q in (0, 1, 2):
        s = client(listener="open")
        assert s.subscribe(topic, q) == [q]
        subs.append(s)
    client(dev).publish(topic, b"fan-out", qos=2)
    for q, s in enumerate(subs):
        m = s.get_topic(topic)
        assert (m.payload, m.qos) == (b"fan-out", q)


def test_large_payload_below_max_packet_size(client, device):
    dev = device()
    svc = client(listener="open")
    topic = "d/%s/blob" % dev.id
    assert svc.subscribe(topic, 1) == [1]
    blob = bytes((i * 7) % 251 for i in range(200 * 1024))
    assert client(dev).publish(topic, blob, qos=1) == 0
    m = svc.get_topic(topic, timeout=10)
    assert m.payload == blob


def test_wildcard_subscriptions_match(client, device):
    dev = device()
    base = "d/%s" % dev.id
    s1 = client(listener="open")
    assert s1.subscribe(base + "/+/temp", 1) == [1]
    s2 = client(listener="open")
    assert s2.subscribe("d/+/room1/#", 1) == [1]
    s3 = client(listener="open")
    assert s3.subscribe(base + "/room1", 1) == [1]  # '#' parent level, not matched below
    d = client(dev)
    d.publish(base + "/room1/temp", b"21", qos=1)
    assert s1.get_topic(base + "/room1/temp").payload == b"21"
    assert s2.get_topic(base + "/room1/temp").payload == b"21"
    d.publish(base + "/room1", b"parent", qos=1)
    # s3 sees only its exact topic; the earlier deeper one must not be there
    m = s3.get(what="message on exact topic")
    assert (m.topic, m.payload) == (base + "/room1", b"parent")
    assert s3.drain() == []


def test_empty_payload_non_retained_is_delivered(client, device):
    dev = device()
    svc = client(listener="open")
    topic = "d/%s/empty" % dev.id
    assert svc.subscribe(topic, 1) == [1]
    client(dev).publish(topic, b"", qos=1)
    assert svc.get_topic(topic).payload == b""


def test_fan_in_many_devices_concurrently(client, device):
    """Many devices publish at once (across worker threads); a service
    receives every message, in order per device."""
    import threading
    devs = [device("n%d" % i) for i in range(16)]
    svc = client(listener="open")
    assert svc.subscribe("d/+/burst", 1) == [1]
    pubs = [client(d) for d in devs]
    n = 50
    errors = []

    def burst(c):
        try:
            infos = [c.publish("d/%s/burst" % c.client_id, b"%d" % i, qos=1, wait=False)
                     for i in range(n)]
            for i in infos:
                i.wait_for_publish(15)
                assert i.is_published()
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=burst, args=(c,)) for c in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    got = svc.collect(len(devs) * n, timeout=30)
    per = {}
    for m in got:
        per.setdefault(m.topic, []).append(int(m.payload))
    assert sorted(per) == sorted("d/%s/burst" % d.id for d in devs)
    for t, seq in per.items():
        assert seq == list(range(n)), "%s out of order or incomplete: %r" % (t, seq[:10])
