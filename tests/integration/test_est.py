"""
Enrollment over EST (RFC 7030) end to end, with clients nobody here wrote:
the key and the CSR are made with the openssl CLI, the CSR is posted with
curl, the PKCS#7 answer is unpacked with openssl, and the issued
certificate connects with mosquitto_pub while a paho client (enrolled the
same way) receives the message. Then what must be refused (spent, unknown
and expired tokens, a CSR for another id, a weak key, a disabled device, a
batch token past its uses), revocation (live sessions end, the CRL lists
the serial), decommissioning, and the CLI (`moat enroll-token`,
`moat cert list|revoke`, `moat device decommission`).

docs/enrollment.md describes the flow these tests follow.
"""

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import apikit as ak
import mqttkit as mk
from apikit import api_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("EST enrollment")

READERS_GROUP = "est-readers"
READER_POLICY = "est-temp-reader"


# --------------------------------------------------------------------------
# the device's side: openssl and curl
# --------------------------------------------------------------------------

def sh(cmd, check=True, timeout=60, **kw):
    """Run a command (a list, or a shell pipeline as a string)."""
    p = subprocess.run(cmd, shell=isinstance(cmd, str), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("command failed (%d): %s\nstdout: %s\nstderr: %s" % (
            p.returncode, cmd if isinstance(cmd, str) else " ".join(cmd),
            p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")))
    return p


KEYGEN = {
    "p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ed25519": ["-newkey", "ed25519"],
    "rsa2048": ["-newkey", "rsa:2048"],
    "rsa3072": ["-newkey", "rsa:3072"],
}


class Device:
    """A device's files: its key (made here, never sent), its CSR, the
    server's answer and the certificate unpacked from it."""

    def __init__(self, work, dev_id, key="p256", cn=None, pem=False, pipeline=False):
        self.id = dev_id
        self.base = os.path.join(work, ak.unique(dev_id + "-"))
        self.key = self.base + ".key"
        self.csr_der = self.base + ".csr.der"
        self.csr = self.base + ".csr.b64"
        self.crt = self.base + ".crt"
        self.body = self.base + ".p7.b64"
        self.headers = self.base + ".headers"
        cn = dev_id if cn is None else cn
        if pipeline:
            # literally the command of docs/enrollment.md (coreutils base64)
            sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
               "-keyout '%s' -subj /CN=%s -outform DER | base64 > '%s'"
               % (self.key, cn, self.csr))
        elif pem:
            sh(["openssl", "req", "-new"] + KEYGEN[key] +
               ["-nodes", "-keyout", self.key, "-subj", "/CN=" + cn, "-out", self.csr])
        else:
            # docs/enrollment.md: openssl req ... -outform DER | base64
            sh(["openssl", "req", "-new"] + KEYGEN[key] +
               ["-nodes", "-keyout", self.key, "-subj", "/CN=" + cn, "-outform", "DER",
                "-out", self.csr_der])
            sh(["openssl", "base64", "-e", "-in", self.csr_der, "-out", self.csr])

    def cert(self, ca):
        return mk.Cert(self.id, self.crt, self.key, ca)


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "HTTP %d %r %r" % (self.status, self.headers, self.body[:400])


def curl(server, path, out, headers_file, extra=()):
    """curl against the API listener; returns an Answer (status, the last
    response's headers, body bytes)."""
    p = sh(["curl", "-sS", "--max-time", "20", "--cacert", server.ca, "-o", out,
            "-D", headers_file, "-w", "%{http_code}"] + list(extra) + [server.url + path])
    status = int(p.stdout.decode().strip())
    with open(headers_file, "rb") as f:
        blocks = f.read().decode("latin-1").replace("\r\n", "\n").strip().split("\n\n")
    hdrs = []
    for line in blocks[-1].split("\n")[1:]:
        k, _, v = line.partition(":")
        hdrs.append((k.strip(), v.strip()))
    with open(out, "rb") as f:
        body = f.read()
    return Answer(status, hdrs, body)


def simpleenroll(server, dev, token, content_type="application/pkcs10"):
    extra = ["-X", "POST", "--data-binary", "@" + dev.csr]
    if token is not None:
        extra += ["-H", "Authorization: Bearer " + token]
    if content_type is not None:
        extra += ["-H", "Content-Type: " + content_type]
    return curl(server, "/.well-known/est/simpleenroll", dev.body, dev.headers, extra)


def unpack_pkcs7(b64_file, pem_out):
    """docs/enrollment.md: openssl base64 -d | openssl pkcs7 -inform DER
    -print_certs."""
    sh("openssl base64 -d -in '%s' | openssl pkcs7 -inform DER -print_certs -out '%s'"
       % (b64_file, pem_out))
    with open(pem_out) as f:
        pem = f.read()
    assert "-----BEGIN CERTIFICATE-----" in pem, pem
    return pem


def problem(a, status, name=None):
    assert a.status == status, "expected %d: %r" % (status, a)
    ct = a.header("Content-Type") or ""
    assert ct.startswith("application/problem+json"), a
    j = a.json()
    assert j.get("status") == status, a
    if name is not None:
        assert j.get("type") == ak.problem(name), a
    return j


def load_cert(path):
    from cryptography import x509
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def serial_of(path):
    return load_cert(path).serial_number


def same_serial(api_serial, n):
    return int(api_serial, 16) == n


# --------------------------------------------------------------------------
# the operator's side: the API
# --------------------------------------------------------------------------

class Est:
    def __init__(self, server, admin, work):
        self.s = server
        self.api = admin.api
        self.work = work

    def register(self, dev_id=None, state="registered", groups=None, status=201):
        body = {"id": dev_id or ak.unique("estd-"), "state": state}
        if groups is not None:
            body["groups"] = groups
        r = self.api.post("/api/v1/devices", body)
        assert r.status_code == status, ak.describe(r)
        return body["id"]

    def token(self, identity=None, group=None, uses=None, hours=None, status=201):
        body = {}
        if identity is not None:
            body["identity"] = identity
        if group is not None:
            body["group"] = group
        if uses is not None:
            body["uses"] = uses
        if hours is not None:
            body["expires_in_hours"] = hours
        r = self.api.post("/api/v1/enroll-tokens", body)
        assert r.status_code == status, ak.describe(r)
        return r.json()

    def device(self, dev_id, **kw):
        return Device(self.work, dev_id, **kw)

    def enroll(self, dev_id, token=None, **kw):
        """Enroll dev_id (a registered device) with a fresh per-device
        token unless one is given; returns the Device with its certificate."""
        if token is None:
            token = self.token(identity=dev_id)["token"]
        d = self.device(dev_id, **kw)
        a = simpleenroll(self.s, d, token)
        assert a.status == 200, a
        unpack_pkcs7(d.body, d.crt)
        return d

    def state(self, dev_id):
        r = self.api.get("/api/v1/devices/" + dev_id)
        assert r.status_code == 200, ak.describe(r)
        return r.json()["state"]

    def certificates(self, dev_id):
        r = self.api.get("/api/v1/certificates", params={"identity": dev_id})
        assert r.status_code == 200, ak.describe(r)
        return r.json()["items"]

    def client(self, d, name=None):
        return mk.TClient(mk.HOST, self.s.mqtt_port, d.id, mk.V5, cert=d.cert(self.s.ca),
                          name=name or d.id)

    def mosquitto_pub(self, d, topic, payload, timeout=20):
        return subprocess.run(
            ["mosquitto_pub", "-h", mk.HOST, "-p", str(self.s.mqtt_port), "--cafile", self.s.ca,
             "--cert", d.crt, "--key", d.key, "-i", d.id, "-t", topic, "-m", payload, "-q", "1",
             "-V", "mqttv5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=timeout)

    def db_exec(self, sql, *args):
        """Change the server's database behind its back (test set-up only)."""
        con = sqlite3.connect(os.path.join(self.s.dir, "moat.db"), timeout=30)
        try:
            with con:
                n = con.execute(sql, args).rowcount
        finally:
            con.close()
        return n


@pytest.fixture(scope="module")
def est(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "est")
    s.broker.conf["unknown_devices"] = "refuse"  # the default moat init writes
    s.start()
    try:
        adm = ak.setup_admin(s)
        work = os.path.join(scratch, "est-devices")
        os.makedirs(work, exist_ok=True)
        e = Est(s, adm, work)
        r = adm.api.request("PUT", "/api/v1/policies/" + READER_POLICY,
                            {"rules": ["allow subscribe d/+/temp"]})
        assert r.status_code in (200, 201), ak.describe(r)
        r = adm.api.post("/api/v1/groups", {"name": READERS_GROUP})
        assert r.status_code == 201, ak.describe(r)
        r = adm.api.post("/api/v1/groups/%s/policies" % READERS_GROUP, {"policy": READER_POLICY})
        assert r.status_code == 200, ak.describe(r)
        yield e
    finally:
        s.stop()


# --------------------------------------------------------------------------
# the happy path
# --------------------------------------------------------------------------

def test_cacerts_is_the_ca_certificate_and_csrattrs_is_empty(est):
    d = os.path.join(est.work, ak.unique("cacerts-"))
    a = curl(est.s, "/.well-known/est/cacerts", d + ".b64", d + ".h")
    assert a.status == 200, a
    assert (a.header("Content-Type") or "").startswith("application/pkcs7-mime"), a
    pem = unpack_pkcs7(d + ".b64", d + ".pem")
    got = load_cert(d + ".pem")
    assert pem.count("BEGIN CERTIFICATE") == 1, pem
    assert got == load_cert(est.s.ca)
    a = curl(est.s, "/.well-known/est/csrattrs", d + ".attrs", d + ".h2")
    assert a.status == 204, a
    assert a.body == b"", a


def test_enroll_with_openssl_and_curl_then_publish_with_mosquitto_pub(est):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pub_id = est.register(ak.unique("est-pub-"))
    sub_id = est.register(ak.unique("est-sub-"), groups=[READERS_GROUP])
    assert est.state(pub_id) == "registered"
    tok = est.token(identity=pub_id)
    assert tok["token"].startswith("moat_et_"), tok
    assert tok["identity"] == pub_id and tok["group"] is None and tok["uses_left"] == 1, tok

    pub = est.device(pub_id, pipeline=True)
    a = simpleenroll(est.s, pub, tok["token"])
    assert a.status == 200, a
    ct = a.header("Content-Type") or ""
    assert ct.startswith("application/pkcs7-mime") and "certs-only" in ct, a
    unpack_pkcs7(pub.body, pub.crt)

    # the certificate: the device's own key, CN and URI SAN, clientAuth, 90 days (cert_days)
    c = load_cert(pub.crt)
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pub_id
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["moat:device:" + pub_id]
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    days = (c.not_valid_after - c.not_valid_before).total_seconds() / 86400
    assert 89.9 <= days <= 90.1, (c.not_valid_before, c.not_valid_after)
    assert c.issuer == load_cert(est.s.ca).subject
    mod = sh("openssl x509 -in '%s' -noout -pubkey | openssl sha256" % pub.crt).stdout
    assert mod == sh("openssl pkey -in '%s' -pubout | openssl sha256" % pub.key).stdout
    sh(["openssl", "verify", "-CAfile", est.s.ca, "-purpose", "sslclient", pub.crt])

    # enrollment made it active, and the API knows the certificate
    assert est.state(pub_id) == "active"
    certs = est.certificates(pub_id)
    assert len(certs) == 1, certs
    assert same_serial(certs[0]["serial"], c.serial_number), (certs, c.serial_number)
    assert certs[0]["revoked"] is False and certs[0]["revoked_at"] is None, certs
    der = c.public_bytes(Encoding.DER)
    assert certs[0]["fingerprint"].replace(":", "").lower() == hashlib.sha256(der).hexdigest()
    toks = est.api.get("/api/v1/enroll-tokens", params={"limit": 200}).json()["items"]
    mine = [t for t in toks if t["id"] == tok["id"]]
    assert mine and mine[0]["uses_left"] == 0 and "token" not in mine[0], mine

    # a subscriber enrolled the same way receives what mosquitto_pub sends
    sub = est.enroll(sub_id)
    c = est.client(sub)
    try:
        c.connect()
        assert c.subscribe("d/%s/temp" % pub_id, qos=1) == [1]
        p = est.mosquitto_pub(pub, "d/%s/temp" % pub_id, "21")
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        m = c.get_topic("d/%s/temp" % pub_id, timeout=10)
        assert m.payload == b"21"
    finally:
        c.close()


def test_pem_csr_and_every_allowed_key_kind(est):
    d = est.register(ak.unique("est-pem-"))
    dev = est.device(d, pem=True)
    a = simpleenroll(est.s, dev, est.token(identity=d)["token"])
    assert a.status == 200, a
    unpack_pkcs7(dev.body, dev.crt)
    for kind in ("p384", "ed25519", "rsa3072"):
        d = est.register(ak.unique("est-%s-" % kind))
        dev = est.enroll(d, key=kind)
        assert est.state(d) == "active", kind
        sh(["openssl", "verify", "-CAfile", est.s.ca, dev.crt])


# --------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------

def test_spent_garbage_missing_and_expired_tokens_are_401(est):
    d = est.register(ak.unique("est-tok-"))
    tok = est.token(identity=d)["token"]
    a = simpleenroll(est.s, est.device(d), tok)
    assert a.status == 200, a
    # spent
    problem(simpleenroll(est.s, est.device(d), tok), 401, "unauthorized")
    # garbage, and one that only looks right
    problem(simpleenroll(est.s, est.device(d), "garbage"), 401)
    problem(simpleenroll(est.s, est.device(d), "moat_et_" + "A" * 43), 401)
    # an API token is not an enrollment token
    problem(simpleenroll(est.s, est.device(d),
                         ak.create_token(est.api, "operator")["token"]), 401)
    # none at all
    problem(simpleenroll(est.s, est.device(d), None), 401)
    # expired: age a fresh token in the server's database
    d2 = est.register(ak.unique("est-exp-"))
    t = est.token(identity=d2)
    assert est.db_exec("UPDATE enroll_tokens SET expires_at = 1 WHERE id = ?", t["id"]) == 1
    problem(simpleenroll(est.s, est.device(d2), t["token"]), 401)
    assert est.state(d2) == "registered"
    assert est.certificates(d2) == []


def test_unparsable_csr_is_400(est):
    d = est.register(ak.unique("est-bad-"))
    tok = est.token(identity=d, uses=3)["token"]
    dev = est.device(d)
    with open(dev.csr, "w") as f:
        f.write("this is not a certificate request\n")
    problem(simpleenroll(est.s, dev, tok), 400, "bad-request")
    with open(dev.csr, "w") as f:
        f.write("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n")  # base64, not a CSR
    problem(simpleenroll(est.s, dev, tok), 400)
    assert est.state(d) == "registered"


def test_csr_for_another_device_is_403(est):
    a_id = est.register(ak.unique("est-own-"))
    b_id = est.register(ak.unique("est-other-"))
    tok = est.token(identity=a_id)["token"]
    problem(simpleenroll(est.s, est.device(a_id, cn=b_id), tok), 403, "forbidden")
    assert est.state(a_id) == "registered" and est.state(b_id) == "registered"
    assert est.certificates(b_id) == []


def test_rsa_2048_key_is_403_and_does_not_spend_the_token(est):
    d = est.register(ak.unique("est-rsa-"))
    tok = est.token(identity=d)["token"]
    j = problem(simpleenroll(est.s, est.device(d, key="rsa2048"), tok), 403, "forbidden")
    assert "RSA" in json.dumps(j) or "key" in json.dumps(j).lower(), j
    assert est.certificates(d) == [] and est.state(d) == "registered"
    # the single use is still there for a proper key
    est.enroll(d, token=tok)
    assert est.state(d) == "active"


def test_oversized_request_is_413(est):
    d = est.register(ak.unique("est-big-"))
    tok = est.token(identity=d)["token"]
    dev = est.device(d)
    with open(dev.csr, "w") as f:
        f.write(("A" * 64 + "\n") * 600)  # 39 KiB of base64
    problem(simpleenroll(est.s, dev, tok), 413, "payload-too-large")


def test_disabled_or_quarantined_device_cannot_enroll(est):
    for state, start in (("disabled", "registered"), ("quarantined", "active")):
        d = est.register(ak.unique("est-%s-" % state[:3]), state=start)
        tok = est.token(identity=d)["token"]
        r = est.api.post("/api/v1/devices/%s/state" % d, {"state": state})
        assert r.status_code == 200, ak.describe(r)
        problem(simpleenroll(est.s, est.device(d), tok), 403, "forbidden")
        assert est.state(d) == state
        assert est.certificates(d) == []


def test_csr_must_be_signed_by_its_key(est):
    """Proof of possession: a request whose signature does not verify."""
    d = est.register(ak.unique("est-pop-"))
    tok = est.token(identity=d, uses=2)["token"]
    dev = est.device(d)
    with open(dev.csr_der, "rb") as f:
        der = bytearray(f.read())
    der[-1] ^= 0x01  # the last octet of the signature's s
    with open(dev.csr_der, "wb") as f:
        f.write(bytes(der))
    sh(["openssl", "base64", "-e", "-in", dev.csr_der, "-out", dev.csr])
    p = sh(["openssl", "req", "-inform", "DER", "-in", dev.csr_der, "-noout", "-verify"],
           check=False)
    assert b"verify failure" in p.stderr or p.returncode != 0, p
    problem(simpleenroll(est.s, dev, tok), 403, "forbidden")
    assert est.state(d) == "registered" and est.certificates(d) == []


def test_batch_token_registers_devices_from_their_csrs(est):
    g = ak.unique("est-batch-")
    r = est.api.post("/api/v1/groups", {"name": g})
    assert r.status_code == 201, ak.describe(r)
    t = est.token(group=g, uses=2)
    assert t["group"] == g and t["identity"] is None and t["uses_left"] == 2, t
    ids = [ak.unique("est-b-") for _ in range(3)]
    for dev_id in ids[:2]:
        dev = est.device(dev_id)
        a = simpleenroll(est.s, dev, t["token"])
        assert a.status == 200, a
        unpack_pkcs7(dev.body, dev.crt)
        r = est.api.get("/api/v1/devices/" + dev_id)
        assert r.status_code == 200, ak.describe(r)
        j = r.json()
        assert j["kind"] == "device" and g in j["groups"], j
        assert j["state"] == "active", j
        assert len(est.certificates(dev_id)) == 1
    # the third use is one too many; the device is not registered
    problem(simpleenroll(est.s, est.device(ids[2]), t["token"]), 401)
    assert est.api.get("/api/v1/devices/" + ids[2]).status_code == 404


def test_batch_token_cannot_take_over_an_existing_id(est):
    """A batch token registers new devices; it must not mint a certificate
    for an id that already exists (someone else's device, enrolled or
    waiting for its own token), nor for a service."""
    victim = est.register(ak.unique("est-victim-"))
    est.enroll(victim)
    waiting = est.register(ak.unique("est-waiting-"))
    r = est.api.post("/api/v1/devices", {"id": ak.unique("est-svc-"), "kind": "service"})
    assert r.status_code == 201, ak.describe(r)
    svc = r.json()["id"]
    g = ak.unique("est-tg-")
    assert est.api.post("/api/v1/groups", {"name": g}).status_code == 201
    t = est.token(group=g, uses=10)
    for dev_id in (victim, waiting, svc):
        state = est.state(dev_id)  # unchanged by the refused enrollment
        a = simpleenroll(est.s, est.device(dev_id), t["token"])
        assert a.status in (403, 409), (dev_id, a)
        assert est.state(dev_id) == state
        r = est.api.get("/api/v1/devices/" + dev_id)
        assert g not in r.json()["groups"], r.json()
    assert len(est.certificates(victim)) == 1
    assert est.certificates(waiting) == [] and est.certificates(svc) == []
    # and a CN that is no valid id is refused too
    problem(simpleenroll(est.s, est.device("x", cn="Bad_Id"), t["token"]), 403, "forbidden")


def test_batch_token_of_a_deleted_group_is_refused_cleanly(est):
    g = ak.unique("est-gone-")
    assert est.api.post("/api/v1/groups", {"name": g}).status_code == 201
    t = est.token(group=g)
    r = est.api.delete("/api/v1/groups/" + g)
    assert r.status_code == 204, ak.describe(r)
    dev = est.device(ak.unique("est-orphan-"))
    a = simpleenroll(est.s, dev, t["token"])
    assert 400 <= a.status < 500, a
    assert est.api.get("/api/v1/devices/" + dev.id).status_code == 404


def test_single_use_token_under_concurrent_enrollments(est):
    """Twelve devices race with one single-use token: one certificate."""
    d = est.register(ak.unique("est-race-"))
    tok = est.token(identity=d)["token"]
    devs = [est.device(d) for _ in range(12)]
    procs = [subprocess.Popen(
        ["curl", "-sS", "--max-time", "30", "--cacert", est.s.ca, "-o", x.body, "-w",
         "%{http_code}", "-H", "Authorization: Bearer " + tok, "-H",
         "Content-Type: application/pkcs10", "--data-binary", "@" + x.csr,
         est.s.url + "/.well-known/est/simpleenroll"], stdout=subprocess.PIPE) for x in devs]
    codes = sorted(p.communicate(timeout=60)[0].decode() for p in procs)
    assert codes == ["200"] + ["401"] * 11, codes
    assert len(est.certificates(d)) == 1


def test_token_requests_are_validated(est):
    d = est.register(ak.unique("est-val-"))
    g = ak.unique("est-vg-")
    assert est.api.post("/api/v1/groups", {"name": g}).status_code == 201
    for body, field in (({}, None), ({"identity": d, "group": g}, None),
                        ({"identity": d, "uses": 0}, "uses"),
                        ({"identity": d, "uses": 100001}, "uses"),
                        ({"identity": d, "expires_in_hours": 0}, "expires_in_hours"),
                        ({"identity": d, "expires_in_hours": 721}, "expires_in_hours"),
                        ({"identity": "est-nobody"}, "identity"), ({"group": "est-no-group"},
                                                                   "group")):
        r = est.api.post("/api/v1/enroll-tokens", body)
        ak.assert_problem(r, 422, "validation", field)
    t = est.token(identity=d, uses=100000, hours=720)
    assert t["uses_left"] == 100000, t
    # only its hash is kept
    con = sqlite3.connect(os.path.join(est.s.dir, "moat.db"), timeout=30)
    try:
        rows = con.execute("SELECT * FROM enroll_tokens").fetchall()
    finally:
        con.close()
    assert rows and not any(t["token"] in repr(row) or t["token"][8:] in repr(row)
                            for row in rows)


# --------------------------------------------------------------------------
# revocation and the CRL
# --------------------------------------------------------------------------

def test_revoked_certificate_is_disconnected_and_listed_on_the_crl(est):
    d = est.register(ak.unique("est-rev-"))
    dev = est.enroll(d)
    serial = serial_of(dev.crt)
    c = est.client(dev)
    try:
        c.connect()
        assert c.subscribe("d/%s/#" % d, qos=1) == [1]
        [cert] = est.certificates(d)
        t0 = time.monotonic()
        r = est.api.post("/api/v1/certificates/%s/revoke" % cert["serial"],
                         {"reason": "key compromise"})
        assert r.status_code == 200, ak.describe(r)
        j = r.json()
        assert same_serial(j["serial"], serial) and j["identity"] == d, j
        assert j["revoked"] is True and j["revoked_at"] and j["reason"] == "key compromise", j
        assert c.wait_disconnect(timeout=2) == 0x98  # administrative action
        assert time.monotonic() - t0 < 2.5
    finally:
        c.close()
    # it can never connect again: paho and mosquitto_pub both fail
    c2 = est.client(dev, name=d + "-again")
    try:
        assert c2.connect(expect=None)[0] != 0
    finally:
        c2.close()
    p = est.mosquitto_pub(dev, "d/%s/temp" % d, "1")
    assert p.returncode != 0, (p.stdout, p.stderr)
    assert est.certificates(d)[0]["revoked"] is True

    # the CRL, signed by the CA, lists the serial
    base = os.path.join(est.work, ak.unique("crl-"))
    a = curl(est.s, "/crl", base + ".der", base + ".h")
    assert a.status == 200, a
    assert (a.header("Content-Type") or "").startswith("application/pkix-crl"), a
    text = sh(["openssl", "crl", "-inform", "DER", "-in", base + ".der", "-noout",
               "-text"]).stdout.decode()
    listed = [int(x, 16) for x in re.findall(r"Serial Number:\s*([0-9A-Fa-f]+)", text)]
    assert serial in listed, text
    p = sh(["openssl", "crl", "-inform", "DER", "-in", base + ".der", "-noout",
            "-CAfile", est.s.ca], check=False)
    assert p.returncode == 0 and b"verify OK" in p.stdout + p.stderr, p


def test_revoke_takes_the_serial_as_openssl_prints_it(est):
    d = est.register(ak.unique("est-case-"))
    dev = est.enroll(d)
    printed = sh(["openssl", "x509", "-in", dev.crt, "-noout", "-serial"]).stdout.decode()
    serial = printed.strip().split("=", 1)[1]
    r = est.api.post("/api/v1/certificates/%s/revoke" % serial, {})
    assert r.status_code == 200, ak.describe(r)
    assert est.certificates(d)[0]["revoked"] is True


def test_revoking_leaves_the_other_certificates_alone(est):
    d = est.register(ak.unique("est-two-"))
    old = est.enroll(d)
    # a second certificate for the same device (a new token, a new key)
    new = est.enroll(d)
    assert serial_of(old.crt) != serial_of(new.crt)
    certs = {int(x["serial"], 16): x for x in est.certificates(d)}
    assert set(certs) == {serial_of(old.crt), serial_of(new.crt)}
    r = est.api.post("/api/v1/certificates/%s/revoke" % certs[serial_of(old.crt)]["serial"], {})
    assert r.status_code == 200, ak.describe(r)
    c = est.client(new)
    try:
        c.connect()
        assert c.publish("d/%s/temp" % d, b"2", qos=1) == 0
    finally:
        c.close()
    r = est.api.post("/api/v1/certificates/%032x/revoke" % 0xDEADBEEF, {})
    ak.assert_problem(r, 404, "not-found")


# --------------------------------------------------------------------------
# decommissioning
# --------------------------------------------------------------------------

def test_decommission_disconnects_revokes_and_is_final(est):
    d = est.register(ak.unique("est-dec-"))
    dev = est.enroll(d)
    spare = est.token(identity=d)  # unused: decommissioning burns it
    c = est.client(dev)
    try:
        # a persistent session and a retained message: both are removed
        c.connect(clean_start=False, properties=mk.props(PacketTypes.CONNECT,
                                                         SessionExpiryInterval=3600))
        assert c.subscribe("d/%s/cmd" % d, qos=1) == [1]
        assert c.publish("d/%s/state" % d, b"on", qos=1, retain=True) == 0
        r = est.api.post("/api/v1/devices/%s/decommission" % d)
        assert r.status_code == 200, ak.describe(r)
        j = r.json()
        assert j["identity"]["id"] == d and j["identity"]["state"] == "decommissioned", j
        assert j["removed"] == {"certificates_revoked": 1, "tokens_burned": 1, "sessions": 1,
                                "retained": 1}, j
        c.wait_disconnect(timeout=2)
    finally:
        c.close()
    # the retained message is gone for everyone
    reader = est.enroll(est.register(ak.unique("est-rd-"), groups=[READERS_GROUP]))
    rc = est.client(reader)
    try:
        rc.connect()
        r = est.api.request("PUT", "/api/v1/policies/" + READER_POLICY,
                            {"rules": ["allow subscribe d/+/temp", "allow subscribe d/+/state"]})
        assert r.status_code == 200, ak.describe(r)
        assert rc.subscribe("d/%s/state" % d, qos=1) == [1]
        assert rc.subscribe("d/%s/temp" % d, qos=1) == [1]
        time.sleep(0.5)
        assert rc.pending() == [], rc.pending()
    finally:
        rc.close()
    assert est.state(d) == "decommissioned"
    assert all(x["revoked"] for x in est.certificates(d))
    # the certificate is dead
    p = est.mosquitto_pub(dev, "d/%s/temp" % d, "1")
    assert p.returncode != 0, (p.stdout, p.stderr)
    # the spare token was burned, and no new one can be made for it
    problem(simpleenroll(est.s, est.device(d), spare["token"]), 401)
    r = est.api.post("/api/v1/enroll-tokens", {"identity": d})
    assert r.status_code in (409, 422), ak.describe(r)
    # a batch token cannot bring the id back either
    g = ak.unique("est-dg-")
    assert est.api.post("/api/v1/groups", {"name": g}).status_code == 201
    t = est.token(group=g)
    a = simpleenroll(est.s, est.device(d), t["token"])
    assert a.status in (403, 409), a
    assert est.state(d) == "decommissioned"
    # and it is terminal
    r = est.api.post("/api/v1/devices/%s/decommission" % d)
    ak.assert_problem(r, 409, "conflict")
    # the id can come back only as a new device: registered, fresh, and the
    # old certificate stays dead
    r = est.api.post("/api/v1/devices", {"id": d})
    assert r.status_code == 201 and r.json()["state"] == "registered", ak.describe(r)
    assert all(c["revoked"] for c in est.certificates(d))
    assert est.api.post("/api/v1/devices/%s/state" % d, {"state": "active"}).status_code == 200
    p = est.mosquitto_pub(dev, "d/%s/temp" % d, "1")
    assert p.returncode != 0, (p.stdout, p.stderr)


def test_enrollment_is_audited(est):
    d = est.register(ak.unique("est-aud-"))
    t = est.token(identity=d, uses=2)
    dev = est.enroll(d, token=t["token"])
    serial = serial_of(dev.crt)
    problem(simpleenroll(est.s, est.device(d), "moat_et_not-a-token"), 401)
    [c] = est.certificates(d)
    assert est.api.post("/api/v1/certificates/%s/revoke" % c["serial"],
                        {"reason": "audit me"}).status_code == 200
    assert est.api.post("/api/v1/devices/%s/decommission" % d).status_code == 200
    entries = ak.audit_all(est.api)
    by = {}
    for e in entries:
        by.setdefault(e["action"], []).append(e)
    [tc] = [e for e in by["enroll_token.create"] if e["target"] == d]
    assert tc["actor"] == "user:" + ak.ADMIN_NAME and ak.detail(tc)["id"] == t["id"], tc
    [en] = [e for e in by["est.enroll"] if e["target"] == d]
    assert en["actor"] == "enroll-token:" + t["id"] and en["outcome"] == "ok", en
    assert int(ak.detail(en)["serial"], 16) == serial, en
    [rv] = [e for e in by["certificate.revoke"] if e["target"] == c["serial"]]
    assert ak.detail(rv)["reason"] == "audit me", rv
    [dc] = [e for e in by["device.decommission"] if e["target"] == d]
    assert ak.detail(dc)["tokens_burned"] == 1, dc  # the second use of t
    # refusals are summed per window, like other unauthenticated failures
    ak.wait_audit(est.api, lambda es: [e for e in es if e["outcome"] == "denied"],
                  what="est.enroll_refused", action="est.enroll_refused")
    assert not any(t["token"] in json.dumps(e) for e in ak.audit_all(est.api)), \
        "a token secret in the audit log"


def test_refused_enrollment_names_the_caller_not_the_device(est):
    """A refusal that names a device is the caller's act: the token is the
    actor, not the device (which may be the victim); an anonymous caller is
    "anonymous" even when its CSR names a device."""
    d = est.register(ak.unique("est-victim-"))
    t = est.token(identity=d)
    wrong = est.device(ak.unique("est-other-"))  # a CSR for another id
    problem(simpleenroll(est.s, wrong, t["token"]), 403, "forbidden")
    problem(simpleenroll(est.s, est.device(d), "moat_et_forged"), 401)
    [e] = ak.wait_audit(est.api, lambda es: [x for x in es if x["target"] == d],
                        what="refusal naming " + d, action="est.enroll_refused")
    assert e["actor"] == "enroll-token:" + t["id"] and e["outcome"] == "denied", e
    ak.wait_audit(est.api, lambda es: [x for x in es if x["actor"] == "anonymous"],
                  what="anonymous refusal", action="est.enroll_refused")
    assert [x for x in ak.audit_all(est.api, action="est.enroll_refused")
            if x["target"] == d] == [e]


def get_crl(est):
    from cryptography import x509
    base = os.path.join(est.work, ak.unique("crl-"))
    a = curl(est.s, "/crl", base + ".der", base + ".h")
    assert a.status == 200, a
    return a.body, x509.load_der_x509_crl(a.body)


def test_crl_is_complete_cached_and_drops_expired_serials(est):
    """More revoked serials than one CA message used to carry are all
    listed; an expired revoked certificate is not; the CRL is signed once
    per change, not once per GET."""
    now_ms = int(time.time() * 1000)
    n = 4100  # one re-enrollment cycle of a 4,100-device fleet
    rows = [("%032x" % (0xc0ffee0000000000 + i), "crl-bulk-%d" % i, "00" * 32,
             now_ms - 1000, now_ms + 86400000, now_ms - 1000, now_ms - 500, "superseded")
            for i in range(n)]
    expired = "%032x" % 0xdead00000001
    rows.append((expired, "crl-expired", "00" * 32, now_ms - 10 * 86400000,
                 now_ms - 86400000, now_ms - 10 * 86400000, now_ms - 5 * 86400000, "x"))
    con = sqlite3.connect(os.path.join(est.s.dir, "moat.db"), timeout=30)
    try:
        with con:
            con.executemany("INSERT INTO certificates (serial, identity, fingerprint, "
                            "not_before, not_after, issued_at, revoked_at, reason) VALUES "
                            "(?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        con.close()
    # a revocation through the API: the cached CRL is stale from now on
    d = est.register(ak.unique("est-crl-"))
    dev = est.enroll(d)
    [c] = est.certificates(d)
    mark = est.s.broker.mark()
    assert est.api.post("/api/v1/certificates/%s/revoke" % c["serial"], {}).status_code == 200
    der1, crl = get_crl(est)
    listed = {r.serial_number for r in crl}
    assert {int(r[0], 16) for r in rows[:n]} <= listed, len(listed)
    assert serial_of(dev.crt) in listed
    assert int(expired, 16) not in listed
    # cached: the same signed bytes again, and the CA signed once
    der2, _ = get_crl(est)
    assert der2 == der1
    signed = [l for l in est.s.broker.log_lines(since=mark) if "event=crl_signed" in l]
    assert len(signed) == 1, signed
    # every issued certificate names the CRL
    from cryptography import x509
    cdp = load_cert(dev.crt).extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value
    urls = [n.value for dp in cdp for n in dp.full_name]
    assert urls == [est.s.url + "/crl"], urls


def test_revocation_and_decommissioning_survive_a_restart(api_server, scratch):
    s = api_server("est-restart", start=False)
    s.broker.conf["unknown_devices"] = "refuse"
    s.start()
    work = os.path.join(scratch, ak.unique("est-restart-devices-"))
    os.makedirs(work)
    e = Est(s, ak.setup_admin(s), work)
    revoked = e.enroll(e.register(ak.unique("est-r-")))
    [c] = e.certificates(revoked.id)
    assert e.api.post("/api/v1/certificates/%s/revoke" % c["serial"], {}).status_code == 200
    gone = e.enroll(e.register(ak.unique("est-g-")))
    assert e.api.post("/api/v1/devices/%s/decommission" % gone.id).status_code == 200
    fine = e.enroll(e.register(ak.unique("est-f-")))
    s.stop()
    s.start()
    for dev, ok in ((revoked, False), (gone, False), (fine, True)):
        p = e.mosquitto_pub(dev, "d/%s/temp" % dev.id, "1")
        assert (p.returncode == 0) == ok, (dev.id, p.returncode, p.stderr)
    base = os.path.join(work, "crl")
    a = curl(s, "/crl", base + ".der", base + ".h")
    assert a.status == 200, a
    text = sh(["openssl", "crl", "-inform", "DER", "-in", base + ".der", "-noout",
               "-text"]).stdout.decode()
    listed = {int(x, 16) for x in re.findall(r"Serial Number:\s*([0-9A-Fa-f]+)", text)}
    assert {serial_of(revoked.crt), serial_of(gone.crt)} <= listed, text
    assert serial_of(fine.crt) not in listed


# --------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------

class Cli:
    def __init__(self, est, role="operator"):
        self.bin = est.s.moat_bin
        self.env = dict(os.environ)
        home = os.path.join(est.work, ak.unique("cli-home-"))
        os.makedirs(home)
        self.env.update({"XDG_CONFIG_HOME": home, "MOAT_SERVER": est.s.url,
                         "MOAT_CA": est.s.ca,
                         "MOAT_TOKEN": ak.create_token(est.api, role)["token"]})

    def run(self, *args, code=0, stdin=""):
        p = subprocess.run([self.bin] + list(args), input=stdin, capture_output=True,
                           text=True, env=self.env, timeout=60)
        if code is not None:
            assert p.returncode == code, "moat %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(args), p.returncode, code, p.stdout, p.stderr)
        return p


@pytest.fixture(scope="module")
def cli(est):
    return Cli(est)


def test_cli_help_and_usage_errors(cli):
    for args in (("enroll-token", "--help"), ("enroll-token", "create", "--help"),
                 ("enroll-token", "list", "--help"), ("cert", "--help"),
                 ("cert", "list", "--help"), ("cert", "revoke", "--help"),
                 ("device", "decommission", "--help")):
        p = cli.run(*args)
        assert p.stdout.startswith("usage: moat " + args[0]), (args, p.stdout)
    assert "--yes" in cli.run("device", "decommission", "--help").stdout
    assert "issue" in cli.run("cert", "--help").stdout
    assert cli.run("cert", "issue", "--help").stdout.startswith("usage: moat cert issue")
    assert "enroll-token" in cli.run("--help").stdout
    for args in (("enroll-token",), ("enroll-token", "create"),
                 ("enroll-token", "create", "--device", "a1", "--group", "g1"),
                 ("enroll-token", "create", "--device", "Bad_Id"),
                 ("enroll-token", "create", "--device", "a1", "--uses", "0"),
                 ("enroll-token", "create", "--device", "a1", "--uses", "100001"),
                 ("enroll-token", "create", "--group", "g1", "--hours", "721"),
                 ("enroll-token", "create", "--group", "g1", "--hours", "-1"),
                 ("enroll-token", "list", "extra"),
                 ("cert", "revoke"), ("cert", "revoke", "xyz"), ("cert", "revoke", "a" * 41),
                 ("cert", "list", "--device", "Bad_Id"), ("cert", "frobnicate"),
                 ("device", "decommission"), ("device", "decommission", "a1", "b1")):
        p = cli.run(*args, code=2)
        assert p.stderr.startswith("moat") or p.stderr.startswith("usage"), (args, p.stderr)


def test_cli_enroll_token_cert_and_decommission(cli, est):
    d = est.register(ak.unique("est-cli-"))
    p = cli.run("enroll-token", "create", "--device", d, "--hours", "2")
    m = re.search(r"^token:\s+(moat_et_\S+)$", p.stdout, re.M)
    assert m, p.stdout
    assert "not shown" in p.stderr, p.stderr
    assert re.search(r"^identity:\s+%s$" % re.escape(d), p.stdout, re.M), p.stdout
    tok = m.group(1)
    p = cli.run("enroll-token", "list")
    assert d in p.stdout and "moat_et_" not in p.stdout, p.stdout
    j = json.loads(cli.run("enroll-token", "list", "--json").stdout)
    assert any(t["identity"] == d for t in j["items"]) and j["next_cursor"] is None, j
    dev = est.device(d)
    a = simpleenroll(est.s, dev, tok)
    assert a.status == 200, a
    unpack_pkcs7(dev.body, dev.crt)

    # a batch token from the CLI, as JSON
    g = ak.unique("est-cg-")
    assert est.api.post("/api/v1/groups", {"name": g}).status_code == 201
    j = json.loads(cli.run("enroll-token", "create", "--group", g, "--uses", "5",
                           "--json").stdout)
    assert j["group"] == g and j["uses_left"] == 5 and j["token"].startswith("moat_et_"), j

    serial = serial_of(dev.crt)
    p = cli.run("cert", "list", "--device", d)
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["SERIAL", "IDENTITY"], p.stdout
    assert len(lines) == 2 and int(lines[1].split()[0], 16) == serial, p.stdout
    api_serial = lines[1].split()[0]
    p = cli.run("cert", "revoke", api_serial, "--reason", "lost")
    assert "revoked certificate" in p.stdout, p.stdout
    j = json.loads(cli.run("cert", "list", "--device", d, "--json").stdout)
    assert j["items"][0]["revoked"] is True and j["items"][0]["reason"] == "lost", j
    p = cli.run("cert", "revoke", "%032x" % 0xBADC0DE, code=1)
    assert "not found" in p.stderr.lower(), p.stderr

    # decommission: refused without --yes off a terminal; nothing changes
    p = cli.run("device", "decommission", d, code=2)
    assert "--yes" in p.stderr, p.stderr
    assert est.state(d) == "active"
    p = cli.run("device", "decommission", d, "--yes")
    assert p.stdout.startswith("decommissioned %s: 1 certificate(s) revoked" % d) or \
        p.stdout.startswith("decommissioned %s: 0 certificate(s) revoked" % d), p.stdout
    assert est.state(d) == "decommissioned"
    p = cli.run("device", "decommission", d, "--yes", code=1)
    assert "moat device decommission:" in p.stderr, p.stderr


def test_cli_decommission_asks_on_a_terminal(cli, est):
    """On a terminal the id must be typed back; a wrong answer changes
    nothing."""
    import pty

    d = est.register(ak.unique("est-tty-"))

    def run_tty(answer):
        pid, fd = pty.fork()
        if pid == 0:  # child: stdin/stdout/stderr are the terminal
            try:
                os.execve(cli.bin, [cli.bin, "device", "decommission", d], cli.env)
            finally:
                os._exit(127)
        out = b""
        sent = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not sent and b"confirm:" in out:
                os.write(fd, answer.encode() + b"\n")
                sent = True
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

    code, out = run_tty("not-" + d)
    assert code == 1 and "not confirmed" in out, out
    assert est.state(d) == "registered"
    code, out = run_tty(d)
    assert code == 0 and "decommissioned %s" % d in out, out
    assert est.state(d) == "decommissioned"


def simplereenroll(server, dev, current=None):
    """POST a new CSR to simplereenroll with curl, authenticating with the
    current certificate (TLS client authentication) when given."""
    extra = ["-X", "POST", "--data-binary", "@" + dev.csr, "-H",
             "Content-Type: application/pkcs10"]
    if current is not None:
        extra += ["--cert", current.crt, "--key", current.key]
    return curl(server, "/.well-known/est/simplereenroll", dev.body, dev.headers, extra)


def test_reenroll_with_the_current_certificate_then_the_old_one_is_revoked(est):
    dev_id = est.register(ak.unique("est-re-"))
    old = est.enroll(dev_id)
    # without a client certificate: 401
    new = est.device(dev_id)
    problem(simplereenroll(est.s, new), 401, "unauthorized")
    # with the current one: a new certificate for a new key
    a = simplereenroll(est.s, new, current=old)
    assert a.status == 200, a
    unpack_pkcs7(new.body, new.crt)
    assert serial_of(new.crt) != serial_of(old.crt)
    certs = {c["serial"]: c for c in est.certificates(dev_id)}
    assert len(certs) == 2 and not any(c["revoked"] for c in certs.values()), certs
    # both work during the grace period
    c_old = est.client(old, name=dev_id + "-old")
    try:
        c_old.connect()
        # a CSR for another id is refused even with a valid certificate
        other = est.device(ak.unique("est-other-"))
        problem(simplereenroll(est.s, other, current=old), 403, "forbidden")
        # the grace period ends (aged in the database): the old certificate is
        # revoked within a couple of seconds and its live session closed
        assert est.db_exec("UPDATE certificates SET revoke_at = 1 WHERE revoked_at IS NULL "
                           "AND identity = ? AND serial <> ?", dev_id,
                           [s for s in certs if same_serial(s, serial_of(new.crt))][0]) == 1
        c_old.wait_disconnect(timeout=10)
    finally:
        c_old.close()
    revoked = [c for c in est.certificates(dev_id) if c["revoked"]]
    assert len(revoked) == 1 and revoked[0]["reason"] == "superseded", revoked
    assert not same_serial(revoked[0]["serial"], serial_of(new.crt))
    # the new certificate connects; the old one never again
    c_new = est.client(new)
    try:
        c_new.connect()
    finally:
        c_new.close()
    c2 = est.client(old, name=dev_id + "-old2")
    try:
        assert c2.connect(expect=None)[0] == 0x87
    finally:
        c2.close()
    # and a revoked certificate cannot re-enroll
    problem(simplereenroll(est.s, est.device(dev_id), current=old), 403, "forbidden")


def test_device_list_expiring(est, moat_bin):
    dev_id = est.register(ak.unique("est-exp-"))
    est.enroll(dev_id)
    ids = lambda q: [d["id"] for d in est.api.get("/api/v1/devices", params=q).json()["items"]]
    assert dev_id in ids({"expiring": 100, "limit": 200})  # 90-day certificate
    assert dev_id not in ids({"expiring": 30, "limit": 200})
    r = est.api.get("/api/v1/devices/" + dev_id).json()
    assert r["cert_expires_at"] is not None
    problem(Answer(*(lambda r: (r.status_code, list(r.headers.items()), r.content))(
        est.api.get("/api/v1/devices", params={"expiring": "soon"}))), 400)
    tok = est.api.post("/api/v1/tokens", {"name": "exp", "role": "viewer"}).json()["token"]
    env = dict(os.environ, MOAT_TOKEN=tok, MOAT_SERVER=est.s.url, MOAT_CA=est.s.ca)
    p = subprocess.run([moat_bin, "device", "list", "--expiring", "100d"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and dev_id in p.stdout and "CERT-EXPIRES" in p.stdout, p
    p = subprocess.run([moat_bin, "device", "list", "--expiring", "30d", "--json"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and dev_id not in p.stdout, p
    p = subprocess.run([moat_bin, "device", "list", "--expiring", "soon"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p


def same_key_csr(work, factory, dev_id):
    """A CSR signed with the factory certificate's own key."""
    base = os.path.join(work, ak.unique(dev_id + "-samekey"))
    sh(["openssl", "req", "-new", "-key", factory.key, "-subj", "/CN=" + dev_id,
        "-outform", "DER", "-out", base + ".der"])
    sh(["openssl", "base64", "-e", "-in", base + ".der", "-out", base + ".b64"])
    dev = est_device_files(base, dev_id)
    return dev


def est_device_files(base, dev_id):
    class D:
        pass
    d = D()
    d.id, d.csr, d.body, d.headers = dev_id, base + ".b64", base + ".p7", base + ".h"
    return d


def test_factory_enrollment_needs_a_new_key_and_stays_in_scope(est):
    work = est.work
    mname = ak.unique("scoped")
    mca = make_manufacturer(work, mname)
    grp = ak.unique("fac-grp-")
    assert est.api.post("/api/v1/groups", {"name": grp}).status_code == 201
    with open(mca[1]) as f:
        pem = f.read()
    r = est.api.post("/api/v1/manufacturer-cas",
                     {"name": mname, "certificate": pem, "devices": ["scoped-a-*", "exact-1"]})
    assert r.status_code == 201, ak.describe(r)
    # in scope, but the CSR reuses the factory key: refused, with the reason
    a_id = est.register(ak.unique("scoped-a-"))
    birth = factory_cert(work, mca, a_id)
    a = factory_enroll(est, same_key_csr(work, birth, a_id), birth)
    problem(a, 403, "forbidden")
    assert "new key" in a.json()["detail"], a
    assert est.state(a_id) == "registered"
    # a new key: accepted
    a = factory_enroll(est, est.device(a_id), birth)
    assert a.status == 200, a
    # a registered device outside the CA's ids: refused
    out_id = est.register(ak.unique("scoped-b-"))
    a = factory_enroll(est, est.device(out_id), factory_cert(work, mca, out_id))
    problem(a, 403, "forbidden")
    assert "may not enroll" in a.json()["detail"], a
    assert est.state(out_id) == "registered"
    # a CA scoped to a group: its members only
    gname = ak.unique("grpca")
    gca = make_manufacturer(work, gname)
    with open(gca[1]) as f:
        r = est.api.post("/api/v1/manufacturer-cas",
                         {"name": gname, "certificate": f.read(), "group": grp})
    assert r.status_code == 201, ak.describe(r)
    member = est.register(ak.unique("gm-"), groups=[grp])
    stranger = est.register(ak.unique("gs-"))
    a = factory_enroll(est, est.device(member), factory_cert(work, gca, member))
    assert a.status == 200, a
    problem(factory_enroll(est, est.device(stranger), factory_cert(work, gca, stranger)),
            403, "forbidden")
    listed = {m["name"]: m for m in est.api.get("/api/v1/manufacturer-cas").json()["items"]}
    assert listed[gname]["group"] == grp and listed[gname]["devices"] is None
    assert listed[mname]["devices"] == ["scoped-a-*", "exact-1"]
    for n in (mname, gname):
        assert est.api.delete("/api/v1/manufacturer-cas/" + n).status_code == 204


def test_cert_issue_records_the_real_expiry(est, moat_bin):
    """`moat cert issue --days 5` records the certificate's own notAfter,
    so `device list --expiring 30d` finds it (it used to record ten years)."""
    dev_id = ak.unique("est-issue5-")
    p = est.s.moat("cert", "issue", "--dir", est.s.dir, "--device", dev_id, "--days", "5")
    assert p.returncode == 0, p
    crt = load_cert(os.path.join(est.s.dir, "devices", dev_id + ".crt"))
    [c] = est.certificates(dev_id)
    assert c["not_after"].startswith(crt.not_valid_after.strftime("%Y-%m-%dT%H:%M:%S")), c
    from cryptography import x509
    cdp = crt.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for dp in cdp for n in dp.full_name] == [est.s.url + "/crl"]
    ids = lambda q: [d["id"] for d in est.api.get("/api/v1/devices", params=q).json()["items"]]
    assert dev_id in ids({"expiring": 30, "limit": 200})
    assert dev_id not in ids({"expiring": 4, "limit": 200})
    tok = est.api.post("/api/v1/tokens", {"name": "exp5", "role": "viewer"}).json()["token"]
    env = dict(os.environ, MOAT_TOKEN=tok, MOAT_SERVER=est.s.url, MOAT_CA=est.s.ca)
    p = subprocess.run([moat_bin, "device", "list", "--expiring", "30d"],
                       env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and dev_id in p.stdout, p


def make_manufacturer(work, name):
    """A manufacturer's CA (made with the openssl CLI, as a factory would)."""
    key, crt = os.path.join(work, name + "-ca.key"), os.path.join(work, name + "-ca.crt")
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=" + name + " CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
        "keyUsage=critical,keyCertSign,cRLSign"])
    return key, crt


def factory_cert(work, mca, dev_id):
    """The birth certificate a factory burns into the device."""
    ca_key, ca_crt = mca
    base = os.path.join(work, ak.unique(dev_id + "-factory"))
    sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + dev_id])
    sh(["openssl", "x509", "-req", "-in", base + ".csr", "-CA", ca_crt, "-CAkey", ca_key,
        "-CAcreateserial", "-out", base + ".crt", "-days", "30"])
    return mk.Cert(dev_id, base + ".crt", base + ".key", None)


def factory_enroll(est, dev, factory):
    extra = ["-X", "POST", "--data-binary", "@" + dev.csr, "-H",
             "Content-Type: application/pkcs10", "--cert", factory.cert, "--key", factory.key]
    return curl(est.s, "/.well-known/est/simpleenroll", dev.body, dev.headers, extra)


def test_factory_certificate_enrollment(est):
    work = est.work
    acme = make_manufacturer(work, ak.unique("acme"))
    rogue = make_manufacturer(work, ak.unique("rogue"))
    dev_id = est.register(ak.unique("est-fac-"))
    birth = factory_cert(work, acme, dev_id)
    # before the operator registers the manufacturer: the TLS handshake
    # itself refuses the factory certificate (curl fails)
    p = subprocess.run(["curl", "-sS", "--cacert", est.s.ca, "--cert", birth.cert, "--key",
                        birth.key, "-o", "/dev/null", "-w", "%{http_code}",
                        est.s.url + "/healthz"], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 or p.stdout != "200", p
    with open(acme[1]) as f:
        pem = f.read()
    # a manufacturer CA is registered for what it made, never the fleet
    problem(Answer(*(lambda r: (r.status_code, list(r.headers.items()), r.content))(
        est.api.post("/api/v1/manufacturer-cas", {"name": "acme", "certificate": pem}))),
        422, "validation")
    r = est.api.post("/api/v1/manufacturer-cas",
                     {"name": "acme", "certificate": pem, "devices": ["est-fac-*"]})
    assert r.status_code == 201, ak.describe(r)
    assert r.json()["devices"] == ["est-fac-*"] and r.json()["group"] is None, r.json()
    assert est.api.get("/api/v1/manufacturer-cas").json()["items"][0]["name"] == "acme"
    # the birth identity is exchanged for an operational certificate
    dev = est.device(dev_id)
    a = factory_enroll(est, dev, birth)
    assert a.status == 200, a
    unpack_pkcs7(dev.body, dev.crt)
    assert est.state(dev_id) == "active"
    c = est.client(dev)
    try:
        c.connect()
    finally:
        c.close()
    # the factory certificate itself never connects to MQTT
    fc = mk.TClient(mk.HOST, est.s.mqtt_port, dev_id, mk.V5,
                    cert=mk.Cert(dev_id, birth.cert, birth.key, est.s.ca), name=dev_id + "-f")
    try:
        assert fc.connect(expect=None)[0] != 0
    finally:
        fc.close()
    # a CSR for another id with the same birth certificate: 403
    other = est.device(ak.unique("est-fac-other-"))
    problem(factory_enroll(est, other, birth), 403, "forbidden")
    # a factory certificate of an unknown device: 403
    stranger = factory_cert(work, acme, ak.unique("est-fac-stranger-"))
    problem(factory_enroll(est, est.device(stranger.id), stranger), 403, "forbidden")
    # a factory certificate from a manufacturer nobody registered: refused
    rogue_birth = factory_cert(work, rogue, dev_id)
    p = subprocess.run(["curl", "-sS", "--cacert", est.s.ca, "--cert", rogue_birth.cert,
                        "--key", rogue_birth.key, "-X", "POST", "--data-binary",
                        "@" + est.device(dev_id).csr, "-o", "/dev/null", "-w", "%{http_code}",
                        est.s.url + "/.well-known/est/simpleenroll"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 or p.stdout in ("401", "403"), p
    # a factory certificate cannot be used to re-enroll
    class Birth:
        crt, key = birth.cert, birth.key
    problem(simplereenroll(est.s, est.device(dev_id), current=Birth), 401, "unauthorized")
    # deleting the manufacturer: its certificates stop working for enrollment
    assert est.api.delete("/api/v1/manufacturer-cas/acme").status_code == 204
    p = subprocess.run(["curl", "-sS", "--cacert", est.s.ca, "--cert", birth.cert, "--key",
                        birth.key, "-X", "POST", "--data-binary", "@" + dev.csr, "-o",
                        "/dev/null", "-w", "%{http_code}",
                        est.s.url + "/.well-known/est/simpleenroll"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 or p.stdout in ("401", "403"), p


def test_a_revocation_right_after_a_cached_crl_is_listed(est):
    """The cached CRL goes stale with every committed registry change: a
    CRL fetched (and cached) before a revocation is not served after it."""
    d = est.register(ak.unique("est-stale-"))
    dev = est.enroll(d)
    [c] = est.certificates(d)
    get_crl(est)  # signed and cached now, after the enrollment
    _, cached = get_crl(est)
    assert serial_of(dev.crt) not in {r.serial_number for r in cached}
    assert est.api.post("/api/v1/certificates/%s/revoke" % c["serial"], {}).status_code == 200
    _, crl = get_crl(est)
    assert serial_of(dev.crt) in {r.serial_number for r in crl}
    # and a decommission's revocations too
    d2 = est.register(ak.unique("est-stale2-"))
    dev2 = est.enroll(d2)
    get_crl(est)
    assert est.api.post("/api/v1/devices/%s/decommission" % d2).status_code == 200
    _, crl = get_crl(est)
    assert serial_of(dev2.crt) in {r.serial_number for r in crl}


def test_manufacturer_cas_are_written_by_the_registry_service(est):
    """Creating and deleting a manufacturer CA goes through the registry
    service: one audit entry each in the same transaction (with the scope as
    given), a duplicate name is a 409 that writes nothing, and the delete is
    audited too."""
    work = est.work
    name = ak.unique("svcca")
    mca = make_manufacturer(work, name)
    with open(mca[1]) as f:
        pem = f.read()
    body = {"name": name, "certificate": pem, "devices": ["svc-a-*", "svc-exact"]}
    assert est.api.post("/api/v1/manufacturer-cas", body).status_code == 201
    ak.assert_problem(est.api.post("/api/v1/manufacturer-cas", body), 409, "conflict")
    assert est.api.delete("/api/v1/manufacturer-cas/" + name).status_code == 204
    entries = ak.audit_all(est.api)
    # one create entry: the refused duplicate wrote none
    [cr] = [e for e in entries if e["action"] == "manufacturer_ca.create" and e["target"] == name]
    assert cr["actor"] == "user:" + ak.ADMIN_NAME and cr["outcome"] == "ok", cr
    assert ak.detail(cr)["devices"] == ["svc-a-*", "svc-exact"], cr
    assert ak.detail(cr)["group"] is None and len(ak.detail(cr)["fingerprint"]) > 0, cr
    [de] = [e for e in entries if e["action"] == "manufacturer_ca.delete" and e["target"] == name]
    assert de["actor"] == "user:" + ak.ADMIN_NAME, de
    ak.assert_problem(est.api.delete("/api/v1/manufacturer-cas/" + name), 404, "not-found")
