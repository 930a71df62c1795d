"""
Helpers for Moat's integration tests: a PKI helper (openssl CLI), a broker
process wrapper (moat, or Debian's mosquitto as a reference), a paho client
wrapper that records everything it receives, and a raw MQTT codec for the
malformed-input and protocol-violation tests.

Everything here waits on events with timeouts; nothing sleeps blindly except
the few spec behaviours that are defined by elapsed time (expiry intervals).
"""

import atexit
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCodes
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = float(os.environ.get("MOAT_ITEST_WAIT", "5"))  # default event wait (s)
HOST = "127.0.0.1"

V5 = mqtt.MQTTv5
V311 = mqtt.MQTTv311


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=kw.pop("timeout", 30), **kw)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\nstdout: %s\nstderr: %s"
                           % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
    return p


def free_port(family=socket.AF_INET, host=HOST):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(pred, timeout=WAIT, what="condition"):
    """Poll a cheap predicate (used only where no event exists, e.g. a file)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


# --------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------

class Cert:
    def __init__(self, device_id, cert, key, ca):
        self.id = device_id
        self.cert = cert
        self.key = key
        self.ca = ca  # CA bundle the client uses to verify the server

    def __repr__(self):
        return "Cert(%s)" % self.id


class PKI:
    """Issues client certificates from DIR/ca.key + DIR/ca.crt with the
    openssl CLI, as an operator would."""

    def __init__(self, datadir, workdir):
        self.dir = datadir
        self.work = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ca_crt = os.path.join(datadir, "ca.crt")
        self.ca_key = os.path.join(datadir, "ca.key")
        self._n = 0
        self._lock = threading.Lock()

    def _next(self, stem):
        with self._lock:
            self._n += 1
            return os.path.join(self.work, "%s-%d" % (re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:40],
                                                      self._n))

    def issue(self, device_id, cn=None, uri=True, ca_crt=None, ca_key=None, days=30,
              client_auth=True):
        """Issue a P-256 client certificate. uri=True adds the URI SAN
        moat:device:<id>; cn defaults to the device id."""
        cn = device_id if cn is None else cn
        base = self._next(device_id or cn or "cert")
        key, csr, crt, ext = base + ".key", base + ".csr", base + ".crt", base + ".ext"
        subj = "/CN=" + re.sub(r"([/+=\\])", r"\\\1", cn)
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-subj", subj, "-out", csr])
        lines = []
        if client_auth:
            lines.append("extendedKeyUsage=clientAuth")
        if uri:
            lines.append("subjectAltName=URI:moat:device:%s" % device_id)
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt or self.ca_crt,
             "-CAkey", ca_key or self.ca_key, "-set_serial", "0x%x" % int.from_bytes(os.urandom(12), "big"),
             "-days", str(days), "-sha256", "-extfile", ext, "-out", crt])
        return Cert(device_id, crt, key, self.ca_crt)

    def issue_with_validity(self, device_id, not_before, not_after, uri=True):
        """Certificate with an explicit validity window (expired / not yet
        valid), built with python3-cryptography and signed by the CA key."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        with open(self.ca_key, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
        with open(self.ca_crt, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
             .issuer_name(ca_cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(not_before)
             .not_valid_after(not_after)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if uri:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("moat:device:%s" % device_id)]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        base = self._next(device_id)
        with open(base + ".key", "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(base + ".crt", "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        return Cert(device_id, base + ".crt", base + ".key", self.ca_crt)

    def other_ca(self, name="other"):
        """A second, unrelated CA (key, cert)."""
        base = self._next("ca-" + name)
        key, crt = base + ".key", base + ".crt"
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-subj", "/CN=Untrusted Test CA %s" % name, "-days", "30",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", crt])
        return crt, key

    def issue_server(self, out_crt, out_key, sans=("DNS:localhost", "IP:127.0.0.1", "IP:::1"),
                     ca_crt=None, ca_key=None, cn="moat-test-server"):
        base = self._next("server")
        csr, ext = base + ".csr", base + ".ext"
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", out_key, "-subj", "/CN=%s" % cn, "-out", csr])
        with open(ext, "w") as f:
            f.write("extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % ",".join(sans))
        run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt or self.ca_crt,
             "-CAkey", ca_key or self.ca_key, "-set_serial", "0x%x" % int.from_bytes(os.urandom(12), "big"),
             "-days", "30", "-sha256", "-extfile", ext, "-out", out_crt])
        os.chmod(out_key, 0o600)


def make_reference_pki(d):
    """What `moat init` produces, made with openssl, for the mosquitto target."""
    os.makedirs(d, mode=0o700, exist_ok=True)
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", ca_key, "-subj", "/CN=Reference Test CA", "-days", "30",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", ca_crt])
    os.chmod(ca_key, 0o600)
    PKI(d, os.path.join(d, "..", os.path.basename(d) + "-work")).issue_server(
        os.path.join(d, "server.crt"), os.path.join(d, "server.key"))


# --------------------------------------------------------------------------
# Broker process
# --------------------------------------------------------------------------

DEFAULT_BROKER = {
    "workers": 2,
    "max_packet_size": 262144,
    "max_keepalive": 300,
    "receive_maximum": 64,
    "max_inflight": 32,
    "max_queued_messages": 1000,
    "max_connections": 1000,
    # The generic MQTT tests connect development certificates nobody
    # registered: they get the group "devices" (device-default policy).
    # Registry enforcement has its own tests with the default, refuse.
    "unknown_devices": "allow",
}


def moat_conf_text(broker, listeners, log_level="info", tls=None):
    tls = tls or {"cert": "server.crt", "key": "server.key", "ca": "ca.crt"}
    out = ["[broker]"]
    out += ["%s = %s" % (k, v) for k, v in broker.items()]
    out += ["[tls]"] + ["%s = %s" % (k, v) for k, v in tls.items()]
    out += ["[log]", "level = %s" % log_level]
    for name, l in listeners.items():
        out.append("[listener.%s]" % name)
        out += ["%s = %s" % (k, v) for k, v in l.items()]
    return "\n".join(out) + "\n"


_LIVE = set()


@atexit.register
def _kill_leftover_brokers():
    """Last resort if pytest dies before fixture teardown."""
    for b in list(_LIVE):
        try:
            b.kill()
        except Exception:
            pass


SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Undefined)Sanitizer|runtime error: |"
                          r"WARNING: ThreadSanitizer")


class Broker:
    """One broker process (moat or mosquitto) with an mTLS listener `mqtts`
    (policy default) and a plaintext loopback listener `open` (policy open)."""

    def __init__(self, target, moat_bin, datadir, name="broker", broker_conf=None,
                 extra_listeners=None):
        self.target = target
        self.moat_bin = moat_bin
        self.dir = datadir
        self.name = name
        self.conf = dict(DEFAULT_BROKER)
        self.conf.update(broker_conf or {})
        self.port = free_port()
        self.open_port = free_port()
        self.extra_listeners = extra_listeners or {}
        self.proc = None
        self.lines = []
        self._cond = threading.Condition()
        self._reader = None
        self.log_path = os.path.normpath(os.path.join(datadir, "..", os.path.basename(datadir) + "-%s.stderr" % name))
        self.exit_code = None

    # -- configuration -------------------------------------------------
    def listeners(self):
        l = {
            "mqtts": {"bind": HOST, "port": self.port, "tls": "on",
                      "require_client_cert": "on", "policy": "default"},
            "open": {"bind": HOST, "port": self.open_port, "tls": "off", "policy": "open"},
        }
        l.update(self.extra_listeners)
        return l

    def write_config(self, text=None):
        if self.target == "moat":
            if text is None:
                text = moat_conf_text(self.conf, self.listeners())
            path = os.path.join(self.dir, "moat.conf")
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o600)
        else:
            self._write_mosquitto_conf()

    def _write_mosquitto_conf(self):
        acl = os.path.join(self.dir, "acl")
        with open(acl, "w") as f:
            f.write("pattern write d/%u/#\npattern read d/%u/#\npattern read c/%u/#\n")
        c = self.conf
        lines = [
            "per_listener_settings true",
            "user %s" % ("root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")),
            "persistence false",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            "sys_interval 10",
            "max_packet_size %d" % c["max_packet_size"],
            "max_keepalive %d" % c["max_keepalive"],
            "max_inflight_messages %d" % c["max_inflight"],
            "max_queued_messages %d" % c["max_queued_messages"],
            "",
            "listener %d %s" % (self.port, HOST),
            "cafile %s" % os.path.join(self.dir, "ca.crt"),
            "certfile %s" % os.path.join(self.dir, "server.crt"),
            "keyfile %s" % os.path.join(self.dir, "server.key"),
            "require_certificate true",
            "use_identity_as_username true",
            "acl_file %s" % acl,
            "max_connections %d" % c["max_connections"],
            "",
            "listener %d %s" % (self.open_port, HOST),
            "allow_anonymous true",
            "max_connections %d" % c["max_connections"],
        ]
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- process -------------------------------------------------------
    def command(self):
        if self.target == "moat":
            return [self.moat_bin, "serve", "--dir", self.dir]
        return ["/usr/sbin/mosquitto", "-c", os.path.join(self.dir, "mosquitto.conf")]

    def ready_pattern(self):
        return r"event=ready" if self.target == "moat" else r"mosquitto version \S+ running"

    def start(self, write_config=True, timeout=15):
        if write_config:
            self.write_config()
        self.lines = []
        self.exit_code = None
        self._logf = open(self.log_path, "a")
        self._logf.write("==== start %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(self.command())))
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.wait_log(self.ready_pattern(), timeout=timeout)
        except AssertionError:
            self.stop()
            raise AssertionError("%s did not become ready; stderr tail:\n%s"
                                 % (self.name, self.tail()))
        return self

    def _read(self):
        f = self.proc.stderr
        for raw in iter(f.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                try:
                    self._logf.write(line + "\n")
                    self._logf.flush()
                except ValueError:
                    pass
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self):
        """Current log position, for wait_log(since=...)."""
        with self._cond:
            return len(self.lines)

    def wait_log(self, pattern, timeout=WAIT, since=0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[since:]:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError("%s exited (code %s) while waiting for /%s/; stderr tail:\n%s"
                                         % (self.name, self.proc.returncode, pattern, self._tail_locked()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1fs waiting for /%s/ in %s stderr; tail:\n%s"
                                         % (timeout, pattern, self.name, self._tail_locked()))
                self._cond.wait(min(left, 0.2))

    def log_lines(self, since=0):
        with self._cond:
            return list(self.lines[since:])

    def _tail_locked(self, n=40):
        return "\n".join(self.lines[-n:])

    def tail(self, n=40):
        with self._cond:
            return self._tail_locked(n)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.exit_code = self.proc.returncode
        _LIVE.discard(self)
        if self._reader:
            self._reader.join(timeout=5)
        try:
            self._logf.close()
        except Exception:
            pass
        # A broker built with ASan/UBSan (make test runs the suite against
        # one too) reports memory errors and leaks on stderr: fail on them.
        with self._cond:
            bad = [l for l in self.lines if SANITIZER_RE.search(l)]
        if bad:
            raise AssertionError("%s: sanitizer report in broker stderr (%s):\n%s"
                                 % (self.name, self.log_path, "\n".join(bad[:20])))
        return self.exit_code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


# --------------------------------------------------------------------------
# paho client wrapper
# --------------------------------------------------------------------------

class Msg:
    __slots__ = ("topic", "raw_topic", "payload", "qos", "retain", "dup", "mid", "props", "t")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def prop(self, name, default=None):
        return getattr(self.props, name, default) if self.props is not None else default

    def __repr__(self):
        return "Msg(%r, %r, qos=%d, retain=%d, dup=%d, props=%s)" % (
            self.topic, self.payload[:40], self.qos, self.retain, self.dup, self.props)


class ConnectFailed(Exception):
    pass


class _Paho(mqtt.Client):
    """paho Client that records PUBACK/PUBREC/PUBCOMP reason codes (paho 1.6.1
    parses them but does not expose them) and can withhold acks."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.t_acks = {}
        self.t_cond = threading.Condition()
        self.t_hold_puback = False
        self.t_held_pubacks = []
        self.t_hold_pubrel = False
        self.t_held_pubrels = []
        self.t_tls_error = None
        self.t_hold_pubrec = False
        self.t_held_pubrecs = []
        self.t_pingresps = 0
        self.t_server_disconnect = None

    def _record(self, kind):
        pkt = self._in_packet["packet"]
        mid = struct.unpack("!H", pkt[:2])[0]
        rc = pkt[2] if (self._protocol == V5 and len(pkt) > 2) else 0
        with self.t_cond:
            self.t_acks[(kind, mid)] = rc
            self.t_cond.notify_all()

    def _handle_pubackcomp(self, cmd):
        self._record(cmd)
        return super()._handle_pubackcomp(cmd)

    def _handle_disconnect(self):
        # paho 1.6.1 ignores the reason code of a DISCONNECT whose remaining
        # length is 1 (reason code, no properties: valid per MQTT 5 3.14.2.2)
        pkt = self._in_packet["packet"]
        with self.t_cond:
            self.t_server_disconnect = pkt[0] if len(pkt) >= 1 else 0
            self.t_cond.notify_all()
        return super()._handle_disconnect()

    def _handle_pubrec(self):
        self._record("PUBREC")
        return super()._handle_pubrec()

    def _sock_recv(self, bufsize):
        # paho 1.6.1 lets a TLS alert (e.g. "certificate required") escape
        # from its network thread; report it as a lost connection instead.
        try:
            return super()._sock_recv(bufsize)
        except ssl.SSLError as e:
            self.t_tls_error = e
            raise ConnectionResetError(str(e))

    def _sock_send(self, buf):
        try:
            return super()._sock_send(buf)
        except ssl.SSLError as e:
            self.t_tls_error = e
            raise ConnectionResetError(str(e))

    def _send_puback(self, mid):
        if self.t_hold_puback:
            with self.t_cond:
                self.t_held_pubacks.append(mid)
                self.t_cond.notify_all()
            return mqtt.MQTT_ERR_SUCCESS
        return super()._send_puback(mid)

    def _send_pubrec(self, mid):
        if self.t_hold_pubrec:
            with self.t_cond:
                self.t_held_pubrecs.append(mid)
                self.t_cond.notify_all()
            return mqtt.MQTT_ERR_SUCCESS
        return super()._send_pubrec(mid)

    def _handle_pingresp(self):
        with self.t_cond:
            self.t_pingresps += 1
            self.t_cond.notify_all()
        return super()._handle_pingresp()

    def _send_pubrel(self, mid):
        if self.t_hold_pubrel:
            with self.t_cond:
                self.t_held_pubrels.append(mid)
                self.t_cond.notify_all()
            return mqtt.MQTT_ERR_SUCCESS
        return super()._send_pubrel(mid)


def props(packet_type, **kw):
    """Properties(PacketTypes.X) from keyword args; UserProperty takes a list."""
    p = Properties(packet_type)
    for k, v in kw.items():
        if k == "UserProperty":
            for pair in v:
                p.UserProperty = pair
        else:
            setattr(p, k, v)
    return p


def client_ssl_context(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TClient:
    """A paho client with recording and waiting helpers."""

    def __init__(self, host, port, client_id="", protocol=V5, cert=None, ca=None,
                 clean_session=None, name=None):
        self.host, self.port = host, port
        self.protocol = protocol
        self.client_id = client_id
        self.name = name or client_id or "anon"
        kw = {}
        if protocol != V5:
            kw["clean_session"] = True if clean_session is None else clean_session
        self.c = _Paho(client_id=client_id, protocol=protocol, reconnect_on_failure=False, **kw)
        self.c.max_inflight_messages_set(0)  # unlimited: tests control the flow
        self.c.max_queued_messages_set(0)
        if cert is not None or ca is not None:
            self.c.tls_set_context(client_ssl_context(ca or cert.ca,
                                                      cert.cert if cert else None,
                                                      cert.key if cert else None))
        self.cond = threading.Condition()
        self.messages = []
        self.connacks = []
        self.disconnects = []  # (server_reason or None, rc)
        self.subacks = {}
        self.unsubacks = {}
        self.aliases = {}
        self.connected = False
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self._looping = False

    # -- callbacks -----------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        code = rc.value if isinstance(rc, ReasonCodes) else int(rc)
        if self.protocol == V5 and code == 0:
            # paho 1.6.1 ignores the server's Receive Maximum: honour it here
            rm = getattr(properties, "ReceiveMaximum", 65535) if properties is not None else 65535
            self.c._max_inflight_messages = 0 if rm >= 65535 else rm
        with self.cond:
            self.connacks.append((code, flags.get("session present", 0), properties))
            self.connected = code == 0
            self.aliases = {}
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        server = self.c.t_server_disconnect  # reason of a DISCONNECT from the server
        self.c.t_server_disconnect = None
        with self.cond:
            self.connected = False
            self.disconnects.append((server, rc, properties))
            self.cond.notify_all()
        with self.c.t_cond:
            self.c.t_cond.notify_all()

    def _on_message(self, client, userdata, m):
        raw = m._topic
        p = getattr(m, "properties", None)
        topic = raw.decode("utf-8", "replace")
        alias = getattr(p, "TopicAlias", None) if p is not None else None
        if alias is not None:
            if raw:
                self.aliases[alias] = topic
            else:
                topic = self.aliases.get(alias, "<unknown alias %d>" % alias)
        msg = Msg(topic=topic, raw_topic=raw, payload=bytes(m.payload), qos=m.qos,
                  retain=m.retain, dup=m.dup, mid=m.mid, props=p, t=time.monotonic())
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        codes = []
        for g in granted:
            codes.append(g.value if isinstance(g, ReasonCodes) else int(g))
        with self.cond:
            self.subacks[mid] = codes
            self.cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, properties=None, reasons=None):
        if reasons is None:
            codes = []
        elif isinstance(reasons, list):
            codes = [r.value for r in reasons]
        else:
            codes = [reasons.value]
        with self.cond:
            self.unsubacks[mid] = codes
            self.cond.notify_all()

    # -- waiting -------------------------------------------------------
    def _wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: timed out after %.1fs waiting for %s"
                                         % (self.name, timeout, what))
                self.cond.wait(min(left, 0.5))

    # -- operations ----------------------------------------------------
    def will_set(self, topic, payload=b"", qos=0, retain=False, properties=None):
        self.c.will_set(topic, payload, qos, retain, properties)

    def connect(self, clean_start=True, keepalive=60, properties=None, timeout=WAIT,
                expect=0):
        """Connect and wait for CONNACK. Returns (code, session_present, props).
        expect=0 asserts success; expect=None returns whatever happened:
        ("closed", None, None) when the connection ended without a CONNACK."""
        n_ack, n_disc = len(self.connacks), len(self.disconnects)
        try:
            if self.protocol == V5:
                self.c.connect(self.host, self.port, keepalive=keepalive,
                               clean_start=clean_start, properties=properties)
            else:
                self.c.connect(self.host, self.port, keepalive=keepalive)
        except (OSError, ssl.SSLError) as e:
            if expect is None:
                return ("closed", None, e)
            raise ConnectFailed("%s: connect failed: %r" % (self.name, e))
        if not self._looping:
            self.c.loop_start()
            self._looping = True
        try:
            self._wait(lambda: len(self.connacks) > n_ack or len(self.disconnects) > n_disc,
                       timeout, "CONNACK")
        except AssertionError:
            if expect is None:
                return ("timeout", None, None)
            raise
        with self.cond:
            if len(self.connacks) > n_ack:
                r = self.connacks[n_ack]
            else:
                r = ("closed", None, self.disconnects[n_disc])
        if expect is not None and r[0] != expect:
            raise ConnectFailed("%s: CONNACK %r, expected %r (detail: %r, tls error: %r)"
                                % (self.name, r[0], expect, r[2], self.c.t_tls_error))
        return r

    def subscribe(self, topic, qos=0, options=None, properties=None, timeout=WAIT):
        """Subscribe and wait for SUBACK; returns the list of reason codes.
        topic may be a list of (filter, qos|SubscribeOptions)."""
        if self.protocol == V5 and options is not None:
            rc, mid = self.c.subscribe(topic, options=options, properties=properties)
        elif self.protocol == V5 and not isinstance(topic, list):
            rc, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos),
                                       properties=properties)
        elif isinstance(topic, list):
            rc, mid = self.c.subscribe(topic, properties=properties) if self.protocol == V5 \
                else self.c.subscribe(topic)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe send failed rc=%s" % (self.name, rc)
        return self._wait(lambda: self.subacks.get(mid), timeout, "SUBACK for %r" % (topic,))

    def unsubscribe(self, topic, timeout=WAIT):
        rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self._wait(lambda: mid in self.unsubacks, timeout, "UNSUBACK")
        return self.unsubacks[mid]

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None,
                wait=True, timeout=WAIT):
        """Publish. For QoS>0 with wait=True, waits for PUBACK (QoS 1) or PUBREC
        and PUBCOMP (QoS 2) and returns the PUBACK/PUBREC reason code (0 in
        v3). For QoS 0 returns None once the packet is written."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, "%s: publish failed rc=%s" % (self.name, info.rc)
        if not wait:
            return info
        if qos == 0:
            info.wait_for_publish(timeout)
            assert info.is_published(), "%s: QoS 0 publish not written within %.1fs" % (
                self.name, timeout)
            return None
        kind = "PUBACK" if qos == 1 else "PUBREC"
        deadline = time.monotonic() + timeout
        with self.c.t_cond:
            while (kind, info.mid) not in self.c.t_acks:
                if self.disconnects:
                    return "disconnected"
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: no %s for mid %d within %.1fs (connected=%s)"
                                         % (self.name, kind, info.mid, timeout, self.connected))
                self.c.t_cond.wait(min(left, 0.5))
            code = self.c.t_acks[(kind, info.mid)]
        if qos == 2 and code < 0x80 and not self.c.t_hold_pubrel:
            with self.c.t_cond:
                while ("PUBCOMP", info.mid) not in self.c.t_acks:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise AssertionError("%s: no PUBCOMP for mid %d" % (self.name, info.mid))
                    self.c.t_cond.wait(min(left, 0.5))
        return code

    def wait_paho(self, pred, timeout=WAIT, what="client event"):
        """Wait on a predicate over the paho-level recorder (held acks, pings)."""
        deadline = time.monotonic() + timeout
        with self.c.t_cond:
            while not pred(self.c):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: timed out after %.1fs waiting for %s"
                                         % (self.name, timeout, what))
                self.c.t_cond.wait(min(left, 0.5))

    def get(self, timeout=WAIT, pred=None, what="a message"):
        """Wait for the next message (optionally the next one matching pred)
        and consume it."""
        def find():
            for i, m in enumerate(self.messages):
                if pred is None or pred(m):
                    return (i, m)
            return None
        i, m = self._wait(find, timeout, what)
        with self.cond:
            del self.messages[i]
        return m

    def get_topic(self, topic, timeout=WAIT):
        return self.get(timeout, lambda m: m.topic == topic, "a message on %r" % topic)

    def collect(self, n, timeout=WAIT, pred=None):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = max(0.01, deadline - time.monotonic())
            try:
                out.append(self.get(left, pred, "message %d of %d" % (len(out) + 1, n)))
            except AssertionError:
                raise AssertionError("%s: got %d of %d messages within %.1fs: %r"
                                     % (self.name, len(out), n, timeout, out))
        return out

    def drain(self):
        with self.cond:
            out, self.messages = self.messages, []
        return out

    def pending(self):
        with self.cond:
            return list(self.messages)

    def wait_disconnect(self, timeout=WAIT):
        """Wait until the connection ends. Returns the server's DISCONNECT
        reason code (v5) or None when the connection was just closed."""
        self._wait(lambda: self.disconnects, timeout, "disconnection")
        return self.disconnects[0][0]

    def disconnect(self, reasoncode=None, properties=None, timeout=WAIT):
        rc = None
        if reasoncode is not None:
            rc = ReasonCodes(PacketTypes.DISCONNECT, identifier=reasoncode)
        n = len(self.disconnects)
        self.c.disconnect(reasoncode=rc, properties=properties)
        try:
            self._wait(lambda: len(self.disconnects) > n, timeout, "DISCONNECT sent")
        finally:
            self.stop_loop()

    def drop(self):
        """Close the network connection without DISCONNECT (abnormal)."""
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._wait(lambda: self.disconnects, WAIT, "local close")
        finally:
            self.stop_loop()

    def stop_loop(self):
        if self._looping:
            self.c.loop_stop()
            self._looping = False

    def close(self):
        try:
            if self.connected:
                self.c.disconnect()
        except Exception:
            pass
        self.stop_loop()
        try:
            s = self.c.socket()
            if s is not None:
                s.close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# Raw MQTT codec (for malformed input and protocol violations)
# --------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = \
    8, 9, 10, 11, 12, 13, 14, 15


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def s16(b):
    if isinstance(b, str):
        b = b.encode("utf-8")
    return struct.pack("!H", len(b)) + b


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def pack_props(packet_type, **kw):
    if not kw:
        return b"\x00"
    return props(packet_type, **kw).pack()


def connect_pkt(client_id="", version=5, clean=True, keepalive=60, props_kw=None,
                will=None, flags_extra=0, proto_name=b"MQTT"):
    flags = (0x02 if clean else 0) | flags_extra
    payload = s16(client_id)
    if will:
        topic, msg = will
        flags |= 0x04
        if version == 5:
            payload += b"\x00"
        payload += s16(topic) + s16(msg)
    vh = s16(proto_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        vh += pack_props(PacketTypes.CONNECT, **(props_kw or {}))
    return packet(CONNECT, 0, vh + payload)


def publish_pkt(topic, payload=b"", qos=0, pid=None, retain=False, dup=False, version=5,
                props_kw=None, topic_raw=None, props_raw=None):
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    t = topic_raw if topic_raw is not None else topic.encode("utf-8")
    body = struct.pack("!H", len(t)) + t
    if qos:
        body += struct.pack("!H", pid)
    if version == 5:
        if props_raw is not None:
            body += varint(len(props_raw)) + props_raw
        else:
            body += pack_props(PacketTypes.PUBLISH, **(props_kw or {}))
    return packet(PUBLISH, flags & 0x0F, body + payload)


def subscribe_pkt(pid, filters, version=5):
    body = struct.pack("!H", pid)
    if version == 5:
        body += b"\x00"
    for f, opts in filters:
        body += s16(f) + bytes([opts])
    return packet(SUBSCRIBE, 2, body)


class Packet:
    def __init__(self, ptype, flags, body):
        self.type, self.flags, self.body = ptype, flags, body

    def reason(self):
        """Reason code of CONNACK (byte 2) / DISCONNECT / PUBACK-family (byte 3)."""
        if self.type == CONNACK:
            return self.body[1]
        if self.type == DISCONNECT:
            return self.body[0] if self.body else 0
        if self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            return self.body[2] if len(self.body) > 2 else 0
        raise ValueError("no reason code in packet type %d" % self.type)

    def __repr__(self):
        return "Packet(type=%d, flags=%#x, body=%s)" % (self.type, self.flags, self.body[:32].hex())


class RawConn:
    """A raw MQTT byte stream (plaintext or TLS)."""

    def __init__(self, host, port, ssl_ctx=None, timeout=WAIT, family=socket.AF_INET):
        s = socket.create_connection((host, port), timeout=timeout)
        if ssl_ctx is not None:
            s = ssl_ctx.wrap_socket(s, server_hostname=host)
        self.s = s
        self.s.settimeout(timeout)
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except ssl.SSLError:
                chunk = b""
            if not chunk:
                self.closed = True
                return False
            self.buf += chunk
        return True

    def recv_packet(self, timeout=WAIT):
        """Next packet, or None when the peer closed the connection.
        Raises socket.timeout when nothing arrives in time."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        mult, length, i = 1, 0, 1
        while True:
            if not self._fill(i + 1, deadline):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise AssertionError("peer sent a bad remaining length")
        if not self._fill(i + length, deadline):
            return None
        first = self.buf[0]
        body = self.buf[i:i + length]
        self.buf = self.buf[i + length:]
        return Packet(first >> 4, first & 0x0F, body)

    def expect(self, ptype, timeout=WAIT):
        p = self.recv_packet(timeout)
        assert p is not None, "connection closed while waiting for packet type %d" % ptype
        assert p.type == ptype, "expected packet type %d, got %r" % (ptype, p)
        return p

    def wait_closed(self, timeout=WAIT):
        """Read until the peer closes. Returns the list of packets received
        before the close. Fails if the connection stays open."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1fs (received %r)"
                                     % (timeout, got))
            try:
                p = self.recv_packet(left)
            except socket.timeout:
                raise AssertionError("connection still open after %.1fs (received %r)"
                                     % (timeout, got))
            except OSError:
                return got
            if p is None:
                return got
            got.append(p)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def raw_connect(host, port, client_id, version=5, ssl_ctx=None, props_kw=None, keepalive=60):
    """Open a raw connection and complete CONNECT/CONNACK. Returns (conn, connack)."""
    c = RawConn(host, port, ssl_ctx)
    c.send(connect_pkt(client_id, version=version, props_kw=props_kw, keepalive=keepalive))
    ack = c.expect(CONNACK)
    assert ack.reason() == 0, "raw CONNACK refused: %#x" % ack.reason()
    return c, ack


def parse_connack_props(pkt):
    p = Properties(PacketTypes.CONNACK)
    p.unpack(pkt.body[2:])
    return p
