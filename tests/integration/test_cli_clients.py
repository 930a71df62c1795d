"""Debian's mosquitto_pub / mosquitto_sub / mosquitto_rr over mutual TLS,
MQTT 5 and 3.1.1."""

import queue
import subprocess
import threading

import pytest

import mqttkit as mk

VERSIONS = [("mqttv5", mk.V5), ("mqttv311", mk.V311)]


def tls_args(b, cert):
    return ["-h", mk.HOST, "-p", str(b.port), "--cafile", cert.ca, "--cert", cert.cert,
            "--key", cert.key, "-i", cert.id]


def pub(args, timeout=15):
    return subprocess.run(["mosquitto_pub"] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


class Sub:
    """mosquitto_sub in the background; ready() waits for its SUBACK (-d)."""

    def __init__(self, args):
        self.p = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-d"] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.all = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in iter(self.p.stdout.readline, ""):
            self.all.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, pred, timeout=mk.WAIT, what="line"):
        import time
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("mosquitto_sub: no %s within %.1fs; output:\n%s"
                                     % (what, timeout, "\n".join(self.all)))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("mosquitto_sub exited (%s) before %s; output:\n%s"
                                     % (self.p.wait(), what, "\n".join(self.all)))
            if pred(line):
                return line

    def ready(self):
        return self.wait_line(lambda l: "received SUBACK" in l, what="SUBACK")

    def finish(self, timeout=15):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("mosquitto_sub did not exit; output:\n%s" % "\n".join(self.all))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def subs():
    made = []

    def make(args):
        s = Sub(args)
        made.append(s)
        return s
    yield make
    for s in made:
        s.kill()


@pytest.mark.parametrize("ver,proto", VERSIONS)
def test_mosquitto_sub_receives_command(broker, device, subs, client, ver, proto):
    dev = device()
    s = subs(tls_args(broker, dev) + ["-V", ver, "-t", "c/%s/#" % dev.id, "-q", "1", "-C", "1",
                                      "-W", "15", "-F", "%t|%p"])
    s.ready()
    r = pub(["-h", mk.HOST, "-p", str(broker.open_port), "-V", ver, "-t", "c/%s/cmd" % dev.id,
             "-m", "reboot", "-q", "1"])
    assert r.returncode == 0, r.stderr
    s.wait_line(lambda l: l == "c/%s/cmd|reboot" % dev.id, what="the command")
    assert s.finish() == 0


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("ver,proto", VERSIONS)
def test_mosquitto_pub_device_telemetry(broker, device, client, ver, proto, qos):
    dev = device()
    w = client(listener="open", protocol=proto)
    assert w.subscribe("d/%s/#" % dev.id, 2) == [2]
    r = pub(tls_args(broker, dev) + ["-V", ver, "-t", "d/%s/temp" % dev.id, "-m", "21.5",
                                     "-q", str(qos)])
    assert r.returncode == 0, r.stderr
    m = w.get_topic("d/%s/temp" % dev.id)
    assert (m.payload, m.qos) == (b"21.5", qos)


def test_mosquitto_pub_v5_properties(broker, device, client):
    dev = device()
    w = client(listener="open")
    assert w.subscribe("d/%s/#" % dev.id, 1) == [1]
    r = pub(tls_args(broker, dev) + ["-V", "mqttv5", "-t", "d/%s/p" % dev.id, "-m", "{}", "-q", "1",
                                     "-D", "publish", "content-type", "application/json",
                                     "-D", "publish", "user-property", "site", "b7",
                                     "-D", "publish", "message-expiry-interval", "3600"])
    assert r.returncode == 0, r.stderr
    m = w.get_topic("d/%s/p" % dev.id)
    assert m.prop("ContentType") == "application/json"
    assert m.prop("UserProperty") == [("site", "b7")]
    assert 0 < m.prop("MessageExpiryInterval", 0) <= 3600


@pytest.mark.parametrize("ver,proto", VERSIONS)
def test_mosquitto_retained_roundtrip(broker, device, subs, ver, proto):
    dev = device()
    r = pub(tls_args(broker, dev) + ["-V", ver, "-t", "d/%s/state" % dev.id, "-m", "online",
                                     "-r", "-q", "1"])
    assert r.returncode == 0, r.stderr
    # the device reads back its own retained state
    s = subs(tls_args(broker, dev) + ["-V", ver, "-t", "d/%s/state" % dev.id, "-C", "1",
                                      "-W", "15", "-F", "%r|%p"])
    s.wait_line(lambda l: l == "1|online", what="retained message")
    assert s.finish() == 0


def test_mosquitto_pub_without_certificate_fails(broker, device):
    dev = device()
    r = pub(["-h", mk.HOST, "-p", str(broker.port), "--cafile", dev.ca, "-i", dev.id,
             "-t", "d/%s/x" % dev.id, "-m", "x", "-q", "1"])
    assert r.returncode != 0


def test_mosquitto_pub_wrong_ca_fails(broker, pki):
    ca, key = pki.other_ca("cli")
    rogue = pki.issue("cli-rogue", ca_crt=ca, ca_key=key)
    r = pub(tls_args(broker, rogue) + ["-t", "d/cli-rogue/x", "-m", "x", "-q", "1"])
    assert r.returncode != 0


@pytest.mark.moat_only("client id must equal the certificate identity")
@pytest.mark.parametrize("ver", ["mqttv5", "mqttv311"])
def test_mosquitto_pub_wrong_client_id_refused(broker, device, ver):
    dev = device()
    args = tls_args(broker, dev)
    args[args.index("-i") + 1] = dev.id + "-imposter"
    r = pub(args + ["-V", ver, "-t", "d/%s/x" % dev.id, "-m", "x", "-q", "1"])
    assert r.returncode != 0
    out = (r.stdout + r.stderr).lower()
    assert "refused" in out or "identifier" in out or "not valid" in out, out


@pytest.mark.moat_only("denied publish answered with PUBACK 0x87")
def test_mosquitto_pub_v5_denied_publish_reported(broker, device):
    dev = device()
    r = pub(tls_args(broker, dev) + ["-V", "mqttv5", "-t", "d/someone-else/x", "-m", "x", "-q", "1"])
    assert "not authori" in (r.stdout + r.stderr).lower(), (r.returncode, r.stdout, r.stderr)


@pytest.mark.moat_only("device subscriptions outside c/X/ and d/X/ are refused")
@pytest.mark.parametrize("ver", ["mqttv5", "mqttv311"])
def test_mosquitto_sub_sys_denied(broker, device, subs, ver):
    dev = device()
    s = subs(tls_args(broker, dev) + ["-V", ver, "-t", "$SYS/#", "-W", "10"])
    s.wait_line(lambda l: "SUBACK" in l or "denied" in l.lower(), what="SUBACK")
    # mosquitto_sub prints the granted QoS list, e.g. "Subscribed (mid: 1): 135"
    s.wait_line(lambda l: ("135" in l) or ("128" in l) or "denied" in l.lower(),
                what="a refusal code in the SUBACK")


def test_mosquitto_rr_request_response(broker, device, client):
    dev = device()
    svc = client(listener="open")
    req_topic, resp_topic = "d/%s/rpc" % dev.id, "c/%s/rpc-resp" % dev.id
    assert svc.subscribe(req_topic, 1) == [1]

    done = threading.Event()

    def responder():
        m = svc.get_topic(req_topic, timeout=15)
        svc.publish(m.prop("ResponseTopic"), b"pong", qos=1,
                    properties=mk.props(mk.PacketTypes.PUBLISH,
                                        CorrelationData=m.prop("CorrelationData") or b""))
        done.set()
    t = threading.Thread(target=responder, daemon=True)
    t.start()
    r = subprocess.run(["mosquitto_rr"] + tls_args(broker, dev) +
                       ["-t", req_topic, "-e", resp_topic, "-m", "ping", "-W", "15"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    t.join(timeout=1)
    assert done.is_set(), "request never reached the responder: %s" % r.stderr
    assert r.returncode == 0 and r.stdout.strip() == "pong", (r.returncode, r.stdout, r.stderr)
