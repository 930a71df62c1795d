"""`moat init`: the data directory, its permissions, the CA and server
certificate, and the moat.conf it writes; CLI usage errors."""

import os
import re
import stat
import subprocess

import pytest

import mqttkit as mk

pytestmark = pytest.mark.moat_only("moat init / CLI")


def moat(moat_bin, *args, timeout=30):
    return subprocess.run([moat_bin] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def fresh(moat_bin, scratch, uid):
    d = os.path.join(scratch, uid("init"))
    p = moat(moat_bin, "init", "--dir", d, "--san", "gw.example.com", "--san", "10.9.8.7")
    assert p.returncode == 0, p.stderr
    return d


def x509_text(path):
    return mk.run(["openssl", "x509", "-in", path, "-noout", "-text"]).stdout


def test_files_and_modes(fresh):
    assert mode(fresh) == 0o700
    for f in ("ca.key", "ca.crt", "server.key", "server.crt", "moat.conf"):
        assert os.path.isfile(os.path.join(fresh, f)), f
    assert mode(os.path.join(fresh, "ca.key")) == 0o600
    assert mode(os.path.join(fresh, "server.key")) == 0o600
    for f in ("ca.crt", "server.crt", "moat.conf"):
        assert mode(os.path.join(fresh, f)) & 0o022 == 0, "%s writable by group/others" % f


def test_server_certificate_sans(fresh):
    text = x509_text(os.path.join(fresh, "server.crt"))
    san = re.search(r"X509v3 Subject Alternative Name:.*?\n\s*(.*)\n", text)
    assert san, text
    names = {n.strip() for n in san.group(1).split(",")}
    for want in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1",
                 "DNS:gw.example.com", "IP Address:10.9.8.7"):
        assert want in names, "%s missing from SANs %s" % (want, sorted(names))


def test_server_certificate_chains_to_ca(fresh):
    p = mk.run(["openssl", "verify", "-CAfile", os.path.join(fresh, "ca.crt"),
                "-purpose", "sslserver", os.path.join(fresh, "server.crt")], check=False)
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr


def test_ca_is_a_ca_and_server_is_not(fresh):
    ca = x509_text(os.path.join(fresh, "ca.crt"))
    assert re.search(r"CA:TRUE", ca), ca
    srv = x509_text(os.path.join(fresh, "server.crt"))
    assert not re.search(r"CA:TRUE", srv)


def test_keys_match_certificates(fresh):
    for base in ("ca", "server"):
        a = mk.run(["openssl", "x509", "-in", os.path.join(fresh, base + ".crt"), "-noout",
                    "-pubkey"]).stdout
        b = mk.run(["openssl", "pkey", "-in", os.path.join(fresh, base + ".key"), "-pubout"]).stdout
        assert a == b, "%s.key does not match %s.crt" % (base, base)


def test_every_init_generates_new_secrets(moat_bin, scratch, uid):
    keys = []
    for _ in range(2):
        d = os.path.join(scratch, uid("twice"))
        assert moat(moat_bin, "init", "--dir", d).returncode == 0
        with open(os.path.join(d, "ca.key"), "rb") as f:
            keys.append(f.read())
    assert keys[0] != keys[1]


def test_refuses_non_empty_dir(moat_bin, scratch, uid):
    d = os.path.join(scratch, uid("nonempty"))
    os.mkdir(d, 0o700)
    with open(os.path.join(d, "keep.txt"), "w") as f:
        f.write("precious")
    p = moat(moat_bin, "init", "--dir", d)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert os.listdir(d) == ["keep.txt"]
    with open(os.path.join(d, "keep.txt")) as f:
        assert f.read() == "precious"


def test_refuses_initialised_dir(fresh, moat_bin):
    with open(os.path.join(fresh, "ca.key"), "rb") as f:
        before = f.read()
    p = moat(moat_bin, "init", "--dir", fresh)
    assert p.returncode == 1
    with open(os.path.join(fresh, "ca.key"), "rb") as f:
        assert f.read() == before, "init overwrote an existing CA key"


def test_accepts_existing_empty_dir(moat_bin, scratch, uid):
    d = os.path.join(scratch, uid("empty"))
    os.mkdir(d, 0o700)
    p = moat(moat_bin, "init", "--dir", d)
    assert p.returncode == 0, p.stderr
    assert os.path.isfile(os.path.join(d, "ca.crt"))


def test_generated_conf_serves(fresh, moat_bin, make_broker, device):
    """The moat.conf that init writes is valid: serve it (ports moved to free
    loopback ports, nothing else changed)."""
    path = os.path.join(fresh, "moat.conf")
    with open(path) as f:
        text = f.read()
    port = mk.free_port()
    api_port = mk.free_port()
    text = re.sub(r"(?m)^bind\s*=.*$", "bind = 127.0.0.1", text)
    text = re.sub(r"(?m)^port\s*=.*$", "port = %d" % port, text, count=1)
    text = re.sub(r"(?m)^port\s*=\s*8443$", "port = %d" % api_port, text, count=1)
    assert len(re.findall(r"(?m)^port\s*=", text)) == 2, \
        "expected two active listeners: mqtts and the management API"
    assert re.search(r"(?m)^protocol\s*=\s*https$", text)
    with open(path, "w") as f:
        f.write(text)
    b = make_broker(name="initconf", start=False, datadir=fresh)
    b.port = port
    b.start(write_config=False)
    pki = mk.PKI(fresh, fresh + "-certs")
    dev = pki.issue("init-dev")
    c = mk.TClient(mk.HOST, port, dev.id, mk.V5, cert=dev)
    try:
        # secure by default: a CA-signed device the registry does not know
        # is refused (0x87) until it is registered
        assert c.connect(expect=None)[0] == 0x87
    finally:
        c.close()
    b.wait_log(r"connect_refused .*identity is not registered")
    # secure by default: no plaintext listener in the generated configuration
    assert not [l for l in b.log_lines() if "tls=off" in l]
    # the management API answers on its HTTPS listener
    import ssl
    import socket
    ctx = ssl.create_default_context(cafile=os.path.join(fresh, "ca.crt"))
    with socket.create_connection((mk.HOST, api_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=mk.HOST) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b'{"status":"ok"}')


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["init"], ["serve"], ["init", "--dir"],
                                  ["serve", "--bogus-flag", "x"]],
                         ids=["none", "unknown-cmd", "init-no-dir", "serve-no-dir", "dir-no-value",
                              "unknown-flag"])
def test_usage_errors_exit_2(moat_bin, args):
    p = moat(moat_bin, *args)
    assert p.returncode == 2, "moat %s: exit %s (usage errors exit 2)\n%s" % (
        " ".join(args), p.returncode, p.stderr)
