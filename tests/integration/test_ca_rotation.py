"""
CA rotation with overlap (docs/ca-rotation.md): a new CA is introduced next
to the old one, devices move to it by EST re-enrollment while both are
trusted, then the old one is retired with a SIGHUP.
"""

import os
import shutil
import signal
import subprocess

import pytest

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("CA rotation")


def sh(cmd):
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    assert p.returncode == 0, (cmd, p.stderr)
    return p.stdout


def curl(server, path, ca, extra):
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", ca, "-o", "-", "-w",
                        "\n%{http_code}"] + extra + [server.url + path],
                       capture_output=True, timeout=30)
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code or 0), body


def p7_to_pem(b64, out):
    der = subprocess.run(["openssl", "base64", "-d"], input=b64, capture_output=True,
                         check=True).stdout
    pem = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-print_certs"], input=der,
                         capture_output=True, check=True).stdout
    with open(out, "wb") as f:
        f.write(pem)


def issuer(path):
    return sh(["openssl", "x509", "-in", path, "-noout", "-issuer"]).decode().strip()


def new_csr(work, dev_id, name):
    key, csr = os.path.join(work, name + ".key"), os.path.join(work, name + ".csr")
    der = sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", key, "-subj", "/CN=" + dev_id, "-outform", "DER"])
    with open(csr, "wb") as f:
        f.write(subprocess.run(["openssl", "base64", "-e"], input=der, capture_output=True,
                               check=True).stdout)
    return key, csr


def test_rotate_the_ca_with_overlap(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "ca-rotation")
    s.broker.conf["unknown_devices"] = "refuse"
    s.start()
    work = os.path.join(scratch, ak.unique("rot-"))
    os.makedirs(work)
    old_ca = os.path.join(work, "old-ca.crt")
    shutil.copy(s.ca, old_ca)
    try:
        adm = ak.setup_admin(s)
        dev = "rot-dev-1"
        assert adm.api.post("/api/v1/devices", {"id": dev}).status_code == 201
        tok = adm.api.post("/api/v1/enroll-tokens", {"identity": dev}).json()["token"]
        key1, csr1 = new_csr(work, dev, "gen1")
        code, body = curl(s, "/.well-known/est/simpleenroll", old_ca,
                          ["-X", "POST", "-H", "Authorization: Bearer " + tok, "-H",
                           "Content-Type: application/pkcs10", "--data-binary", "@" + csr1])
        assert code == 200, body
        crt1 = os.path.join(work, "gen1.crt")
        p7_to_pem(body, crt1)
        assert "Moat CA" in issuer(crt1)

        # 1. a new CA, made offline (here with openssl); ca.crt becomes a
        #    bundle trusting both, ca.key the new key; restart (the CA
        #    process loads its key at start)
        new_key, new_crt = os.path.join(work, "new-ca.key"), os.path.join(work, "new-ca.crt")
        sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", new_key, "-out", new_crt, "-days", "3650", "-subj",
            "/CN=Moat CA 2027", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign"])
        s.stop()
        with open(os.path.join(s.dir, "ca.crt"), "w") as f:
            f.write(open(new_crt).read() + open(old_ca).read())
        shutil.copy(new_key, os.path.join(s.dir, "ca.key"))
        os.chmod(os.path.join(s.dir, "ca.key"), 0o600)
        s.start()
        both = os.path.join(work, "both.crt")
        shutil.copy(os.path.join(s.dir, "ca.crt"), both)

        # 2. the device's old certificate still connects during the overlap
        c = mk.TClient(mk.HOST, s.mqtt_port, dev, mk.V5, cert=mk.Cert(dev, crt1, key1, both),
                       name=dev + "-old")
        try:
            c.connect()
        finally:
            c.close()

        # 3. the device re-enrolls with its old certificate: the new one
        #    comes from the new CA
        key2, csr2 = new_csr(work, dev, "gen2")
        code, body = curl(s, "/.well-known/est/simplereenroll", both,
                          ["-X", "POST", "--cert", crt1, "--key", key1, "-H",
                           "Content-Type: application/pkcs10", "--data-binary", "@" + csr2])
        assert code == 200, body
        crt2 = os.path.join(work, "gen2.crt")
        p7_to_pem(body, crt2)
        assert "Moat CA 2027" in issuer(crt2)
        sh(["openssl", "verify", "-CAfile", new_crt, crt2])

        # 4. the old CA is retired: ca.crt holds the new CA only; SIGHUP
        with open(os.path.join(s.dir, "ca.crt"), "w") as f:
            f.write(open(new_crt).read())
        mark = s.broker.mark()
        s.broker.signal(signal.SIGHUP)
        s.broker.wait_log(r"event=reload ok=1", since=mark)
        new = mk.TClient(mk.HOST, s.mqtt_port, dev, mk.V5, cert=mk.Cert(dev, crt2, key2, both),
                         name=dev + "-new")
        try:
            new.connect()
            assert new.publish("d/%s/t" % dev, b"1", qos=1) == 0
        finally:
            new.close()
        old = mk.TClient(mk.HOST, s.mqtt_port, dev, mk.V5, cert=mk.Cert(dev, crt1, key1, both),
                         name=dev + "-retired")
        try:
            assert old.connect(expect=None)[0] != 0, "a certificate of the retired CA connected"
        finally:
            old.close()
    finally:
        s.stop()


def served_cert(server):
    """The certificate the HTTPS listener presents, as a cryptography object."""
    import socket
    import ssl
    from cryptography import x509
    ctx = ssl.create_default_context(cafile=server.ca)
    with socket.create_connection((mk.HOST, server.api_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=mk.HOST) as t:
            return x509.load_der_x509_certificate(t.getpeercert(binary_form=True))


MAX_LIFETIME = 397 * 86400


def test_server_certificate_lifetime_and_renewal_at_start(moat_bin, scratch):
    """moat init's server certificate spans at most 397 days, backdating
    included; a server certificate near its end is renewed by the key process
    when moat serve starts (same names, same key), written to server.crt
    and served at once."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    s = ak.ApiServer(moat_bin, scratch, "srv-renew")
    crt_path = os.path.join(s.dir, "server.crt")
    with open(crt_path, "rb") as f:
        orig = x509.load_pem_x509_certificate(f.read())
    span = (orig.not_valid_after - orig.not_valid_before).total_seconds()
    assert span <= MAX_LIFETIME, span
    # re-sign the same certificate to expire in 10 days (test set-up reads
    # ca.key; the server never does outside its key process)
    with open(os.path.join(s.dir, "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(s.ca, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    now = datetime.datetime.utcnow()
    b = (x509.CertificateBuilder().subject_name(orig.subject).issuer_name(ca.subject)
         .public_key(orig.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=380))
         .not_valid_after(now + datetime.timedelta(days=10)))
    for ext in orig.extensions:
        b = b.add_extension(ext.value, ext.critical)
    short = b.sign(ca_key, hashes.SHA256())
    with open(crt_path, "wb") as f:
        f.write(short.public_bytes(serialization.Encoding.PEM))
    s.start()
    try:
        s.broker.wait_log(r"event=server_cert_renewed")
        got = served_cert(s)
        left = (got.not_valid_after - datetime.datetime.utcnow()).total_seconds()
        assert left > 390 * 86400, got.not_valid_after
        assert (got.not_valid_after - got.not_valid_before).total_seconds() <= MAX_LIFETIME
        assert got.serial_number != short.serial_number
        assert got.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
            orig.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        assert got.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
            orig.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        eku = got.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
        with open(crt_path, "rb") as f:
            assert x509.load_pem_x509_certificate(f.read()).serial_number == got.serial_number
        # a fresh certificate is left alone at the next start
        s.stop()
        mark = s.broker.mark()
        s.start()
        assert served_cert(s).serial_number == got.serial_number
        assert not [l for l in s.broker.log_lines(since=mark) if "server_cert_renewed" in l]
    finally:
        s.stop()
