"""Hostile input over the plaintext open listener. After each case: the
connection is closed (optionally after a CONNACK/DISCONNECT with the right
reason code), the broker keeps running, and a fresh client still works."""

import random
import socket
import struct

import pytest

import mqttkit as mk

MALFORMED, PROTOCOL_ERROR, PACKET_TOO_LARGE, TOPIC_NAME_INVALID = 0x81, 0x82, 0x95, 0x90


def raw(broker):
    return mk.RawConn(mk.HOST, broker.open_port)


def connected(broker, version=5, cid="malformed"):
    c = raw(broker)
    c.send(mk.connect_pkt(cid, version=version))
    ack = c.expect(mk.CONNACK)
    assert ack.reason() == 0
    return c


def closed_with(c, allowed_disconnect=(), allowed_connack=(), timeout=mk.WAIT):
    """The peer closes; any packet before the close must be a DISCONNECT /
    CONNACK carrying one of the allowed reason codes."""
    got = c.wait_closed(timeout)
    for p in got:
        if p.type == mk.DISCONNECT:
            assert p.reason() in allowed_disconnect, "DISCONNECT %#x, allowed %s" % (
                p.reason(), [hex(x) for x in allowed_disconnect])
        elif p.type == mk.CONNACK:
            assert p.reason() in allowed_connack, "CONNACK %#x, allowed %s" % (
                p.reason(), [hex(x) for x in allowed_connack])
        else:
            raise AssertionError("unexpected packet before close: %r" % p)
    c.close()
    return got


# ------------------------------------------------------------- before CONNECT

@pytest.mark.parametrize("first", [b"\x00\x00", b"\xf0\x00", b"\xff\xff\xff\xff\xff\x7f", b"GET / HTTP/1.1\r\n\r\n"],
                         ids=["type0", "auth-first", "ff", "http"])
def test_bad_first_byte(broker, tcp_alive, first):
    c = raw(broker)
    c.send(first)
    closed_with(c, allowed_connack=(MALFORMED, PROTOCOL_ERROR))
    tcp_alive()


def test_bad_remaining_length(broker, tcp_alive):
    c = raw(broker)
    c.send(b"\x10\xff\xff\xff\xff\x7f")  # 5-byte variable byte integer
    closed_with(c, allowed_connack=(MALFORMED,))
    tcp_alive()


def test_bad_remaining_length_after_connect(broker, tcp_alive):
    c = connected(broker)
    c.send(b"\x30\x80\x80\x80\x80\x01")
    closed_with(c, allowed_disconnect=(MALFORMED, PACKET_TOO_LARGE))
    tcp_alive()


@pytest.mark.parametrize("pkt", [mk.packet(mk.PINGREQ, 0, b""),
                                 mk.subscribe_pkt(1, [("a/#", 0)]),
                                 mk.publish_pkt("a/b", b"x"),
                                 mk.packet(mk.DISCONNECT, 0, b"")],
                         ids=["pingreq", "subscribe", "publish", "disconnect"])
def test_packet_before_connect(broker, tcp_alive, pkt):
    c = raw(broker)
    c.send(pkt)
    got = closed_with(c, allowed_connack=(PROTOCOL_ERROR,), allowed_disconnect=(PROTOCOL_ERROR,))
    assert not any(p.type == mk.PINGRESP for p in got)
    tcp_alive()


@pytest.mark.parametrize("extra", [1024, 200000], ids=["just-above", "far-above"])
def test_oversize_connect_v5(broker, tcp_alive, target, extra):
    c = raw(broker)
    size = broker.conf["max_packet_size"] + extra
    body = mk.s16("MQTT") + bytes([5, 2]) + struct.pack("!H", 60) + b"\x00" + mk.s16("big")
    c.send(bytes([0x10]) + mk.varint(size) + body + b"\x00" * 100)
    got = closed_with(c, allowed_connack=(PACKET_TOO_LARGE,))
    if target == "moat":
        assert got and got[0].type == mk.CONNACK, "no CONNACK 0x95 before close"
    tcp_alive()


def test_oversize_connect_v311(broker, tcp_alive):
    """v3.1.1 has no 0x95 return code: close, or a CONNACK with a v3 code."""
    c = raw(broker)
    size = broker.conf["max_packet_size"] + 1024
    body = mk.s16("MQTT") + bytes([4, 2]) + struct.pack("!H", 60) + mk.s16("big")
    c.send(bytes([0x10]) + mk.varint(size) + body + b"\x00" * 100)
    closed_with(c, allowed_connack=(1, 2, 3, 4, 5))
    tcp_alive()


@pytest.mark.parametrize("proto_name,level", [(b"MQTX", 5), (b"MQIsdp", 5), (b"MQTT", 0)],
                         ids=["name", "v31-name-with-v5", "level0"])
def test_bad_protocol_name_or_level(broker, tcp_alive, proto_name, level):
    c = raw(broker)
    body = mk.s16(proto_name) + bytes([level, 2]) + struct.pack("!H", 60) + mk.s16("x")
    c.send(mk.packet(mk.CONNECT, 0, body))
    closed_with(c, allowed_connack=(0x84, 0x01, MALFORMED, PROTOCOL_ERROR))
    tcp_alive()


def test_unsupported_protocol_level(broker, tcp_alive):
    c = raw(broker)
    body = mk.s16("MQTT") + bytes([6, 2]) + struct.pack("!H", 60) + b"\x00" + mk.s16("x")
    c.send(mk.packet(mk.CONNECT, 0, body))
    closed_with(c, allowed_connack=(0x84, 0x01))
    tcp_alive()


def test_connect_reserved_flag(broker, tcp_alive):
    c = raw(broker)
    c.send(mk.connect_pkt("rsv", flags_extra=0x01))
    closed_with(c, allowed_connack=(MALFORMED, PROTOCOL_ERROR))
    tcp_alive()


def test_connect_invalid_utf8_client_id(broker, tcp_alive):
    c = raw(broker)
    body = mk.s16("MQTT") + bytes([5, 2]) + struct.pack("!H", 60) + b"\x00" + \
        struct.pack("!H", 3) + b"a\xff\xfe"
    c.send(mk.packet(mk.CONNECT, 0, body))
    closed_with(c, allowed_connack=(MALFORMED, 0x85))
    tcp_alive()


def test_truncated_connect_then_eof(broker, tcp_alive):
    c = raw(broker)
    c.send(b"\x10\x30" + mk.s16("MQTT"))  # declares 48 bytes, sends 6
    c.s.shutdown(socket.SHUT_WR)
    closed_with(c)
    tcp_alive()


# ------------------------------------------------------------- after CONNECT

@pytest.mark.parametrize("version", [5, 4], ids=["v5", "v311"])
def test_publish_qos3(broker, tcp_alive, version):
    c = connected(broker, version)
    body = mk.s16("a/b") + struct.pack("!H", 1) + (b"\x00" if version == 5 else b"") + b"x"
    c.send(bytes([0x36]) + mk.varint(len(body)) + body)
    closed_with(c, allowed_disconnect=(MALFORMED,))
    tcp_alive()


@pytest.mark.parametrize("version", [5, 4], ids=["v5", "v311"])
def test_second_connect(broker, tcp_alive, version):
    c = connected(broker, version)
    c.send(mk.connect_pkt("again", version=version))
    closed_with(c, allowed_disconnect=(PROTOCOL_ERROR,))
    tcp_alive()


def test_second_connect_v5_reason(broker, target):
    c = connected(broker, 5)
    c.send(mk.connect_pkt("again", version=5))
    got = closed_with(c, allowed_disconnect=(PROTOCOL_ERROR,))
    if target == "moat":
        assert got and got[0].type == mk.DISCONNECT, "no DISCONNECT 0x82 before close"


@pytest.mark.parametrize("topic_raw", [b"a/\xff\xfe", b"a/\xc0\xaf", b"a/\xed\xa0\x80", b"a\x00b"],
                         ids=["ff-fe", "overlong", "surrogate", "nul"])
@pytest.mark.parametrize("version", [5, 4], ids=["v5", "v311"])
def test_publish_invalid_utf8_topic(broker, tcp_alive, topic_raw, version):
    w = mk.TClient(mk.HOST, broker.open_port, "utf8-watch-%d" % version, name="watch")
    try:
        w.connect()
        assert w.subscribe("#", 0) == [0]
        c = connected(broker, version)
        c.send(mk.publish_pkt(None, b"bad", version=version, topic_raw=topic_raw))
        closed_with(c, allowed_disconnect=(MALFORMED, TOPIC_NAME_INVALID))
        # never routed
        w.publish("utf8/sentinel", b"s", qos=1)
        w.get(pred=lambda m: m.topic == "utf8/sentinel")
        assert not [m for m in w.drain() if m.payload == b"bad"]
    finally:
        w.close()
    tcp_alive()


@pytest.mark.parametrize("topic", ["a/+/b", "a/#", "#", "+"])
def test_publish_wildcard_topic(broker, tcp_alive, topic):
    c = connected(broker, 5)
    c.send(mk.publish_pkt(topic, b"x"))
    closed_with(c, allowed_disconnect=(MALFORMED, PROTOCOL_ERROR, TOPIC_NAME_INVALID))
    tcp_alive()


def test_oversize_publish_after_connect_v5(broker, tcp_alive):
    c = connected(broker, 5)
    size = broker.conf["max_packet_size"] + 1
    c.send(bytes([0x30]) + mk.varint(size) + mk.s16("big") + b"\x00" + b"x" * 512)
    got = closed_with(c, allowed_disconnect=(PACKET_TOO_LARGE,))
    assert got, "no DISCONNECT 0x95 before close"
    tcp_alive()


def test_oversize_publish_after_connect_v311(broker, tcp_alive):
    c = connected(broker, 4)
    size = broker.conf["max_packet_size"] + 1
    c.send(bytes([0x30]) + mk.varint(size) + mk.s16("big") + b"x" * 512)
    closed_with(c)
    tcp_alive()


@pytest.mark.parametrize("pkt", [
    mk.packet(mk.SUBSCRIBE, 0, struct.pack("!H", 1) + b"\x00" + mk.s16("a") + b"\x00"),  # flags 0
    mk.packet(mk.SUBSCRIBE, 2, struct.pack("!H", 1) + b"\x00"),                          # no filters
    mk.packet(mk.SUBSCRIBE, 2, struct.pack("!H", 0) + b"\x00" + mk.s16("a") + b"\x00"),  # packet id 0
    mk.packet(mk.SUBSCRIBE, 2, struct.pack("!H", 1) + b"\x00" + mk.s16("a") + b"\x03"),  # QoS 3
    mk.packet(mk.SUBSCRIBE, 2, struct.pack("!H", 1) + b"\x00" + mk.s16("a") + b"\xc0"),  # reserved bits
    mk.packet(mk.PUBLISH, 2, mk.s16("a") + struct.pack("!H", 0) + b"\x00"),              # QoS1 pid 0
    pytest.param(mk.packet(mk.PINGREQ, 1, b""),                                        # flags
                 marks=pytest.mark.moat_only("mosquitto 2.0.11 ignores reserved PINGREQ flags")),
    mk.packet(mk.PUBREL, 0, struct.pack("!H", 1)),                                     # PUBREL flags 0
    mk.packet(0, 0, b""),                                                              # reserved type
    mk.packet(mk.PUBLISH, 0, mk.s16("a") + b"\x05\x01\x01"),                           # props len > remaining
    mk.packet(mk.PUBLISH, 0, mk.s16("a") + b"\x02\x63\x00"),                           # unknown property id
    mk.packet(mk.PUBLISH, 0, mk.s16("a") + b"\x04\x01\x01\x01\x01"),                   # duplicate property
    mk.packet(mk.PUBLISH, 0, b"\x00"),                                                 # truncated topic
], ids=["sub-flags", "sub-empty", "sub-pid0", "sub-qos3", "sub-reserved",
        "pub-pid0", "ping-flags", "pubrel-flags", "type0", "props-overrun", "prop-unknown",
        "prop-dup", "pub-truncated"])
def test_malformed_packets_v5(broker, tcp_alive, pkt):
    c = connected(broker, 5)
    c.send(pkt)
    got = c.wait_closed()
    for p in got:
        assert p.type in (mk.DISCONNECT,), "unexpected %r" % p
        assert p.reason() in (MALFORMED, PROTOCOL_ERROR), "DISCONNECT %#x" % p.reason()
    c.close()
    tcp_alive()


@pytest.mark.parametrize("flt", [b"a/#/b", b"a/b#", b"a+/b", b"#/", b"", b"a/\xff"],
                         ids=["hash-middle", "hash-glued", "plus-glued", "hash-not-last", "empty", "utf8"])
def test_invalid_topic_filter(broker, tcp_alive, flt):
    """An invalid filter either ends the connection (malformed / protocol
    error) or is refused in the SUBACK (>= 0x80, e.g. 0x8F); it never
    becomes an active subscription."""
    c = connected(broker, 5, cid="badfilter")
    c.send(mk.packet(mk.SUBSCRIBE, 2, struct.pack("!H", 7) + b"\x00" +
                     struct.pack("!H", len(flt)) + flt + b"\x00"))
    p = c.recv_packet()
    if p is None or p.type == mk.DISCONNECT:
        if p is not None:
            assert p.reason() in (MALFORMED, PROTOCOL_ERROR, 0x8F), "DISCONNECT %#x" % p.reason()
            assert c.recv_packet() is None
    else:
        assert p.type == mk.SUBACK, p
        codes = p.body[3:]  # packet id (2) + empty properties (1)
        assert len(codes) == 1 and codes[0] >= 0x80, "invalid filter %r granted: %r" % (flt, p)
        # and nothing is delivered through it
        c.send(mk.publish_pkt("a/x/b", b"x", qos=1, pid=9))
        c.expect(mk.PUBACK)
        c.send(mk.packet(mk.PINGREQ, 0, b""))
        c.expect(mk.PINGRESP)
    c.close()
    tcp_alive()


def test_garbage_fuzz_broker_survives(broker, tcp_alive):
    rnd = random.Random(20240501)
    for i in range(40):
        c = raw(broker)
        try:
            if i % 2:
                c.send(mk.connect_pkt("fuzz-%d" % i))
                c.expect(mk.CONNACK)
            blob = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
            c.send(blob)
            c.s.shutdown(socket.SHUT_WR)
            try:
                c.wait_closed(timeout=mk.WAIT)
            except AssertionError:
                pass  # a blob can be a valid prefix waiting for more bytes; we closed our side
        except OSError:
            pass
        finally:
            c.close()
    tcp_alive()


def test_slow_client_without_connect_is_dropped(broker, tcp_alive, target):
    """A connection that never sends CONNECT is closed (moat: 10 s)."""
    if target != "moat":
        pytest.skip("mosquitto has no CONNECT timeout for idle sockets")
    c = raw(broker)
    c.wait_closed(timeout=20)
    c.close()
    tcp_alive()


def test_malformed_on_tls_listener(broker, device, tcp_alive):
    """The same decoder protects the mTLS listener: a device sending a QoS 3
    PUBLISH is disconnected, the broker survives."""
    dev = device()
    c, _ = mk.raw_connect(mk.HOST, broker.port, dev.id,
                          ssl_ctx=mk.client_ssl_context(dev.ca, dev.cert, dev.key))
    body = mk.s16("d/%s/x" % dev.id) + struct.pack("!H", 1) + b"\x00" + b"x"
    c.send(bytes([0x36]) + mk.varint(len(body)) + body)
    closed_with(c, allowed_disconnect=(MALFORMED,))
    tcp_alive()
