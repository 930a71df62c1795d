"""The API commands of the `moat` CLI (login, logout, setup, user, token,
audit) without a Moat server: usage, credentials file handling, URL and
connection errors, TLS verification, and the request/answer handling
against a small mock of the management API (docs/api.md) served over TLS
with the data directory's server certificate."""

import json
import os
import re
import ssl
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = pytest.mark.moat_only("moat CLI API client")

PASSWORD = "correct horse battery staple"
SESSION = "s3ss10n-secret-value"
CSRF = "csrf-token-value"
TOKEN = "moat_at_testtoken"


def moat(moat_bin, home, *args, stdin="", env=None, timeout=60):
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C"}
    e.update(env or {})
    return subprocess.run([moat_bin] + list(args), input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, env=e)


@pytest.fixture
def home(scratch, uid):
    d = os.path.join(scratch, uid("home"))
    os.makedirs(d)
    return d


def creds_path(home):
    return os.path.join(home, ".config", "moat", "credentials")


def write_creds(home, server, ca="", session=SESSION, csrf=CSRF, mode=0o600):
    p = creds_path(home)
    os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
    with open(p, "w") as f:
        json.dump({"server": server, "ca": ca, "username": "alice", "session": session,
                   "csrf": csrf}, f)
    os.chmod(p, mode)
    return p


def problem(status, name, title, detail="", field=None):
    d = {"type": "https://moat.dev/problems/" + name, "title": title, "status": status,
         "detail": detail}
    if field:
        d["field"] = field
    return status, d


# --------------------------------------------------------------------------
# A mock of the management API
# --------------------------------------------------------------------------

class MockAPI:
    def __init__(self):
        self.requests = []  # (method, path, headers dict, body)
        self.verify_status = "intact"
        self.users = [{"username": "u%02d" % i, "role": "viewer", "disabled": False,
                       "mfa_enrolled": False, "created_at": "2026-11-22T07:10:00.000Z",
                       "updated_at": "2026-11-22T07:10:00.000Z"} for i in range(5)]
        self.audit = [{"seq": i, "ts": "2026-11-22T07:10:%02d.000Z" % (i % 60), "ts_ms": i,
                       "actor": "user:alice", "action": "user.create", "target": "u%d" % i,
                       "outcome": "ok", "peer": "127.0.0.1", "detail": {}, "prev": "00",
                       "hash": "%064x" % i} for i in range(1, 8)]

    def authed(self, h, method):
        if h.get("authorization") == "Bearer " + TOKEN:
            return None
        if h.get("cookie") == "__Host-moat_session=" + SESSION:
            if method in ("POST", "PATCH", "PUT", "DELETE") and h.get("x-csrf-token") != CSRF:
                return problem(403, "csrf", "CSRF check failed", "send X-CSRF-Token")
            return None
        return problem(401, "unauthorized", "Not authenticated", "log in first")

    @staticmethod
    def page(items, q, default=2):
        limit = int(q.get("limit", [str(default)])[0])
        limit = min(limit, 2)  # small pages so the CLI has to follow cursors
        start = int(q.get("cursor", ["0"])[0])
        chunk = items[start:start + limit]
        nxt = str(start + limit) if start + limit < len(items) else None
        return 200, {"items": chunk, "next_cursor": nxt}

    def handle(self, method, path, h, body):
        u = urlsplit(path)
        q = parse_qs(u.query)
        p = u.path
        if p == "/api/v1/setup" and method == "POST":
            if body.get("setup_token") != "moat_st_good":
                return problem(409, "setup-unavailable", "Setup unavailable",
                               "already done or token expired")
            return 201, {"username": body["username"], "role": "admin"}
        if p == "/api/v1/auth/login" and method == "POST":
            user = body.get("username")
            if user == "throttled":
                return (429, problem(429, "throttled", "Too many attempts")[1], {"Retry-After": "42"})
            if body.get("password") != PASSWORD:
                return problem(401, "invalid-credentials", "Invalid credentials",
                               "wrong user name or password")
            if user == "alice" and body.get("totp_code") != "123456" and \
                    body.get("recovery_code") != "abcde-fghij":
                return problem(401, "mfa-required", "TOTP code required")
            ans = {"username": user, "role": "admin", "mfa_enrolled": user == "alice",
                   "mfa_enrolment_required": user == "newadmin", "csrf_token": CSRF,
                   "session_id": "sid", "expires_at": "2026-11-22T19:10:00.000Z"}
            # An empty header and a foreign cookie first: only ours is kept.
            return 200, ans, {"X-Empty": "", "Set-Cookie": "other=1; Path=/",
                              "set-cookie": "__Host-moat_session=%s; HttpOnly; Secure; "
                                            "SameSite=Strict; Path=/" % SESSION}
        err = self.authed(h, method)
        if err:
            return err
        if p == "/api/v1/auth/logout" and method == "POST":
            return 204, None
        if p == "/api/v1/me/totp" and method == "POST":
            return 200, {"secret": "JBSWY3DPEHPK3PXP",
                         "otpauth_uri": "otpauth://totp/Moat:newadmin?secret=JBSWY3DPEHPK3PXP"}
        if p == "/api/v1/me/totp/confirm" and method == "POST":
            if body.get("code") != "654321":
                return problem(400, "validation", "Invalid code", "the code does not match",
                               "code")
            return 200, {"recovery_codes": ["rc%03d-xxxxx" % i for i in range(10)]}
        if p == "/api/v1/me/password" and method == "POST":
            if body.get("current_password") != PASSWORD:
                return problem(401, "invalid-credentials", "Invalid credentials")
            return 204, None
        if p == "/api/v1/users" and method == "GET":
            return self.page(self.users, q)
        if p == "/api/v1/users" and method == "POST":
            if body["username"] == "u00":
                return problem(409, "conflict", "User exists", "u00 already exists", "username")
            return 201, dict(self.users[0], username=body["username"], role=body["role"])
        if p.startswith("/api/v1/users/"):
            name = p.split("/")[4]
            if name == "nobody":
                return problem(404, "not-found", "Not found", "no user nobody")
            if method == "GET":
                return 200, dict(self.users[0], username=name)
            if method == "PATCH":
                return 200, dict(self.users[0], username=name, **body)
            if method == "POST" and p.endswith("/reset-mfa"):
                return 204, None
        if p == "/api/v1/tokens" and method == "POST":
            return 201, {"id": "tk1", "name": body["name"], "role": body["role"],
                         "creator": "alice", "created_at": "2026-11-22T07:10:00.000Z",
                         "expires_at": "2027-02-20T07:10:00.000Z", "last_used": None,
                         "revoked": False, "token": "moat_at_NEWSECRET"}
        if p == "/api/v1/tokens" and method == "GET":
            return 200, {"items": [], "next_cursor": None}
        if p.startswith("/api/v1/tokens/") and method == "DELETE":
            return 204, None
        if p == "/api/v1/audit/verify":
            if self.verify_status == "intact":
                return 200, {"status": "intact", "first_bad_seq": 0, "reason": "",
                             "entries": 7, "checkpoints": 1, "sealed_seq": 5, "unsealed": 2}
            return 200, {"status": self.verify_status, "first_bad_seq": 4,
                         "reason": "entry 4 does not hash to its stored hash", "entries": 7,
                         "checkpoints": 1, "sealed_seq": 5, "unsealed": 2}
        if p == "/api/v1/audit":
            items = list(reversed(self.audit))  # newest first
            if "actor" in q:
                items = [e for e in items if e["actor"] == q["actor"][0]]
            return self.page(items, q)
        if p == "/chunked":
            return 200, {"items": []}
        return problem(404, "not-found", "Not found")


def make_handler(api):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _do(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            body = json.loads(raw) if raw else {}
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            api.requests.append((self.command, self.path, hdrs, body))
            if self.path.endswith("/huge") or self.path.endswith("/trunc"):
                # A declared body beyond the CLI's cap, or one cut short.
                size = 17 * 1024 * 1024 if self.path.endswith("/huge") else 100
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self.wfile.write(b'{"x": 1')
                self.wfile.flush()
                self.close_connection = True
                return
            r = api.handle(self.command, self.path, hdrs, body)
            status, doc = r[0], r[1]
            extra = r[2] if len(r) > 2 else {}
            data = b"" if doc is None else json.dumps(doc).encode()
            ctype = "application/problem+json" if status >= 400 else "application/json"
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            if self.path == "/chunked":
                self.send_header("Content-Type", ctype)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), 3):
                    part = data[i:i + 3]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
                return
            if status != 204:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if status != 204:
                self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _do

    return H


def start_mock(master_dir, host="127.0.0.1"):
    mock = MockAPI()
    srv = ThreadingHTTPServer((host, 0), make_handler(mock))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(master_dir, "server.crt"),
                        os.path.join(master_dir, "server.key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    mock.srv = srv
    mock.port = srv.server_address[1]
    mock.url = "https://%s:%d" % (host, mock.port)
    mock.ca = os.path.join(master_dir, "ca.crt")
    return mock


def stop_mock(mock):
    mock.srv.shutdown()
    mock.srv.server_close()


@pytest.fixture
def api(master_dir):
    mock = start_mock(master_dir)
    yield mock
    stop_mock(mock)


def logged_in(home, api):
    return write_creds(home, api.url, ca=api.ca)


# --------------------------------------------------------------------------
# usage
# --------------------------------------------------------------------------

HELP = [["login"], ["logout"], ["setup"], ["user"], ["token"], ["audit"],
        ["user", "add"], ["user", "list"], ["user", "show"], ["user", "disable"],
        ["user", "enable"], ["user", "set-role"], ["user", "reset-mfa"], ["user", "passwd"],
        ["token", "create"], ["token", "list"], ["token", "revoke"],
        ["audit", "list"], ["audit", "verify"], ["audit", "export"]]


@pytest.mark.parametrize("cmd", HELP, ids=lambda c: "-".join(c))
def test_help(moat_bin, home, cmd):
    p = moat(moat_bin, home, *cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: moat " + cmd[0]), p.stdout
    assert p.stderr == ""


def test_main_usage_lists_commands(moat_bin, home):
    p = moat(moat_bin, home, "--help")
    assert p.returncode == 0
    for c in ("login", "logout", "setup", "setup-token", "user", "token", "audit"):
        assert "\n  %s " % c in p.stdout, c


@pytest.mark.parametrize("args", [
    ["user"], ["user", "frob"], ["user", "add"], ["user", "add", "Bob", "--role", "admin"],
    ["user", "add", "bob"], ["user", "add", "bob", "--role", "god"], ["user", "show"],
    ["user", "list", "extra"], ["user", "set-role", "bob"], ["user", "set-role", "bob", "x"],
    ["token"], ["token", "create", "--name", "x"], ["token", "create", "--role", "admin"],
    ["token", "create", "--name", "x", "--role", "admin", "--days", "0"],
    ["token", "create", "--name", "x", "--role", "admin", "--days", "366"],
    ["token", "create", "--name", "x", "--role", "admin", "--days", "9x"],
    ["token", "revoke"], ["token", "revoke", "a/b"],
    ["audit"], ["audit", "list", "--limit", "0"], ["audit", "list", "--limit", "-1"],
    ["audit", "list", "--since", "yesterday"], ["audit", "list", "--until", "2026-11-22"],
    ["audit", "list", "--bogus"], ["audit", "verify", "--dir"],
    ["audit", "verify", "--dir", "/x", "--server", "https://a"],
    ["logout", "extra"], ["login", "--json"], ["login", "--user", "No Way"],
    ["setup", "--user", "bob"], ["setup", "--token", "t"],
], ids=lambda a: "_".join(a))
def test_usage_errors(moat_bin, home, args):
    p = moat(moat_bin, home, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith(("moat", "usage: moat")), p.stderr
    assert p.stdout == ""


# --------------------------------------------------------------------------
# server, URL, connection
# --------------------------------------------------------------------------

def test_no_server(moat_bin, home):
    p = moat(moat_bin, home, "user", "list")
    assert p.returncode == 2
    assert "no server" in p.stderr and "--server" in p.stderr


@pytest.mark.parametrize("url,msg", [
    ("http://127.0.0.1:8443", "plain http is not supported"),
    ("ftp://x", "is not an https:// URL"),
    ("https://", "missing host"),
    ("https://[::1", "missing ']'"),
    ("https://[zz]:1", "is not an IPv6 address"),
    ("https://h:0", "port must be 1-65535"),
    ("https://h:65536", "port must be 1-65535"),
    ("https://h:", "port must be 1-65535"),
    ("https://user@h", "without user, path"),
    ("https://h/api", "without user, path"),
    ("https://h?x=1", "without user, path"),
    ("https://bad_host", "is not a host name"),
    ("https://127.1", "is not a host name or IP address"),
])
def test_bad_urls(moat_bin, home, url, msg):
    p = moat(moat_bin, home, "user", "list", "--server", url, env={"MOAT_TOKEN": TOKEN})
    assert p.returncode == 2, p.stderr
    assert msg in p.stderr, p.stderr


def test_not_logged_in(moat_bin, home):
    p = moat(moat_bin, home, "user", "list", "--server", "https://127.0.0.1:1")
    assert p.returncode == 1
    assert "not logged in" in p.stderr and "moat login" in p.stderr


@pytest.mark.parametrize("url", ["https://127.0.0.1:1", "https://[::1]:1"])
def test_connection_refused(moat_bin, home, url):
    p = moat(moat_bin, home, "user", "list", "--server", url, env={"MOAT_TOKEN": TOKEN})
    assert p.returncode == 1
    assert p.stderr.strip() == "moat user list: cannot connect to %s: Connection refused" % url


def test_missing_ca_file(moat_bin, home):
    p = moat(moat_bin, home, "user", "list", "--server", "https://127.0.0.1:1", "--ca",
             "/nonexistent/ca.crt", env={"MOAT_TOKEN": TOKEN})
    assert p.returncode == 1
    assert "cannot read CA file /nonexistent/ca.crt" in p.stderr


def test_tls_verify_fails_without_ca(moat_bin, home, api):
    p = moat(moat_bin, home, "user", "list", "--server", api.url, env={"MOAT_TOKEN": TOKEN})
    assert p.returncode == 1
    assert "TLS: certificate verify failed" in p.stderr, p.stderr
    assert "fix: pass --ca DATA_DIR/ca.crt" in p.stderr
    assert api.requests == []


def test_tls_verify_fails_on_wrong_ca(moat_bin, home, api, scratch, uid):
    other = os.path.join(scratch, uid("other"))
    subprocess.run([moat_bin, "init", "--dir", other], check=True, capture_output=True)
    p = moat(moat_bin, home, "user", "list", "--server", api.url, "--ca",
             os.path.join(other, "ca.crt"), env={"MOAT_TOKEN": TOKEN})
    assert p.returncode == 1
    assert "certificate verify failed" in p.stderr, p.stderr
    assert api.requests == []


def test_tls_address_checked(moat_bin, home, master_dir):
    # The server certificate names localhost, 127.0.0.1 and ::1 only: the
    # same server reached as 127.0.0.2 (loopback too) must be refused.
    try:
        mock = start_mock(master_dir, "127.0.0.2")
    except OSError as e:
        pytest.skip("cannot listen on 127.0.0.2: %s" % e)
    try:
        p = moat(moat_bin, home, "user", "list", "--server", mock.url, "--ca", mock.ca,
                 env={"MOAT_TOKEN": TOKEN})
        assert p.returncode == 1
        assert "certificate verify failed: the server certificate does not name 127.0.0.2" \
            in p.stderr, p.stderr
        assert mock.requests == []
    finally:
        stop_mock(mock)


def test_chunked_answer(moat_bin, home, api):
    # llhttp reassembles a chunked body (the mock splits it in 3-byte chunks).
    logged_in(home, api)
    p = moat(moat_bin, home, "user", "show", "carol", "--json")
    assert p.returncode == 0, p.stderr


# --------------------------------------------------------------------------
# credentials file
# --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_credentials_file_permissions_refused(moat_bin, home, mode):
    p = write_creds(home, "https://127.0.0.1:1", mode=mode)
    r = moat(moat_bin, home, "user", "list")
    assert r.returncode == 1
    assert "accessible by group or others" in r.stderr
    assert "chmod 600 %s" % p in r.stderr
    assert SESSION not in r.stderr + r.stdout


def test_credentials_symlink_refused(moat_bin, home):
    p = write_creds(home, "https://127.0.0.1:1")
    os.rename(p, p + ".real")
    os.symlink(p + ".real", p)
    r = moat(moat_bin, home, "user", "list")
    assert r.returncode == 1
    assert "symbolic link" in r.stderr


def test_credentials_damaged(moat_bin, home):
    p = write_creds(home, "https://127.0.0.1:1")
    with open(p, "w") as f:
        f.write("{not json")
    r = moat(moat_bin, home, "user", "list")
    assert r.returncode == 1
    assert "damaged" in r.stderr


def test_xdg_config_home(moat_bin, home, api):
    xdg = os.path.join(home, "xdg")
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user", "bob",
             stdin=PASSWORD + "\n", env={"XDG_CONFIG_HOME": xdg})
    assert p.returncode == 0, p.stderr
    f = os.path.join(xdg, "moat", "credentials")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(f)).st_mode) == 0o700
    assert not os.path.exists(creds_path(home))


# --------------------------------------------------------------------------
# login / logout / setup against the mock
# --------------------------------------------------------------------------

def test_login_plain(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user", "bob",
             stdin=PASSWORD + "\n")
    assert p.returncode == 0, p.stderr
    assert "Logged in to %s as bob" % api.url in p.stderr
    f = creds_path(home)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(f)).st_mode) == 0o700
    c = json.load(open(f))
    assert c == {"server": api.url, "ca": os.path.realpath(api.ca), "username": "bob",
                 "session": SESSION, "csrf": CSRF}
    assert PASSWORD not in p.stdout + p.stderr and SESSION not in p.stdout + p.stderr
    m, path, h, body = api.requests[0]
    assert (m, path) == ("POST", "/api/v1/auth/login")
    assert body == {"username": "bob", "password": PASSWORD}
    assert h["user-agent"].startswith("moat-cli/")
    assert h["content-type"] == "application/json"
    assert h["host"] == "127.0.0.1:%d" % api.port
    assert "cookie" not in h and "authorization" not in h


def test_login_prompts_user_from_stdin_and_password_file(moat_bin, home, api, scratch, uid):
    pw = os.path.join(scratch, uid("pw"))
    with open(pw, "w") as f:
        f.write(PASSWORD + "\nsecond line\n")
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--password-file",
             pw, stdin="bob\n")
    assert p.returncode == 0, p.stderr
    assert api.requests[0][3] == {"username": "bob", "password": PASSWORD}


def test_login_wrong_password(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user", "bob",
             stdin="nope\n")
    assert p.returncode == 1
    assert "moat login: Invalid credentials: wrong user name or password" in p.stderr
    assert "hint" not in p.stderr
    assert not os.path.exists(creds_path(home))


def test_login_totp(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user", "alice",
             stdin=PASSWORD + "\n123456\n")
    assert p.returncode == 0, p.stderr
    assert [r[3].get("totp_code") for r in api.requests] == [None, "123456"]
    assert os.path.exists(creds_path(home))


def test_login_totp_option_and_recovery_code(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user", "alice",
             "--totp", "abcde-fghij", stdin=PASSWORD + "\n")
    assert p.returncode == 0, p.stderr
    assert api.requests[1][3].get("recovery_code") == "abcde-fghij"


def test_login_throttled(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user",
             "throttled", stdin=PASSWORD + "\n")
    assert p.returncode == 1
    assert "Too many attempts" in p.stderr and "retry after 42 s" in p.stderr


def test_login_enrolment(moat_bin, home, api, scratch, uid):
    secret_file = os.path.join(scratch, uid("totp"))
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user",
             "newadmin", "--enrol-totp-file", secret_file, stdin=PASSWORD + "\n654321\n")
    assert p.returncode == 0, p.stderr
    assert open(secret_file).read() == "JBSWY3DPEHPK3PXP\n"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert "JBSWY3DPEHPK3PXP" not in p.stdout
    codes = [l for l in p.stdout.splitlines() if l.startswith("rc")]
    assert len(codes) == 10
    assert "never shown again" in p.stderr
    paths = [(r[0], r[1]) for r in api.requests]
    assert paths == [("POST", "/api/v1/auth/login"), ("POST", "/api/v1/me/totp"),
                     ("POST", "/api/v1/me/totp/confirm")]
    h = api.requests[1][2]
    assert h["cookie"] == "__Host-moat_session=" + SESSION and h["x-csrf-token"] == CSRF


def test_login_enrolment_prints_secret_and_bad_code(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user",
             "newadmin", stdin=PASSWORD + "\n000000\n")
    assert p.returncode == 1
    assert "secret: JBSWY3DPEHPK3PXP" in p.stdout and "otpauth://" in p.stdout
    assert "Invalid code: the code does not match (field: code)" in p.stderr


def qr_block(out):
    return [l for l in out.splitlines() if l and set(l) <= set(" \u2580\u2584\u2588")]


def test_login_enrolment_shows_qr_code(moat_bin, home, api, scratch, uid):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user",
             "newadmin", stdin=PASSWORD + "\n000000\n")
    assert "secret: JBSWY3DPEHPK3PXP" in p.stdout and "otpauth://totp/" in p.stdout
    qr = qr_block(p.stdout)
    assert qr, "no QR code in:\n" + p.stdout
    # Half blocks: (17 + 4 * version + 8 quiet modules) columns, two module
    # rows per line; light modules drawn, so the quiet zone is full blocks.
    width = len(qr[0])
    assert all(len(l) == width for l in qr), qr
    assert (width - 8 - 17) % 4 == 0 and len(qr) == (width + 1) // 2, (width, len(qr))
    assert qr[0] == qr[1] == "\u2588" * width
    # Module rows 4-5: quiet zone, then the top-left finder pattern (a dark
    # row over dark-light*5-dark), a light separator column, ... and the top-right
    # finder the same way before the quiet zone.
    finder = " " + "\u2584" * 5 + " "
    assert qr[2].startswith("\u2588" * 4 + finder + "\u2588"), qr[2]
    assert qr[2].endswith("\u2588" + finder + "\u2588" * 4), qr[2]
    # The block comes before the secret.
    assert p.stdout.index(qr[0]) < p.stdout.index("secret:")
    # And a QR reader gets the otpauth URI back (zbarimg reads a PBM image
    # drawn from the text: dark where the terminal shows no block).
    uri = re.search(r"URI:\s+(\S+)", p.stdout).group(1)
    assert decode_qr(qr, scratch, uid) == uri


def decode_qr(lines, scratch, uid, scale=4):
    top = {" ": 0, "\u2580": 1, "\u2584": 0, "\u2588": 1}
    bottom = {" ": 0, "\u2580": 0, "\u2584": 1, "\u2588": 1}
    rows = []
    for l in lines:
        rows.append([1 - top[c] for c in l])
        rows.append([1 - bottom[c] for c in l])
    pbm = ["P1", "%d %d" % (len(rows[0]) * scale, len(rows) * scale)]
    for r in rows:
        line = " ".join(str(v) for v in r for _ in range(scale))
        pbm += [line] * scale
    path = os.path.join(scratch, uid("qr") + ".pbm")
    with open(path, "w") as f:
        f.write("\n".join(pbm) + "\n")
    p = subprocess.run(["zbarimg", "--quiet", "--raw", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_login_enrolment_no_qr(moat_bin, home, api):
    p = moat(moat_bin, home, "login", "--server", api.url, "--ca", api.ca, "--user",
             "newadmin", "--no-qr", stdin=PASSWORD + "\n000000\n")
    assert "secret: JBSWY3DPEHPK3PXP" in p.stdout and "otpauth://totp/" in p.stdout
    assert not qr_block(p.stdout), p.stdout


def test_logout(moat_bin, home, api):
    logged_in(home, api)
    p = moat(moat_bin, home, "logout")
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(creds_path(home))
    m, path, h, _ = api.requests[0]
    assert (m, path) == ("POST", "/api/v1/auth/logout")
    assert h["x-csrf-token"] == CSRF


def test_logout_server_unreachable_still_deletes(moat_bin, home):
    write_creds(home, "https://127.0.0.1:1")
    p = moat(moat_bin, home, "logout")
    assert p.returncode == 1
    assert "Connection refused" in p.stderr
    assert not os.path.exists(creds_path(home))


def test_setup(moat_bin, home, api):
    p = moat(moat_bin, home, "setup", "--server", api.url, "--ca", api.ca, "--token",
             "moat_st_good", "--user", "root", stdin=PASSWORD + "\n")
    assert p.returncode == 0, p.stderr
    assert "moat login" in p.stdout
    assert api.requests[0][3] == {"setup_token": "moat_st_good", "username": "root",
                                  "password": PASSWORD}
    p = moat(moat_bin, home, "setup", "--server", api.url, "--ca", api.ca, "--token",
             "moat_st_bad", "--user", "root", stdin=PASSWORD + "\n")
    assert p.returncode == 1
    assert "Setup unavailable" in p.stderr and "setup-token" in p.stderr


# --------------------------------------------------------------------------
# user / token / audit against the mock
# --------------------------------------------------------------------------

def test_user_list_table_follows_cursors(moat_bin, home, api):
    logged_in(home, api)
    p = moat(moat_bin, home, "user", "list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "DISABLED", "MFA", "CREATED", "UPDATED"]
    assert [l.split()[0] for l in lines[1:]] == ["u%02d" % i for i in range(5)]
    # aligned: every row's ROLE column starts where the header's does
    col = lines[0].index("ROLE")
    assert all(l[col:col + 6] == "viewer" for l in lines[1:])
    assert len(api.requests) == 3
    h = api.requests[0][2]
    assert h["cookie"] == "__Host-moat_session=" + SESSION and "x-csrf-token" not in h


def test_user_list_json_with_token(moat_bin, home, api):
    p = moat(moat_bin, home, "user", "list", "--json", "--server", api.url, "--ca", api.ca,
             env={"MOAT_TOKEN": TOKEN})
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert len(doc["items"]) == 5
    h = api.requests[0][2]
    assert h["authorization"] == "Bearer " + TOKEN and "cookie" not in h


def test_session_not_sent_to_another_server(moat_bin, home, api):
    write_creds(home, "https://127.0.0.1:1", ca=api.ca)
    p = moat(moat_bin, home, "user", "list", "--server", api.url, "--ca", api.ca)
    assert p.returncode == 1
    assert "not logged in to %s" % api.url in p.stderr
    assert api.requests == []


def test_user_commands(moat_bin, home, api, scratch, uid):
    logged_in(home, api)
    pw = os.path.join(scratch, uid("pw"))
    with open(pw, "w") as f:
        f.write(PASSWORD + "\n")
    p = moat(moat_bin, home, "user", "add", "carol", "--role", "operator", "--password-file", pw)
    assert p.returncode == 0, p.stderr
    assert api.requests[-1][3] == {"username": "carol", "role": "operator", "password": PASSWORD}
    assert api.requests[-1][2]["x-csrf-token"] == CSRF
    p = moat(moat_bin, home, "user", "add", "u00", "--role", "viewer", stdin=PASSWORD + "\n")
    assert p.returncode == 1
    assert "moat user add: User exists: u00 already exists (field: username)" in p.stderr
    p = moat(moat_bin, home, "user", "show", "carol")
    assert p.returncode == 0 and "username:" in p.stdout and "carol" in p.stdout
    p = moat(moat_bin, home, "user", "show", "nobody")
    assert p.returncode == 1 and "Not found: no user nobody" in p.stderr
    p = moat(moat_bin, home, "user", "disable", "carol")
    assert p.returncode == 0 and api.requests[-1][:2] == ("PATCH", "/api/v1/users/carol")
    assert api.requests[-1][3] == {"disabled": True}
    p = moat(moat_bin, home, "user", "enable", "carol")
    assert p.returncode == 0 and api.requests[-1][3] == {"disabled": False}
    p = moat(moat_bin, home, "user", "set-role", "carol", "auditor")
    assert p.returncode == 0 and api.requests[-1][3] == {"role": "auditor"}
    p = moat(moat_bin, home, "user", "reset-mfa", "carol")
    assert p.returncode == 0
    assert api.requests[-1][:2] == ("POST", "/api/v1/users/carol/reset-mfa")
    p = moat(moat_bin, home, "user", "passwd", stdin=PASSWORD + "\nnew password 1234\n")
    assert p.returncode == 0, p.stderr
    assert api.requests[-1][3] == {"current_password": PASSWORD,
                                   "new_password": "new password 1234"}


def test_expired_session_hint(moat_bin, home, api):
    write_creds(home, api.url, ca=api.ca, session="stale")
    p = moat(moat_bin, home, "user", "list")
    assert p.returncode == 1
    assert "Not authenticated" in p.stderr and "run 'moat login'" in p.stderr


def test_token_commands(moat_bin, home, api):
    logged_in(home, api)
    p = moat(moat_bin, home, "token", "create", "--name", "ci", "--role", "metrics", "--days",
             "30")
    assert p.returncode == 0, p.stderr
    assert "token:   moat_at_NEWSECRET" in p.stdout
    assert "not shown again" in p.stderr
    assert api.requests[-1][3] == {"name": "ci", "role": "metrics", "expires_in_days": 30}
    p = moat(moat_bin, home, "token", "list")
    assert p.returncode == 0 and p.stdout.strip() == "<none>"
    p = moat(moat_bin, home, "token", "revoke", "tk1")
    assert p.returncode == 0
    assert api.requests[-1][:2] == ("DELETE", "/api/v1/tokens/tk1")
    assert api.requests[-1][2]["x-csrf-token"] == CSRF


def test_audit_list(moat_bin, home, api):
    logged_in(home, api)
    p = moat(moat_bin, home, "audit", "list", "--limit", "3", "--actor", "user:alice",
             "--since", "2026-11-22T07:10:00Z")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["SEQ", "TIME"]
    assert [l.split()[0] for l in lines[1:]] == ["7", "6", "5"]
    q = parse_qs(urlsplit(api.requests[0][1]).query)
    assert q["actor"] == ["user:alice"] and q["since"] == ["2026-11-22T07:10:00Z"]
    assert "user%3Aalice" in api.requests[0][1]
    p = moat(moat_bin, home, "audit", "list", "--all", "--json")
    assert p.returncode == 0
    assert [e["seq"] for e in json.loads(p.stdout)["items"]] == [7, 6, 5, 4, 3, 2, 1]


def test_audit_verify_api(moat_bin, home, api):
    logged_in(home, api)
    p = moat(moat_bin, home, "audit", "verify")
    assert p.returncode == 0, p.stderr
    assert "intact" in p.stdout and "7 entries" in p.stdout
    api.verify_status = "modified"
    p = moat(moat_bin, home, "audit", "verify")
    assert p.returncode == 1
    assert "NOT intact: modified at seq 4" in p.stdout
    assert "does not hash" in p.stdout
    p = moat(moat_bin, home, "audit", "verify", "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["status"] == "modified"


def test_audit_export_api_oldest_first(moat_bin, home, api, scratch, uid):
    logged_in(home, api)
    out = os.path.join(scratch, uid("export.jsonl"))
    p = moat(moat_bin, home, "audit", "export", "--out", out)
    assert p.returncode == 0, p.stderr
    seqs = [json.loads(l)["seq"] for l in open(out)]
    assert seqs == [1, 2, 3, 4, 5, 6, 7]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


@pytest.mark.parametrize("name,msg", [
    ("huge", "larger than the CLI accepts"),
    ("trunc", "closed the connection before the answer was complete"),
])
def test_bad_answers(moat_bin, home, api, name, msg):
    logged_in(home, api)
    p = moat(moat_bin, home, "user", "show", name)
    assert p.returncode == 1
    assert msg in p.stderr, p.stderr


def test_audit_offline_errors(moat_bin, home, scratch):
    p = moat(moat_bin, home, "audit", "verify", "--dir", os.path.join(scratch, "nope"))
    assert p.returncode == 1 and p.stderr.startswith("moat audit verify: ")
    p = moat(moat_bin, home, "audit", "export", "--dir", os.path.join(scratch, "nope"))
    assert p.returncode == 1 and p.stderr.startswith("moat audit export: ")
