"""mTLS handshake and identity: the client certificate is the device's
identity, and the MQTT client id must equal it."""

import datetime
import socket
import ssl

import pytest

import mqttkit as mk

CLIENT_ID_INVALID = 0x85
V3_IDENTIFIER_REJECTED = 2


def assert_refused(client, cert, ca=None, **kw):
    """The connection must fail in TLS or be closed without a successful CONNACK."""
    c = client(cert, connect=False, **kw)
    code, _, detail = c.connect(expect=None)
    assert code != 0, "connection accepted (CONNACK 0) but should be refused"
    assert code in ("closed",), "expected a TLS failure / close, got %r %r" % (code, detail)
    return detail


def assert_works(client, cert, protocol=mk.V5, client_id=None):
    c = client(cert, protocol=protocol, client_id=client_id)
    topic = "d/%s/hello" % cert.id
    assert c.subscribe(topic, 1) == [1]
    c.publish(topic, b"hi", qos=1)
    assert c.get_topic(topic).payload == b"hi"
    return c


@pytest.mark.parametrize("proto", [mk.V5, mk.V311], ids=["v5", "v311"])
def test_valid_certificate_connects(client, device, proto):
    dev = device()
    c = client(dev, protocol=proto, connect=False)
    code, sp, _ = c.connect()
    assert (code, sp) == (0, 0)


def test_no_client_certificate_refused(client, broker, tcp_alive):
    c = mk.TClient(mk.HOST, broker.port, "nocert", mk.V5,
                   ca=broker.dir + "/ca.crt", name="nocert")
    try:
        code, _, _ = c.connect(expect=None)
        assert code == "closed", "connection without a client certificate got %r" % (code,)
    finally:
        c.close()
    tcp_alive()


def test_no_client_certificate_raw_tls(broker):
    """Same with a raw TLS socket: no CONNACK is ever sent."""
    ctx = mk.client_ssl_context(broker.dir + "/ca.crt")
    try:
        conn = mk.RawConn(mk.HOST, broker.port, ctx)
    except (ssl.SSLError, OSError):
        return  # refused in the handshake (TLS 1.2 or early alert)
    try:
        conn.send(mk.connect_pkt("nocert"))
    except (ssl.SSLError, OSError):
        return
    got = conn.wait_closed()
    assert all(p.type != mk.CONNACK or p.reason() != 0 for p in got), got
    conn.close()


def test_wrong_ca_refused(client, pki, tcp_alive):
    ca_crt, ca_key = pki.other_ca()
    rogue = pki.issue("rogue-device", ca_crt=ca_crt, ca_key=ca_key)
    assert_refused(client, rogue)
    tcp_alive()


def test_expired_certificate_refused(client, pki, tcp_alive):
    now = datetime.datetime.now(datetime.timezone.utc)
    old = pki.issue_with_validity("expired-dev", now - datetime.timedelta(days=30),
                                  now - datetime.timedelta(days=1))
    assert_refused(client, old)
    tcp_alive()


def test_not_yet_valid_certificate_refused(client, pki):
    now = datetime.datetime.now(datetime.timezone.utc)
    future = pki.issue_with_validity("future-dev", now + datetime.timedelta(days=1),
                                     now + datetime.timedelta(days=30))
    assert_refused(client, future)


def test_certificate_valid_window_accepted(client, pki):
    """Control for the two tests above: the same builder, valid now."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ok = pki.issue_with_validity("window-dev", now - datetime.timedelta(hours=1),
                                 now + datetime.timedelta(days=1))
    assert_works(client, ok)


def test_plaintext_mqtt_on_tls_port_closed(broker, tcp_alive):
    conn = mk.RawConn(mk.HOST, broker.port)
    conn.send(mk.connect_pkt("plain"))
    got = conn.wait_closed()
    assert not any(p.type == mk.CONNACK for p in got)
    conn.close()
    tcp_alive()


@pytest.mark.moat_only("client id must equal the certificate identity")
def test_client_id_mismatch_v5(client, device):
    dev, other = device("a"), device("b")
    c = client(dev, client_id=other.id, connect=False)
    code, _, _ = c.connect(expect=None)
    assert code == CLIENT_ID_INVALID, "CONNACK %r, expected 0x85" % (code,)
    c.wait_disconnect()


@pytest.mark.moat_only("client id must equal the certificate identity")
def test_client_id_mismatch_v311(client, device):
    dev = device()
    c = client(dev, client_id=dev.id + "x", protocol=mk.V311, connect=False)
    code, _, _ = c.connect(expect=None)
    assert code == V3_IDENTIFIER_REJECTED, "CONNACK %r, expected 2" % (code,)
    c.wait_disconnect()


@pytest.mark.moat_only("client id must equal the certificate identity")
def test_client_id_case_matters(client, pki, uid):
    did = uid("case")
    cert = pki.issue(did)
    c = client(cert, client_id=did.upper(), connect=False)
    code, _, _ = c.connect(expect=None)
    assert code == CLIENT_ID_INVALID


@pytest.mark.moat_only("empty client id becomes the identity")
def test_empty_client_id_v5_assigned_identity(client, device):
    dev = device()
    w = client(listener="open")
    assert w.subscribe("d/%s/#" % dev.id, 1) == [1]
    c = client(dev, client_id="", connect=False)
    code, _, p = c.connect()
    assert getattr(p, "AssignedClientIdentifier", None) == dev.id, p
    assert c.publish("d/%s/x" % dev.id, b"me", qos=1) == 0
    assert w.get_topic("d/%s/x" % dev.id).payload == b"me"


@pytest.mark.moat_only("empty client id becomes the identity")
def test_empty_client_id_v311_uses_identity(client, device):
    dev = device()
    w = client(listener="open")
    assert w.subscribe("d/%s/#" % dev.id, 1) == [1]
    c = client(dev, client_id="", protocol=mk.V311, connect=False)
    assert c.connect()[0] == 0
    c.publish("d/%s/x" % dev.id, b"me", qos=1)
    assert w.get_topic("d/%s/x" % dev.id).payload == b"me"
    # and taking over the identity's session proves the id is the identity
    c2 = client(dev, protocol=mk.V311)
    c.wait_disconnect()
    assert c2.connected


@pytest.mark.moat_only("identity from URI SAN moat:device:<id> over CN")
def test_uri_san_identity_wins_over_cn(client, pki, uid):
    san_id, cn_id = uid("san"), uid("cn")
    cert = pki.issue(san_id, cn=cn_id, uri=True)
    bad = client(cert, client_id=cn_id, connect=False)
    assert bad.connect(expect=None)[0] == CLIENT_ID_INVALID
    good = assert_works(client, cert, client_id=san_id)
    # policy follows the SAN identity too
    assert good.publish("d/%s/x" % cn_id, b"no", qos=1) == 0x87


def test_cn_identity_without_san(client, pki, uid):
    did = uid("cn")
    cert = pki.issue(did, uri=False)
    assert_works(client, cert)
    assert_works(client, cert, protocol=mk.V311)


@pytest.mark.moat_only("certificate identities must be valid device ids")
@pytest.mark.parametrize("cn", ["Upper-Case", "has space", "-leading-dash", ".dot", "a/b", "a+b",
                                "x" * 63 + "@", "tab\tid"])
def test_invalid_cn_identity_refused(client, pki, cn):
    cert = pki.issue(cn, cn=cn, uri=False)
    c = client(cert, client_id=cn, connect=False)
    code, _, _ = c.connect(expect=None)
    assert code != 0, "a certificate whose CN %r is not a valid device id was accepted" % cn


@pytest.mark.moat_only("certificate identities must be valid device ids")
@pytest.mark.parametrize("san_id", ["Bad_ID", "x" * 65, "a/b", "_x", ""])
def test_invalid_uri_san_identity_refused(client, pki, san_id):
    """A moat:device: URI SAN that is not a valid device id is not an
    identity; the CN is not used as a fallback for it either."""
    cert = pki.issue(san_id, cn="good-cn", uri=True)
    for cid in (san_id, "good-cn"):
        c = client(cert, client_id=cid, connect=False)
        code, _, _ = c.connect(expect=None)
        assert code != 0, "URI SAN moat:device:%s accepted with client id %r" % (san_id, cid)


def test_device_id_edge_lengths(client, pki):
    for did in ("a", "0" + "z" * 63, "a.b_c-d"):
        cert = pki.issue(did)
        assert_works(client, cert)


def _tls12_ctx(broker, cert, ciphers):
    ctx = mk.client_ssl_context(broker.dir + "/ca.crt", cert.cert, cert.key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


def test_tls12_ecdhe_aead_accepted(broker, device):
    dev = device()
    conn, ack = mk.raw_connect(mk.HOST, broker.port, dev.id,
                               ssl_ctx=_tls12_ctx(broker, dev, "ECDHE+AESGCM:ECDHE+CHACHA20"))
    assert conn.s.version() == "TLSv1.2"
    conn.close()


@pytest.mark.moat_only("TLS 1.2 only with ECDHE+AEAD")
def test_tls12_cbc_refused(broker, device):
    dev = device()
    ctx = _tls12_ctx(broker, dev, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:"
                                  "ECDHE-RSA-AES128-SHA256:AES128-SHA256:AES128-SHA")
    with pytest.raises((ssl.SSLError, OSError)):
        conn = mk.RawConn(mk.HOST, broker.port, ctx)
        conn.send(mk.connect_pkt(dev.id))
        assert conn.recv_packet() is None
        raise OSError("closed")


def test_tls13_used_by_default(broker, device):
    dev = device()
    conn, _ = mk.raw_connect(mk.HOST, broker.port, dev.id,
                             ssl_ctx=mk.client_ssl_context(broker.dir + "/ca.crt", dev.cert, dev.key))
    assert conn.s.version() == "TLSv1.3"
    conn.close()


def test_server_certificate_hostnames(broker, device):
    """The server certificate verifies for 127.0.0.1 and localhost."""
    dev = device()
    for host in ("127.0.0.1", "localhost"):
        ctx = mk.client_ssl_context(broker.dir + "/ca.crt", dev.cert, dev.key)
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=mk.WAIT)
        t = ctx.wrap_socket(s, server_hostname=host)
        t.close()
