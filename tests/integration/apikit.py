"""
Helpers for the management API's integration tests: a real `moat serve` on a
data directory made by the real `moat init` (so the setup token and the audit
key are real), HTTPS clients (python-requests, raw TLS sockets), an RFC 6238
TOTP generator, and fixtures for a server whose first administrator is set
up and TOTP-enrolled.

The server runs through mqttkit.Broker (with an extra `protocol = https`
listener), so it gets the same stderr capture and sanitizer-report check
when it stops as every other broker in the suite.

Client addresses: the API throttles failed logins per client address and
caps connections per address, so every client here connects from its own
loopback address (127.77.x.y; all of 127/8 is local on Linux) unless a test
picks one. Tests that fail logins on purpose then cannot throttle the
others, and idle keep-alive connections of many clients never add up to the
per-address connection cap.

Environment quirk: REQUESTS_CA_BUNDLE in the environment would override
Session.verify, so sessions here have trust_env = False.
"""

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

import mqttkit as mk

HOST = mk.HOST
PROBLEM = "https://moat.dev/problems/"

# src/core/limits.h
HTTP_MAX_TARGET = 4096
HTTP_MAX_HEADERS = 64
HTTP_MAX_HEAD = 16 * 1024
HTTP_BODY_DEFAULT = 16 * 1024
HTTP_HEADER_TIMEOUT_S = 10.0
HTTP_MAX_CONNS_PER_ADDR = 16
THROTTLE_FREE_FAILURES = 5
SECEV_WINDOW_S = 10.0
TOTP_STEP_S = 30

ADMIN_NAME = "root-admin"

_lock = threading.Lock()
_n = itertools.count(1)
_src = itertools.count(1)


def unique(prefix):
    """A unique name, valid as a user name or a device id."""
    return "%s%d" % (prefix, next(_n))


def strong_password(tag=""):
    """A password the policy accepts (long, uncommon, no user name in it)."""
    return "Quartz-Lantern-%s-%s" % (tag or "x", base64.b32encode(os.urandom(5)).decode().lower())


def new_source():
    """A loopback address no other client in this process uses."""
    n = next(_src)
    return "127.77.%d.%d" % ((n // 250) % 250, n % 250 + 1)


def problem(name):
    return PROBLEM + name


def describe(r):
    """One line about a requests.Response for assertion messages."""
    try:
        body = r.text
    except Exception:  # pragma: no cover
        body = "?"
    return "%s %s -> %d %s" % (r.request.method, r.request.path_url, r.status_code, body[:600])


def assert_problem(r, status, name, field=None):
    """r is an RFC 9457 problem answer of this status and type."""
    assert r.status_code == status, "expected %d %s: %s" % (status, name, describe(r))
    ct = r.headers.get("Content-Type", "")
    assert ct.startswith("application/problem+json"), "Content-Type %r: %s" % (ct, describe(r))
    j = r.json()
    assert j.get("type") == problem(name), describe(r)
    assert j.get("status") == status, describe(r)
    assert isinstance(j.get("title"), str) and j["title"], describe(r)
    if field is not None:
        assert j.get("field") == field, "field %r, expected %r: %s" % (j.get("field"), field,
                                                                          describe(r))
    return j


# --------------------------------------------------------------------------
# TOTP (RFC 6238: HMAC-SHA-1, 30 s, 6 digits)
# --------------------------------------------------------------------------

def _b32(secret):
    s = secret.strip().replace(" ", "").upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def totp_code(secret, step):
    """The 6-digit code of a base32 secret for a time step (RFC 4226/6238)."""
    mac = hmac.new(_b32(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    v = struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF
    return "%06d" % (v % 1000000)


def totp_step(t=None):
    return int((time.time() if t is None else t) // TOTP_STEP_S)


def totp_now(secret, t=None):
    return totp_code(secret, totp_step(t))


class Totp:
    """Codes for one secret that never reuse a time step: the server refuses
    a step at or before the last one it accepted (replay), and accepts the
    steps now-1 .. now+1. So after a code of step N the next one is N+1,
    usable at once; after that we wait for the clock."""

    def __init__(self, secret):
        self.secret = secret
        self.last = -1

    def next_code(self, max_wait=TOTP_STEP_S + 5):
        deadline = time.monotonic() + max_wait
        while True:
            now = totp_step()
            step = max(now, self.last + 1)
            if step <= now + 1:
                self.last = step
                return totp_code(self.secret, step)
            if time.monotonic() > deadline:
                raise AssertionError("no fresh TOTP step within %ss" % max_wait)
            time.sleep(max(0.05, (now + 1) * TOTP_STEP_S - time.time() + 0.05))

    def wrong_code(self):
        """A 6-digit code that is valid for no step in the server's window."""
        now = totp_step()
        valid = {totp_code(self.secret, s) for s in range(now - 3, now + 4)}
        for i in range(1000000):
            c = "%06d" % ((int(totp_code(self.secret, now)) + 1 + i * 7919) % 1000000)
            if c not in valid:
                return c
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# HTTPS clients
# --------------------------------------------------------------------------

class _SourceAdapter(HTTPAdapter):
    """Connections from a chosen local (loopback) address."""

    def __init__(self, source, **kw):
        self._source = source
        super().__init__(**kw)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


_NOBODY = object()


class Api:
    """A python-requests client of one server: keeps the session cookie and
    the CSRF token of its last login, or sends a bearer token."""

    def __init__(self, server, source=None, token=None, user_agent="moat-itest/1"):
        self.server = server
        self.source = source or new_source()
        self.token = token
        self.csrf = None
        self.session_id = None
        self.user = None
        self.s = requests.Session()
        self.s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.s.verify = server.ca
        self.s.mount("https://", _SourceAdapter(self.source))
        self.s.headers["User-Agent"] = user_agent
        server._clients.append(self)

    def request(self, method, path, body=_NOBODY, data=None, headers=None, csrf=True,
                timeout=30, **kw):
        h = {}
        if self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        if csrf and self.csrf and method.upper() not in ("GET", "HEAD", "OPTIONS"):
            h["X-CSRF-Token"] = self.csrf
        h.update(headers or {})
        if body is not _NOBODY:
            kw["json"] = body
        return self.s.request(method, self.server.url + path, data=data, headers=h,
                              timeout=timeout, allow_redirects=False, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=_NOBODY, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=_NOBODY, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, method, path, body=_NOBODY, status=200, **kw):
        r = self.request(method, path, body, **kw)
        assert r.status_code == status, "expected %d: %s" % (status, describe(r))
        return r

    def login(self, user, password, totp=None, recovery=None, expect=200):
        b = {"username": user, "password": password}
        if totp is not None:
            b["totp_code"] = totp
        if recovery is not None:
            b["recovery_code"] = recovery
        r = self.post("/api/v1/auth/login", b, csrf=False)
        if expect is not None:
            assert r.status_code == expect, "login as %s: %s" % (user, describe(r))
        if r.status_code == 200:
            j = r.json()
            self.csrf = j["csrf_token"]
            self.session_id = j["session_id"]
            self.user = user
        return r

    @property
    def cookie(self):
        return self.s.cookies.get("__Host-moat_session")

    def close(self):
        """Close the connections (the client can still be used: it then
        connects again, with its cookie)."""
        self.s.close()


class ApiServer:
    """`moat init` + `moat serve` with an mTLS MQTT listener and the HTTPS API
    on free loopback ports."""

    def __init__(self, moat_bin, scratch, name="api"):
        self.moat_bin = moat_bin
        self.name = name
        with _lock:
            d = os.path.join(scratch, unique(name + "-"))
            while os.path.exists(d):
                d = os.path.join(scratch, unique(name + "-"))
        p = mk.run([moat_bin, "init", "--dir", d], check=False)
        if p.returncode != 0:
            raise AssertionError("moat init --dir %s failed (%d): %s" % (d, p.returncode, p.stderr))
        m = re.search(r"Setup token[^\n]*:\s*\n\s*(moat_st_[A-Za-z0-9_-]+)", p.stdout)
        assert m, "no setup token in moat init's output:\n%s" % p.stdout
        self.setup_token = m.group(1)
        self.init_stdout = p.stdout
        self.dir = d
        self.ca = os.path.join(d, "ca.crt")
        self.api_port = mk.free_port()
        self.broker = mk.Broker("moat", moat_bin, d, name=name, extra_listeners={
            "api": {"bind": HOST, "port": self.api_port, "protocol": "https"}})
        self.url = "https://%s:%d" % (HOST, self.api_port)
        self._clients = []

    @property
    def mqtt_port(self):
        return self.broker.port

    def _registry(self):
        cf = sys.modules.get("conftest")
        return getattr(cf, "_ACTIVE_BROKERS", None), getattr(cf, "_lock", None)

    def start(self, timeout=20):
        self.broker.start(timeout=timeout)
        reg, lk = self._registry()
        if reg is not None and lk is not None:
            with lk:
                reg.append(self.broker)
        s = requests.Session()
        s.trust_env = False
        deadline = time.monotonic() + timeout
        last = None
        try:
            while True:
                try:
                    r = s.get(self.url + "/healthz", verify=self.ca, timeout=2)
                    if r.status_code == 200:
                        return self
                    last = describe(r)
                except requests.RequestException as e:
                    last = repr(e)
                if time.monotonic() > deadline or not self.broker.alive():
                    raise AssertionError("HTTPS API did not answer /healthz (%s); stderr:\n%s"
                                         % (last, self.broker.tail()))
                time.sleep(0.05)
        finally:
            s.close()

    def stop(self):
        """SIGTERM (a clean stop: the API writes its final checkpoint); fails
        on a sanitizer report in stderr."""
        for c in self._clients:
            c.close()
        self._clients = []
        reg, lk = self._registry()
        if reg is not None and lk is not None:
            with lk:
                if self.broker in reg:
                    reg.remove(self.broker)
        return self.broker.stop()

    def alive(self):
        return self.broker.alive()

    def client(self, **kw):
        """A new client. Idle keep-alive connections of older clients are
        closed now and then (they reconnect when used again) so a module's
        many clients stay far below MOAT_HTTP_MAX_CONNS."""
        if len(self._clients) % 50 == 49:
            for c in self._clients[:-10]:
                c.close()
        return Api(self, **kw)

    def moat(self, *args, timeout=30):
        return subprocess.run([self.moat_bin] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)


# --------------------------------------------------------------------------
# raw HTTP over TLS
# --------------------------------------------------------------------------

class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "RawResponse(%d %s, %r)" % (self.status, self.reason, self.body[:200])


class Closed(Exception):
    pass


def tls_context(ca, cert=None, key=None):
    return mk.client_ssl_context(ca, cert, key)


class RawHttp:
    """One TLS connection to the API for hand-written requests."""

    def __init__(self, server, source=None, timeout=10, ctx=None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        try:
            sock.connect((HOST, server.api_port))
            self.s = (ctx or tls_context(server.ca)).wrap_socket(sock, server_hostname=HOST)
        except BaseException:
            sock.close()
            raise
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.s.sendall(data)

    def _more(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.s.settimeout(left)
        try:
            chunk = self.s.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        except ssl.SSLError:
            chunk = b""
        if not chunk:
            self.closed = True
            raise Closed()
        self.buf += chunk

    def read_response(self, timeout=10, head=False):
        """The next response (head=True: to a HEAD request, so no body);
        raises Closed if the connection ends first, socket.timeout if
        nothing complete arrives in time."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._more(deadline)
        top, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = top.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        assert m, "bad status line %r" % lines[0]
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        status = int(m.group(1))
        n = 0
        for k, v in headers:
            if k.lower() == "content-length":
                n = int(v)
        if head or status in (204, 304) or 100 <= status < 200:
            n = 0
        while len(self.buf) < n:
            self._more(deadline)
        body, self.buf = self.buf[:n], self.buf[n:]
        return RawResponse(status, m.group(2), headers, body)

    def wait_closed(self, timeout=10):
        """Read until the server closes; returns the responses that came
        before. Fails if the connection is still open after timeout."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.read_response(max(0.01, deadline - time.monotonic())))
            except Closed:
                return got
            except socket.timeout:
                raise AssertionError("connection still open after %.1fs (got %r, buffered %r)"
                                     % (timeout, got, self.buf[:200]))
            except OSError:
                return got

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def get_request(path="/healthz", extra="", close=False):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n"
            % (path, HOST, extra, "Connection: close\r\n" if close else "")).encode()


# --------------------------------------------------------------------------
# users, enrolment, audit
# --------------------------------------------------------------------------

class User:
    def __init__(self, name, role, password, api=None, totp=None, recovery_codes=None):
        self.name, self.role, self.password = name, role, password
        self.api = api
        self.totp = totp
        self.recovery_codes = recovery_codes or []

    def __repr__(self):
        return "User(%s, %s)" % (self.name, self.role)


def enrol_totp(api):
    """POST /me/totp and confirm it with a computed code. Returns a Totp
    (its last step is the one the server stored) and the recovery codes."""
    r = api.post("/api/v1/me/totp", {})
    assert r.status_code == 200, describe(r)
    j = r.json()
    assert re.fullmatch(r"[A-Z2-7]+", j["secret"]), j
    assert j["otpauth_uri"].startswith("otpauth://totp/"), j
    t = Totp(j["secret"])
    r = api.post("/api/v1/me/totp/confirm", {"code": t.next_code()})
    assert r.status_code == 200, describe(r)
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    return t, codes


def setup_admin(server, username=ADMIN_NAME, password=None, source=None):
    """The first administrator through POST /api/v1/setup, logged in and
    TOTP-enrolled (the session is enrolled too)."""
    password = password or strong_password("adm")
    api = server.client(source=source)
    r = api.post("/api/v1/setup", {"setup_token": server.setup_token, "username": username,
                                   "password": password})
    assert r.status_code == 201, describe(r)
    r = api.login(username, password)
    assert r.json()["mfa_enrolment_required"] is True, r.json()
    t, codes = enrol_totp(api)
    return User(username, "admin", password, api=api, totp=t, recovery_codes=codes)


def create_user(admin_api, role, name=None, password=None, login=True, source=None):
    """Create an operator account (as admin_api) and, unless login=False, log
    it in with a client of its own (admins are then TOTP-enrolled)."""
    name = name or unique(role[:3] + "-")
    password = password or strong_password(role)
    r = admin_api.post("/api/v1/users", {"username": name, "role": role, "password": password})
    assert r.status_code == 201, describe(r)
    u = User(name, role, password)
    if login:
        u.api = admin_api.server.client(source=source)
        u.api.login(name, password)
        if role == "admin":
            u.totp, u.recovery_codes = enrol_totp(u.api)
    return u


def create_token(api, role, name=None, days=None):
    b = {"name": name or unique("tok-"), "role": role}
    if days is not None:
        b["expires_in_days"] = days
    r = api.post("/api/v1/tokens", b)
    assert r.status_code == 201, describe(r)
    j = r.json()
    assert j["token"].startswith("moat_at_"), j
    return j


def audit_all(api, limit=200, **filters):
    """Every audit entry matching filters, newest first (walks the cursor)."""
    out, cursor = [], None
    for _ in range(10000):
        params = dict(filters, limit=limit)
        if cursor:
            params["cursor"] = cursor
        r = api.get("/api/v1/audit", params=params)
        assert r.status_code == 200, describe(r)
        j = r.json()
        out += j["items"]
        cursor = j["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("audit cursor walk did not end")


def wait_audit(api, pred, timeout=30, what="an audit entry", **filters):
    """Poll the audit log until pred(entries) is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred(audit_all(api, **filters))
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.25)


def detail(entry):
    d = entry.get("detail")
    if isinstance(d, str):
        try:
            return json.loads(d)
        except ValueError:
            return d
    return d


# --------------------------------------------------------------------------
# fixtures (import them into a test module to use them)
# --------------------------------------------------------------------------

class Env:
    """A running server with its first administrator set up and enrolled."""

    def __init__(self, server, admin):
        self.server, self.admin = server, admin


@pytest.fixture
def api_server(moat_bin, scratch):
    """Factory for fresh servers (no operator yet): api_server(name)."""
    made = []

    def make(name="api", start=True):
        s = ApiServer(moat_bin, scratch, name)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    errors = []
    for s in made:
        try:
            s.stop()
        except AssertionError as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def admin_env(moat_bin, scratch, request):
    """A server for the whole module with the first admin set up and
    TOTP-enrolled: env.server, env.admin (User with .api, .totp, ...)."""
    name = re.sub(r"^test_", "", request.module.__name__.split(".")[-1]).replace("_", "-")
    s = ApiServer(moat_bin, scratch, name)
    s.start()
    try:
        yield Env(s, setup_admin(s))
    finally:
        s.stop()
