"""moat.conf validation: a bad line makes `moat serve` exit 1 with
"moat.conf:LINE: ... fix: ..." on stderr; unsafe listeners are refused;
a plaintext listener warns at every start."""

import os
import re
import subprocess

import pytest

import mqttkit as mk

pytestmark = pytest.mark.moat_only("moat.conf validation")


def base_conf(b):
    return mk.moat_conf_text(b.conf, b.listeners())


def with_line(text, section, line):
    """Insert `line` right after the [section] header; return (text, lineno)."""
    lines = text.splitlines()
    i = lines.index("[%s]" % section)
    lines.insert(i + 1, line)
    return "\n".join(lines) + "\n", i + 2


def replace_key(text, section, key, value):
    """Replace key's value in section; return (text, lineno)."""
    lines = text.splitlines()
    i = lines.index("[%s]" % section) + 1
    while not lines[i].startswith("["):
        if lines[i].split("=")[0].strip() == key:
            lines[i] = "%s = %s" % (key, value)
            return "\n".join(lines) + "\n", i + 1
        i += 1
    raise KeyError(key)


def serve_expect_failure(b, text, timeout=10):
    with open(os.path.join(b.dir, "moat.conf"), "w") as f:
        f.write(text)
    os.chmod(os.path.join(b.dir, "moat.conf"), 0o600)
    p = subprocess.Popen(b.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError("moat serve kept running with a bad config; stderr:\n%s" % err)
    assert "event=ready" not in err, "started with a bad config:\n%s" % err
    return p.returncode, err


@pytest.fixture
def cfg(make_broker):
    return make_broker(name="cfg", start=False)


CASES = [
    ("unknown-key", "broker", "bogus_key = 1"),
    ("unknown-key-tls", "tls", "password = hunter2"),
    ("unknown-key-listener", "listener.mqtts", "backlog = 10"),
    ("no-equals", "broker", "this line has no equals sign"),
    ("unknown-section", None, "[nonsense]"),
    ("bad-resumption-tls", "tls", "tls_resumption = sometimes"),
    ("bad-resumption-listener", "listener.mqtts", "tls_resumption = 2"),
]


@pytest.mark.parametrize("name,section,line", CASES, ids=[c[0] for c in CASES])
def test_bad_line_reported_with_file_line_and_fix(cfg, name, section, line):
    text = base_conf(cfg)
    if section is None:
        text = text + line + "\n"
        lineno = len(text.splitlines())
    else:
        text, lineno = with_line(text, section, line)
    code, err = serve_expect_failure(cfg, text)
    assert code == 1, "exit %s; stderr:\n%s" % (code, err)
    assert re.search(r"moat\.conf:%d:" % lineno, err), "no moat.conf:%d: in:\n%s" % (lineno, err)
    assert "fix" in err.lower(), "no fix suggested:\n%s" % err


BAD_VALUES = [
    ("broker", "workers", "many"),
    ("broker", "workers", "-1"),
    ("broker", "max_packet_size", "10"),
    ("broker", "max_packet_size", "99999999999"),
    ("broker", "max_keepalive", "70000"),
    ("broker", "receive_maximum", "0"),
    ("broker", "max_inflight", "70000"),
    ("broker", "max_connections", "0"),
    ("broker", "max_queued_messages", "lots"),
    ("log", "level", "loud"),
    ("listener.mqtts", "port", "70000"),
    ("listener.mqtts", "port", "http"),
    ("listener.mqtts", "tls", "maybe"),
    ("listener.mqtts", "require_client_cert", "sometimes"),
    ("listener.mqtts", "policy", "allow-all"),
    ("listener.mqtts", "bind", "not-an-address"),
]


@pytest.mark.parametrize("section,key,value", BAD_VALUES,
                         ids=["%s-%s" % (k, v) for _, k, v in BAD_VALUES])
def test_bad_value_reported(cfg, section, key, value):
    text, lineno = replace_key(base_conf(cfg), section, key, value)
    code, err = serve_expect_failure(cfg, text)
    assert code == 1, "exit %s; stderr:\n%s" % (code, err)
    assert re.search(r"moat\.conf:%d:" % lineno, err), "no moat.conf:%d: in:\n%s" % (lineno, err)
    assert "fix" in err.lower(), "no fix suggested:\n%s" % err


@pytest.mark.parametrize("listener,settings", [
    ("open", {"bind": "0.0.0.0"}),                      # tls = off, open policy
    ("open", {"bind": "0.0.0.0", "policy": "default"}),  # tls = off alone
    ("mqtts", {"bind": "0.0.0.0", "policy": "open"}),    # open policy alone, with TLS
    ("open", {"bind": "::"}),
], ids=["plain-open-any", "plain-any", "open-policy-any", "plain-open-v6-any"])
def test_unsafe_listener_on_non_loopback_refused(cfg, listener, settings):
    ls = cfg.listeners()
    ls[listener].update(settings)
    text = mk.moat_conf_text(cfg.conf, ls)
    header = text.splitlines().index("[listener.%s]" % listener) + 1
    key_lines = [i + 1 for i, l in enumerate(text.splitlines())
                 if i + 1 > header and l.split("=")[0].strip() in ("bind", "tls", "policy")][:3]
    code, err = serve_expect_failure(cfg, text)
    assert code == 1, "exit %s; stderr:\n%s" % (code, err)
    m = re.search(r"moat\.conf:(\d+):", err)
    assert m, "no moat.conf:LINE: in:\n%s" % err
    assert int(m.group(1)) in [header] + key_lines, "line %s not in the listener section" % m.group(1)
    assert "fix" in err.lower()


def test_missing_certificate_file(cfg):
    text, _ = replace_key(base_conf(cfg), "tls", "cert", "missing.crt")
    code, err = serve_expect_failure(cfg, text)
    assert code == 1
    assert "missing.crt" in err, err


def test_unreadable_data_dir(make_broker, scratch):
    b = make_broker(name="nodir", start=False, datadir=os.path.join(scratch, "does-not-exist"))
    p = subprocess.run(b.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=10)
    assert p.returncode == 1, p.stderr


def test_port_in_use_fails(cfg):
    import socket
    s = socket.socket()
    s.bind((mk.HOST, 0))
    s.listen(1)
    try:
        ls = cfg.listeners()
        ls["mqtts"]["port"] = s.getsockname()[1]
        code, err = serve_expect_failure(cfg, mk.moat_conf_text(cfg.conf, ls))
        assert code == 1, err
    finally:
        s.close()


def test_plaintext_listener_warns_at_start(make_broker):
    b = make_broker(name="warn")
    lines = b.log_lines()
    warn = [l for l in lines if "level=warn" in l and re.search(r"\bopen\b", l)]
    assert warn, "no warning for the tls = off listener 'open':\n%s" % "\n".join(lines)
    # at every start
    b.stop()
    b.start(write_config=False)
    lines = b.log_lines()
    assert [l for l in lines if "level=warn" in l and re.search(r"\bopen\b", l)]


def test_no_warning_without_plaintext_listener(make_broker):
    b = make_broker(name="nowarn", start=False)
    ls = b.listeners()
    del ls["open"]
    b.write_config(mk.moat_conf_text(b.conf, ls))
    b.start(write_config=False)
    assert not [l for l in b.log_lines() if "level=warn" in l and "plaintext" in l.lower()]


def test_ipv6_loopback_listener(make_broker, device):
    port6 = mk.free_port(mk.socket.AF_INET6, "::1")
    make_broker(name="v6", extra_listeners={
        "v6": {"bind": "::1", "port": port6, "tls": "on", "require_client_cert": "on",
               "policy": "default"}})
    dev = device()
    ctx = mk.client_ssl_context(dev.ca, dev.cert, dev.key)
    s = mk.socket.create_connection(("::1", port6), timeout=mk.WAIT)
    t = ctx.wrap_socket(s, server_hostname="::1")
    t.sendall(mk.connect_pkt(dev.id))
    c = mk.RawConn.__new__(mk.RawConn)
    c.s, c.buf, c.closed = t, b"", False
    ack = c.expect(mk.CONNACK)
    assert ack.reason() == 0
    t.close()


def test_world_readable_key_refused(cfg):
    """Keys are checked to be private (0600) at start (ARCHITECTURE.md)."""
    os.chmod(os.path.join(cfg.dir, "server.key"), 0o644)
    code, err = serve_expect_failure(cfg, base_conf(cfg))
    assert code == 1, "started with a world-readable server.key"
    assert "server.key" in err
