"""SIGHUP reloads certificates, the CA and [broker] limits without dropping
connections; a bad reload keeps the old configuration. SIGTERM exits 0."""

import hashlib
import os
import signal
import socket
import ssl

import pytest

import mqttkit as mk

pytestmark = pytest.mark.moat_only("SIGHUP reload and its event=reload log line")


def reload(b, ok=True):
    m = b.mark()
    b.signal(signal.SIGHUP)
    line = b.wait_log(r"event=reload\b", since=m)
    if ok:
        assert "ok=1" in line.split(), "reload failed: %s" % line
    else:
        assert "ok=0" in line.split() and "error=" in line, "bad reload not reported: %s" % line
    assert b.alive()
    return line


def roundtrip(c, topic):
    assert c.connected, "%s lost its connection" % c.name
    assert c.subscribe(topic, 1) == [1]
    c.publish(topic, b"still-here", qos=1)
    assert c.get(pred=lambda m: m.topic == topic and m.payload == b"still-here").payload == b"still-here"


def server_cert_der(b, dev):
    ctx = mk.client_ssl_context(dev.ca, dev.cert, dev.key)
    with socket.create_connection((mk.HOST, b.port), timeout=mk.WAIT) as s:
        with ctx.wrap_socket(s, server_hostname=mk.HOST) as t:
            return t.getpeercert(binary_form=True)


def test_sighup_keeps_connections(make_broker, client, device):
    b = make_broker(name="reload")
    dev = device()
    d = client(dev, on=b)
    o = client(listener="open", on=b, protocol=mk.V311)
    reload(b)
    roundtrip(d, "d/%s/after" % dev.id)
    roundtrip(o, "open/after")
    fresh = device("fresh")
    roundtrip(client(fresh, on=b), "d/%s/x" % fresh.id)


def test_reload_max_packet_size(make_broker, client, device):
    b = make_broker(name="reload-mps")
    dev = device()
    old = client(dev, on=b)
    b.conf["max_packet_size"] = 4096
    b.write_config()
    reload(b)
    roundtrip(old, "d/%s/old" % dev.id)
    dev2 = device("new")
    new = client(dev2, on=b, connect=False)
    _, _, p = new.connect()
    assert getattr(p, "MaximumPacketSize", None) == 4096, "CONNACK after reload: %s" % p
    new.publish("d/%s/big" % dev2.id, b"B" * 5000, qos=0, wait=False)
    reason = new.wait_disconnect(timeout=10)
    assert reason in (0x95, None), reason


def test_reload_limits_keepalive_receive_maximum(make_broker, client, device):
    b = make_broker(name="reload-limits")
    b.conf["max_keepalive"] = 120
    b.conf["receive_maximum"] = 10
    b.write_config()
    reload(b)
    dev = device()
    c = client(dev, on=b, connect=False)
    _, _, p = c.connect(keepalive=600)
    assert getattr(p, "ServerKeepAlive", None) == 120, p
    assert getattr(p, "ReceiveMaximum", 65535) == 10, p


def test_reload_server_certificate(make_broker, client, device, pki):
    b = make_broker(name="reload-cert")
    dev = device()
    live = client(dev, on=b)
    before = server_cert_der(b, dev)
    tmp_crt, tmp_key = os.path.join(b.dir, "new.crt"), os.path.join(b.dir, "new.key")
    pki.issue_server(tmp_crt, tmp_key, cn="moat-reissued")
    os.replace(tmp_key, os.path.join(b.dir, "server.key"))
    os.replace(tmp_crt, os.path.join(b.dir, "server.crt"))
    reload(b)
    after = server_cert_der(b, dev)
    assert hashlib.sha256(after).digest() != hashlib.sha256(before).digest(), \
        "new connections still get the old server certificate"
    with open(os.path.join(b.dir, "server.crt"), "rb") as f:
        assert ssl.DER_cert_to_PEM_cert(after).split()[2:-2] == \
            f.read().decode().split()[2:-2], "served certificate is not the new server.crt"
    roundtrip(live, "d/%s/live" % dev.id)


def test_reload_ca_bundle(make_broker, client, device, pki):
    b = make_broker(name="reload-ca")
    ca2_crt, ca2_key = pki.other_ca("rotation")
    newdev = pki.issue("ca2-device", ca_crt=ca2_crt, ca_key=ca2_key)
    c = client(newdev, on=b, connect=False)
    assert c.connect(expect=None)[0] == "closed", "CA2 device accepted before the reload"
    old_dev = device()
    live = client(old_dev, on=b)
    with open(os.path.join(b.dir, "ca.crt"), "a") as f, open(ca2_crt) as g:
        f.write(g.read())
    reload(b)
    c2 = client(newdev, on=b)
    roundtrip(c2, "d/ca2-device/x")
    old2 = device("old2")
    roundtrip(client(old2, on=b), "d/%s/x" % old2.id)
    roundtrip(live, "d/%s/x" % old_dev.id)


def test_reload_bad_config_keeps_old(make_broker, client, device):
    b = make_broker(name="reload-bad")
    dev = device()
    live = client(dev, on=b)
    with open(os.path.join(b.dir, "moat.conf"), "a") as f:
        f.write("[broker]\nno_such_key = 1\n")
    reload(b, ok=False)
    roundtrip(live, "d/%s/x" % dev.id)
    dev2 = device("new")
    new = client(dev2, on=b, connect=False)
    _, _, p = new.connect()
    assert getattr(p, "MaximumPacketSize", None) == b.conf["max_packet_size"]
    roundtrip(new, "d/%s/x" % dev2.id)


def test_reload_bad_certificate_keeps_old(make_broker, client, device):
    b = make_broker(name="reload-badcert")
    dev = device()
    live = client(dev, on=b)
    before = server_cert_der(b, dev)
    with open(os.path.join(b.dir, "server.crt"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    reload(b, ok=False)
    assert server_cert_der(b, dev) == before
    roundtrip(live, "d/%s/x" % dev.id)
    fresh = device("fresh")
    roundtrip(client(fresh, on=b), "d/%s/y" % fresh.id)


def test_sigterm_exits_zero(make_broker, client, device):
    b = make_broker(name="sigterm")
    d = client(device(), on=b)
    client(listener="open", on=b)
    b.signal(signal.SIGTERM)
    code = b.proc.wait(timeout=10)
    assert code == 0, "exit %s after SIGTERM; stderr tail:\n%s" % (code, b.tail())
    d.wait_disconnect()


def test_reload_unknown_devices_refuse_disconnects_unregistered(make_broker, client, device):
    """unknown_devices allow -> refuse applies to live connections: the
    unregistered device is disconnected (0x98) and cannot come back."""
    b = make_broker(name="reload-unknown")
    assert b.conf["unknown_devices"] == "allow"
    dev = device("unreg")
    live = client(dev, on=b)
    roundtrip(live, "d/%s/before" % dev.id)
    b.conf["unknown_devices"] = "refuse"
    b.write_config()
    line = reload(b)
    assert "unknown_devices=refuse" in line.split(), line
    assert live.wait_disconnect() == 0x98
    again = client(dev, on=b, connect=False)
    assert again.connect(expect=None)[0] == 0x87, "unregistered device admitted after the reload"
    # And back: allow admits it again without a restart.
    b.conf["unknown_devices"] = "allow"
    b.write_config()
    reload(b)
    roundtrip(client(dev, on=b), "d/%s/after" % dev.id)


def test_reload_port_change_refused_whole(make_broker, client, device):
    """A key that needs a restart refuses the whole reload and names the key;
    the other changes in the same file are not applied either."""
    b = make_broker(name="reload-port")
    dev = device()
    live = client(dev, on=b)
    text = mk.moat_conf_text(dict(b.conf, max_packet_size=4096),
                             dict(b.listeners(), mqtts=dict(b.listeners()["mqtts"],
                                                            port=mk.free_port())))
    b.write_config(text)
    line = reload(b, ok=False)
    assert "listener.mqtts.port" in line and "restart" in line, line
    roundtrip(live, "d/%s/x" % dev.id)
    dev2 = device("new")
    new = client(dev2, on=b, connect=False)
    _, _, p = new.connect()
    assert getattr(p, "MaximumPacketSize", None) == b.conf["max_packet_size"], \
        "max_packet_size applied from a refused reload: %s" % p


def test_reload_workers_change_refused(make_broker):
    b = make_broker(name="reload-workers")
    b.conf["workers"] = b.conf["workers"] + 1
    b.write_config()
    line = reload(b, ok=False)
    assert "broker.workers" in line and "restart" in line, line
