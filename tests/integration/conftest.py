"""
Fixtures for Moat's integration tests.

Environment:
  MOAT_BIN            path of the moat binary (default <repo>/build/moat)
  MOAT_ITEST_TARGET   "moat" (default) or "mosquitto": run the generic MQTT
                      tests against Debian's mosquitto to prove the tests
                      themselves; moat-specific tests are skipped then.
  MOAT_ITEST_KEEP=1   keep the scratch directory (/tmp/itest/run-*) afterwards.
  MOAT_ITEST_RUN_ALL=1  with the mosquitto target: do not skip moat-only tests
  MOAT_ITEST_WAIT     default event timeout in seconds (5)
"""

import os
import re
import shutil
import sys
import tempfile
import threading

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mqttkit as mk  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("MOAT_ITEST_TARGET", "moat").strip().lower()
MOAT_BIN = os.path.abspath(os.environ.get("MOAT_BIN", os.path.join(REPO, "build", "moat")))
SCRATCH_ROOT = "/tmp/itest"

if TARGET not in ("moat", "mosquitto"):
    raise pytest.UsageError("MOAT_ITEST_TARGET must be moat or mosquitto, not %r" % TARGET)

_ACTIVE_BROKERS = []  # for failure reports
_lock = threading.Lock()


def pytest_configure(config):
    config.addinivalue_line("markers", "moat_only(reason): needs moat itself (skipped against mosquitto)")


def pytest_report_header(config):
    return "moat itest target: %s%s" % (TARGET, (" (%s)" % MOAT_BIN) if TARGET == "moat" else "")


def pytest_collection_modifyitems(config, items):
    # MOAT_ITEST_RUN_ALL=1 runs moat-only tests against mosquitto too, to see
    # them fail where the reference broker differs from Moat's contract.
    if TARGET == "moat" or os.environ.get("MOAT_ITEST_RUN_ALL") == "1":
        return
    for item in items:
        m = item.get_closest_marker("moat_only")
        if m is not None:
            reason = m.args[0] if m.args else "moat-specific behaviour"
            item.add_marker(pytest.mark.skip(reason="moat only: %s" % reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        with _lock:
            brokers = list(_ACTIVE_BROKERS)
        for b in brokers:
            state = "running" if b.alive() else "EXITED code=%s" % (b.proc.poll() if b.proc else None)
            rep.sections.append(("%s stderr tail (%s, %s)" % (b.name, state, b.log_path), b.tail(30)))


# --------------------------------------------------------------------------
# session-wide material
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def target():
    return TARGET


@pytest.fixture(scope="session")
def moat_bin():
    if not (os.path.isfile(MOAT_BIN) and os.access(MOAT_BIN, os.X_OK)):
        pytest.fail("moat binary not found at %s (build it, set MOAT_BIN, or run with "
                    "MOAT_ITEST_TARGET=mosquitto)" % MOAT_BIN, pytrace=False)
    return MOAT_BIN


@pytest.fixture(scope="session")
def scratch():
    os.makedirs(SCRATCH_ROOT, exist_ok=True)
    d = tempfile.mkdtemp(prefix="run-", dir=SCRATCH_ROOT)
    yield d
    if os.environ.get("MOAT_ITEST_KEEP") != "1":
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def master_dir(scratch, target):
    """A data directory initialised once (moat init, or openssl for the
    reference broker); brokers run on copies of it, so one CA signs all."""
    d = os.path.join(scratch, "master")
    if target == "moat":
        if not (os.path.isfile(MOAT_BIN) and os.access(MOAT_BIN, os.X_OK)):
            pytest.fail("moat binary not found at %s (build it, set MOAT_BIN, or run with "
                        "MOAT_ITEST_TARGET=mosquitto)" % MOAT_BIN, pytrace=False)
        p = mk.run([MOAT_BIN, "init", "--dir", d], check=False)
        if p.returncode != 0:
            pytest.fail("moat init --dir %s failed (%d): %s" % (d, p.returncode, p.stderr),
                        pytrace=False)
    else:
        mk.make_reference_pki(d)
    return d


@pytest.fixture(scope="session")
def pki(master_dir, scratch):
    return mk.PKI(master_dir, os.path.join(scratch, "certs"))


_dir_n = [0]


def copy_datadir(master_dir, scratch, name):
    with _lock:
        _dir_n[0] += 1
        d = os.path.join(scratch, "%s-%d" % (name, _dir_n[0]))
    os.mkdir(d, 0o700)
    for f in os.listdir(master_dir):
        if f in ("moat.conf",):
            continue
        src = os.path.join(master_dir, f)
        if os.path.isfile(src):
            shutil.copy2(src, os.path.join(d, f))
    return d


@pytest.fixture(scope="session")
def new_datadir(master_dir, scratch):
    """Factory: a fresh data directory with the master's CA and server keys."""
    return lambda name="data": copy_datadir(master_dir, scratch, name)


class _Shared:
    broker = None


@pytest.fixture(scope="session")
def _shared_broker(target, master_dir, scratch):
    yield _Shared
    b = _Shared.broker
    if b is not None:
        b.stop()
        with _lock:
            if b in _ACTIVE_BROKERS:
                _ACTIVE_BROKERS.remove(b)


@pytest.fixture
def broker(_shared_broker, target, master_dir, scratch):
    """The shared broker (default config). Checked to be alive after each test;
    if it died during the test, the test errors and the broker is restarted."""
    b = _shared_broker.broker
    if b is None or not b.alive():
        if b is not None:
            with _lock:
                if b in _ACTIVE_BROKERS:
                    _ACTIVE_BROKERS.remove(b)
        b = mk.Broker(target, MOAT_BIN, copy_datadir(master_dir, scratch, "shared"), name="broker")
        b.start()
        _shared_broker.broker = b
        with _lock:
            _ACTIVE_BROKERS.append(b)
    yield b
    if not b.alive():
        pytest.fail("broker died during the test (exit %s); stderr tail:\n%s"
                    % (b.proc.poll(), b.tail(40)), pytrace=False)


@pytest.fixture
def make_broker(target, new_datadir):
    """Factory for a dedicated broker: make_broker(broker_conf={...}, start=True)."""
    made = []

    def make(broker_conf=None, start=True, name="custom", extra_listeners=None, datadir=None):
        b = mk.Broker(target, MOAT_BIN, datadir or new_datadir(name), name=name,
                      broker_conf=broker_conf, extra_listeners=extra_listeners)
        made.append(b)
        with _lock:
            _ACTIVE_BROKERS.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in made:
        b.stop()
        with _lock:
            if b in _ACTIVE_BROKERS:
                _ACTIVE_BROKERS.remove(b)


# --------------------------------------------------------------------------
# identities and clients
# --------------------------------------------------------------------------

_id_n = [0]


def _unique(request, prefix):
    with _lock:
        _id_n[0] += 1
        n = _id_n[0]
    name = request.node.name.lower()
    name = re.sub(r"^test_", "", name)
    name = re.sub(r"[^a-z0-9._-]+", "-", name).strip("-.")
    return ("%s%d-%s" % (prefix, n, name))[:40].rstrip("-.")


@pytest.fixture
def uid(request):
    """Factory for unique, valid device-id-shaped names: uid('x')."""
    return lambda prefix="u": _unique(request, prefix)


@pytest.fixture
def device(pki, request):
    """Factory: device(suffix='', **issue_kw) -> Cert with a unique valid id."""
    def make(suffix="", **kw):
        did = _unique(request, "d")
        if suffix:
            did = (did[:40] + "-" + suffix)[:64]
        return pki.issue(did, **kw)
    return make


@pytest.fixture
def client(broker, request):
    """Factory for paho clients on a broker.

    client(cert)                    -> v5 over mTLS as cert.id, connected
    client(cert, protocol=mk.V311)  -> v3.1.1
    client(listener='open')         -> plaintext, policy open, unique client id
    client(..., connect=False)      -> not connected yet (call .connect())
    client(..., on=other_broker)    -> on another broker
    """
    made = []

    def make(cert=None, protocol=mk.V5, listener=None, client_id=None, connect=True,
             on=None, clean_session=None, **connect_kw):
        b = on or broker
        if listener is None:
            listener = "mqtts" if cert is not None else "open"
        if client_id is None:
            client_id = cert.id if cert is not None else _unique(request, "svc")
        if listener == "mqtts":
            c = mk.TClient(mk.HOST, b.port, client_id, protocol, cert=cert,
                           ca=(cert.ca if cert else os.path.join(b.dir, "ca.crt")),
                           clean_session=clean_session, name=client_id)
        else:
            c = mk.TClient(mk.HOST, b.open_port, client_id, protocol,
                           clean_session=clean_session, name=client_id)
        made.append(c)
        if connect:
            c.connect(**connect_kw)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def tcp_alive(broker, request):
    """Returns a function checking the broker still serves a fresh client
    (plaintext open listener: subscribe, publish, receive)."""
    def check(b=None):
        b = b or broker
        assert b.alive(), "broker exited; stderr tail:\n%s" % b.tail()
        cid = _unique(request, "probe")
        c = mk.TClient(mk.HOST, b.open_port, cid, mk.V5, name=cid)
        try:
            c.connect()
            topic = "probe/%s" % cid
            assert c.subscribe(topic, 1) == [1]
            c.publish(topic, b"alive", qos=1)
            m = c.get_topic(topic)
            assert m.payload == b"alive"
        finally:
            c.close()
    return check
