"""TLS session resumption (issue 10): the broker's ticket keys survive
SIGHUP and restarts (sealed by the key process in DIR/tls-tickets.sealed),
while revocation, decommissioning and certificate expiry still apply to a
resumed session, and tickets from another data directory or a wiped key
file only get a full handshake."""

import datetime
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("session tickets sealed by the key process")

KEYFILE = "tls-tickets.sealed"
LIFETIME_S = 24 * 3600  # MOAT_TLS_TICKET_LIFETIME_S


class Device:
    """A device that keeps its TLS session between connections, as a real
    one would: one SSLContext, the last session it was given."""

    def __init__(self, cert):
        self.cert = cert
        self.ctx = mk.client_ssl_context(cert.ca, cert.cert, cert.key)
        self.session = None

    def connect(self, port, offer=True):
        """TLS (offering the saved session), CONNECT, CONNACK. Returns
        (resumed, connack reason, or "tls"/"closed"). Keeps the new session."""
        s = socket.create_connection((mk.HOST, port), timeout=10)
        try:
            ss = self.ctx.wrap_socket(s, server_hostname=mk.HOST,
                                      session=self.session if offer else None)
        except (ssl.SSLError, OSError):
            s.close()
            return False, "tls"
        conn = mk.RawConn.__new__(mk.RawConn)
        conn.s, conn.buf, conn.closed = ss, b"", False
        try:
            resumed = ss.session_reused
            try:
                conn.send(mk.connect_pkt(self.cert.id))
                p = conn.recv_packet()
            except (ssl.SSLError, OSError):
                return resumed, "closed"
            if p is None:
                return resumed, "closed"
            assert p.type == mk.CONNACK, p.type
            sess = ss.session
            if sess is not None and sess.has_ticket:
                self.session = sess
            if p.reason() == 0:
                conn.send(mk.packet(mk.DISCONNECT, 0, b"\x00"))
            return resumed, p.reason()
        finally:
            try:
                ss.close()
            except OSError:
                pass


def reload(b):
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"event=reload ok=1", since=mark)


def test_resumes_after_sighup_and_after_a_restart(make_broker, device):
    b = make_broker(name="resume")
    dev = Device(device())
    assert dev.connect(b.port) == (False, 0)
    assert dev.session is not None and dev.session.has_ticket, "no ticket issued"
    assert dev.session.ticket_lifetime_hint == LIFETIME_S
    assert dev.connect(b.port) == (True, 0)
    reload(b)
    assert dev.connect(b.port) == (True, 0), "a SIGHUP invalidated the ticket"
    # a new process, same data directory
    b.stop()
    b.start()
    assert dev.connect(b.port) == (True, 0), "a restart invalidated the ticket"
    # twice more: the ticket the restarted broker issued works too
    b.stop()
    b.start()
    assert dev.connect(b.port) == (True, 0)


def test_key_file_is_sealed_and_private(make_broker, device):
    b = make_broker(name="keyfile")
    path = os.path.join(b.dir, KEYFILE)
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    with open(path, "rb") as f:
        blob = f.read()
    # the key process's sealed format (pki/ca.h), never the plaintext ring
    assert blob.startswith(b"MKS1") and b"MTK1" not in blob, blob[:8]
    # restarting does not rewrite it when nothing is due
    b.stop()
    b.start()
    with open(path, "rb") as f:
        assert f.read() == blob


def test_wiped_or_corrupt_key_file_gives_full_handshakes(make_broker, device):
    b = make_broker(name="wipe")
    dev = Device(device())
    assert dev.connect(b.port) == (False, 0)
    path = os.path.join(b.dir, KEYFILE)
    b.stop()
    os.unlink(path)
    b.start()
    b.wait_log(r"event=tls_ticket_keys source=new")
    assert dev.connect(b.port) == (False, 0), "a ticket outlived its keys"
    assert dev.connect(b.port) == (True, 0)
    # a file that does not unseal: logged, replaced, nothing fails
    b.stop()
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        data[-1] ^= 0x01
        f.seek(0)
        f.write(bytes(data))
    b.start()
    b.wait_log(r"event=tls_ticket_keys_reset")
    assert os.path.getsize(path) > 0
    assert dev.connect(b.port) == (False, 0)
    assert dev.connect(b.port) == (True, 0)
    # garbage of the wrong size
    b.stop()
    with open(path, "wb") as f:
        f.write(b"not a key ring")
    b.start()
    b.wait_log(r"event=tls_ticket_keys_reset")
    assert dev.connect(b.port) == (False, 0)


def test_ticket_from_another_data_directory_is_not_accepted(make_broker, device):
    a = make_broker(name="dir-a")
    other = make_broker(name="dir-b")  # same CA and server key, its own ticket keys
    dev = Device(device())
    assert dev.connect(a.port) == (False, 0)
    assert dev.connect(a.port) == (True, 0)
    assert dev.connect(other.port) == (False, 0)


def test_resumption_off_issues_and_accepts_no_ticket(make_broker, device):
    b = make_broker(name="noresume", start=False)
    text = mk.moat_conf_text(b.conf, b.listeners(),
                             tls={"cert": "server.crt", "key": "server.key", "ca": "ca.crt",
                                  "tls_resumption": "off"})
    b.write_config(text)
    b.start(write_config=False)
    dev = Device(device())
    assert dev.connect(b.port) == (False, 0)
    assert dev.session is None, "a ticket was issued with tls_resumption = off"
    # on for the listener overrides the global off; a SIGHUP applies it
    text = text.replace("policy = default", "policy = default\ntls_resumption = on")
    b.write_config(text)
    reload(b)
    assert dev.connect(b.port) == (False, 0)
    assert dev.session is not None
    assert dev.connect(b.port) == (True, 0)
    # and off again: the ticket is no longer accepted
    b.write_config(text.replace("tls_resumption = on", "tls_resumption = off"))
    reload(b)
    assert dev.connect(b.port) == (False, 0)


def test_expired_certificate_is_not_resumed(make_broker, pki, uid):
    b = make_broker(name="expiry")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    end = now + datetime.timedelta(seconds=4)
    cert = pki.issue_with_validity(uid("exp"), now - datetime.timedelta(minutes=5), end)
    dev = Device(cert)
    assert dev.connect(b.port) == (False, 0)
    # the ticket lives no longer than the certificate
    assert 0 < dev.session.ticket_lifetime_hint <= 4, dev.session.ticket_lifetime_hint
    assert dev.connect(b.port) == (True, 0)
    while datetime.datetime.now(datetime.timezone.utc) <= end + datetime.timedelta(seconds=1):
        time.sleep(0.2)
    resumed, code = dev.connect(b.port)
    assert not resumed, "a session with an expired certificate was resumed"
    assert code in ("tls", "closed"), code


# --------------------------------------------------------------------------
# revocation and decommissioning apply to resumed sessions
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reg(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "resumption")
    s.broker.conf["unknown_devices"] = "refuse"
    s.start()
    adm = ak.setup_admin(s)
    yield {"s": s, "api": adm.api, "bin": moat_bin}
    s.stop()


def issue(reg, dev_id):
    """`moat cert issue` registers the device (active) and its certificate;
    the running server loads it on SIGHUP."""
    s = reg["s"]
    p = mk.run([reg["bin"], "cert", "issue", "--dir", s.dir, "--device", dev_id], check=False)
    assert p.returncode == 0, p.stderr
    reload(s.broker)
    crt = os.path.join(s.dir, "devices", dev_id + ".crt")
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", crt],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    serial = "%032x" % int(out.strip().split("=", 1)[1], 16)
    return mk.Cert(dev_id, crt, os.path.join(s.dir, "devices", dev_id + ".key"), s.ca), serial


def test_revoked_certificate_ticket_is_refused_at_connect(reg):
    cert, serial = issue(reg, "resume-revoked")
    dev = Device(cert)
    port = reg["s"].mqtt_port
    assert dev.connect(port) == (False, 0)
    assert dev.connect(port) == (True, 0)
    r = reg["api"].post("/api/v1/certificates/%s/revoke" % serial, {})
    assert r.status_code == 200, ak.describe(r)
    mark = reg["s"].broker.mark()
    resumed, code = dev.connect(port)
    assert resumed, "the ticket should still resume TLS: CONNECT is where revocation bites"
    assert code not in (0, "tls"), code
    line = reg["s"].broker.wait_log(r"event=connect_refused .*identity=resume-revoked ", since=mark)
    assert "tls_resumed=1" in line and "revoked" in line, line


def test_decommissioned_device_ticket_is_refused_at_connect(reg):
    cert, _ = issue(reg, "resume-decom")
    dev = Device(cert)
    port = reg["s"].mqtt_port
    assert dev.connect(port) == (False, 0)
    assert dev.connect(port) == (True, 0)
    r = reg["api"].post("/api/v1/devices/resume-decom/decommission")
    assert r.status_code == 200, ak.describe(r)
    mark = reg["s"].broker.mark()
    resumed, code = dev.connect(port)
    assert resumed
    assert code not in (0, "tls"), code
    line = reg["s"].broker.wait_log(r"event=connect_refused .*identity=resume-decom ", since=mark)
    assert "tls_resumed=1" in line, line
