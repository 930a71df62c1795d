"""The management API's HTTP layer over real TLS: security headers on every
answer, problem+json errors, body validation, the parser's limits
(MOAT_HTTP_* in src/core/limits.h), keep-alive and pipelining, slow clients
and the per-address connection cap. Clients: python-requests, raw
ssl+socket connections, and curl."""

import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

import apikit as ak
from apikit import admin_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("management API")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def check_security_headers(get, what):
    """get(name) -> value or None (case-insensitive)."""
    hsts = get("Strict-Transport-Security")
    assert hsts and re.search(r"max-age=\d+", hsts), "%s: HSTS %r" % (what, hsts)
    csp = get("Content-Security-Policy") or ""
    assert "default-src 'self'" in csp, "%s: CSP %r" % (what, csp)
    assert "frame-ancestors 'none'" in csp, "%s: CSP %r" % (what, csp)
    assert (get("X-Content-Type-Options") or "").lower() == "nosniff", what
    assert "no-store" in (get("Cache-Control") or ""), "%s: Cache-Control %r" % (
        what, get("Cache-Control"))
    assert (get("Referrer-Policy") or "").lower() == "no-referrer", what
    assert get("Server") is None, "%s: Server header %r" % (what, get("Server"))


def check_raw_problem(resp, status):
    assert resp.status == status, resp
    check_security_headers(resp.header, "raw %d" % status)
    assert (resp.header("Content-Type") or "").startswith("application/problem+json"), resp
    j = resp.json()
    assert j["status"] == status and j["type"].startswith(ak.PROBLEM) and j["title"], j
    return j


@pytest.fixture(scope="module")
def srv(admin_env):
    return admin_env.server


@pytest.fixture
def anon(srv):
    return srv.client()


# --------------------------------------------------------------------------
# security headers and problem answers (python-requests)
# --------------------------------------------------------------------------

def _logout_204(env):
    c = env.server.client()
    c.login(env.admin.name, env.admin.password, totp=env.admin.totp.next_code())
    return c.post("/api/v1/auth/logout")


CASES = {
    # name: (callable(env, anon) -> Response, status, problem type or None)
    "healthz-200": (lambda env, a: a.get("/healthz"), 200, None),
    "me-200": (lambda env, a: env.admin.api.get("/api/v1/me"), 200, None),
    "users-201": (lambda env, a: env.admin.api.post(
        "/api/v1/users", {"username": ak.unique("hdr-"), "role": "viewer",
                          "password": ak.strong_password()}), 201, None),
    "logout-204": (lambda env, a: _logout_204(env), 204, None),
    "unknown-404": (lambda env, a: a.get("/api/v1/nope"), 404, "not-found"),
    "healthz-405": (lambda env, a: a.delete("/healthz"), 405, "method-not-allowed"),
    "users-401": (lambda env, a: a.get("/api/v1/users"), 401, "unauthorized"),
    "csrf-403": (lambda env, a: env.admin.api.post("/api/v1/users", {}, csrf=False), 403,
                 "csrf"),
    "setup-403": (lambda env, a: a.post("/api/v1/setup", {
        "setup_token": "moat_st_x", "username": "x", "password": "y"}), 403,
        "setup-unavailable"),
    "login-415": (lambda env, a: a.post("/api/v1/auth/login", data=b"{}",
                                        headers={"Content-Type": "text/plain"}), 415,
                  "unsupported-media-type"),
    "login-400": (lambda env, a: a.post("/api/v1/auth/login", data=b"{nope",
                                        headers={"Content-Type": "application/json"}), 400,
                  "invalid-json"),
    "login-422": (lambda env, a: a.post("/api/v1/auth/login", {"bogus": 1}), 422, "validation"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_security_headers_on_every_answer(admin_env, anon, case):
    fn, status, ptype = CASES[case]
    r = fn(admin_env, anon)
    assert r.status_code == status, ak.describe(r)
    check_security_headers(r.headers.get, case)
    if ptype:
        ak.assert_problem(r, status, ptype)


def test_healthz_is_exactly_ok_without_auth(srv, anon):
    r = anon.get("/healthz")
    assert r.status_code == 200, ak.describe(r)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}
    assert r.content.strip() == b'{"status":"ok"}'
    assert "Set-Cookie" not in r.headers
    # no authentication is even looked at: bad credentials change nothing
    r2 = anon.get("/healthz", headers={"Authorization": "Bearer moat_at_garbage",
                                       "Cookie": "__Host-moat_session=garbage"})
    assert r2.status_code == 200 and r2.json() == {"status": "ok"}, ak.describe(r2)


def test_healthz_with_curl(srv):
    env = dict(os.environ)
    env.pop("CURL_CA_BUNDLE", None)
    p = subprocess.run(["curl", "--cacert", srv.ca, "-s", "-S", "-D", "-", "--max-time", "20",
                        srv.url + "/healthz"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert re.match(r"HTTP/1\.1 200\b", lines[0]), lines[0]
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    check_security_headers(lambda n: hdrs.get(n.lower()), "curl /healthz")
    assert json.loads(body) == {"status": "ok"}, body


def test_curl_verifies_the_server_against_the_data_dir_ca(srv):
    """A client that does not trust the data directory's CA is refused by
    TLS itself (curl with an unrelated CA bundle: exit 60)."""
    p = subprocess.run(["curl", "--cacert", "/etc/ssl/certs/ca-certificates.crt", "-s",
                        "--max-time", "20", srv.url + "/healthz"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 60, (p.returncode, p.stderr)


@pytest.mark.parametrize("method,path,allow", [
    ("DELETE", "/healthz", {"GET"}),
    ("POST", "/api/v1/me", {"GET"}),
    ("PUT", "/api/v1/users", {"GET", "POST"}),
    ("GET", "/api/v1/users/someone/reset-mfa", {"POST"}),
])
def test_405_names_the_allowed_methods(anon, method, path, allow):
    r = anon.request(method, path)
    ak.assert_problem(r, 405, "method-not-allowed")
    got = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
    assert allow <= got, "Allow %r for %s %s" % (r.headers.get("Allow"), method, path)


def test_404_problem(anon):
    for path in ("/", "/api/v1", "/api/v2/users", "/api/v1/users/a/b/c", "/metricsx"):
        ak.assert_problem(anon.get(path), 404, "not-found")


def test_401_problem(anon, srv):
    ak.assert_problem(anon.get("/api/v1/me"), 401, "unauthorized")
    ak.assert_problem(anon.get("/metrics"), 401, "unauthorized")
    bad = srv.client(token="moat_at_nonsense")
    ak.assert_problem(bad.get("/api/v1/me"), 401, "unauthorized")


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx", "text/json"])
def test_415_wrong_content_type(anon, ctype):
    h = {"Content-Type": ctype} if ctype else {}
    # requests sends no Content-Type for raw bytes unless told
    r = anon.post("/api/v1/auth/login", data=b'{"username":"a","password":"b"}', headers=h)
    ak.assert_problem(r, 415, "unsupported-media-type")


def test_content_type_with_charset_is_json(anon):
    r = anon.post("/api/v1/auth/login", data=b'{"bogus":1}',
                  headers={"Content-Type": "application/json; charset=utf-8"})
    ak.assert_problem(r, 422, "validation", field="bogus")


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"a":}', b"[]", b'"str"', b"1",
                                  b'{"a":1} trailing'])
def test_400_invalid_json(anon, body):
    r = anon.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})
    ak.assert_problem(r, 400, "invalid-json")


@pytest.mark.parametrize("body,field", [
    ({"username": "a", "password": "b", "bogus": 1}, "bogus"),
    ({"username": 1, "password": "b"}, "username"),
    ({"username": "a", "password": ["b"]}, "password"),
    ({"username": None, "password": "b"}, "username"),
    ({"username": "a" * 65, "password": "b"}, "username"),
    ({"username": "", "password": "b"}, "username"),
    ({"username": "a", "password": "p" * 1025}, "password"),
    ({"password": "b"}, "username"),
    ({"username": "a", "password": "b", "totp_code": 123456}, "totp_code"),
])
def test_422_validation_names_the_field(anon, body, field):
    r = anon.post("/api/v1/auth/login", body)
    ak.assert_problem(r, 422, "validation", field=field)


def test_422_on_an_authenticated_route(admin_env):
    api = admin_env.admin.api
    ak.assert_problem(api.post("/api/v1/users", {"username": "x1", "role": "viewer",
                                                 "password": ak.strong_password(), "admin": True}),
                      422, "validation", field="admin")
    ak.assert_problem(api.post("/api/v1/tokens", {"name": "t", "role": "viewer",
                                                  "expires_in_days": "9"}),
                      422, "validation", field="expires_in_days")
    ak.assert_problem(api.patch("/api/v1/users/" + admin_env.admin.name, {"disabled": "yes"}),
                      422, "validation", field="disabled")


def test_duplicate_keys_are_refused(anon, admin_env):
    """Duplicate keys never reach a handler (which value would win?)."""
    r = anon.post("/api/v1/auth/login", data=b'{"username":"a","username":"b","password":"c"}',
                  headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), ak.describe(r)
    assert r.json()["type"] in (ak.problem("invalid-json"), ak.problem("validation"))
    name = ak.unique("dup-")
    body = ('{"username":"%s","role":"viewer","role":"admin","password":"%s"}'
            % (name, ak.strong_password())).encode()
    r = admin_env.admin.api.post("/api/v1/users", data=body,
                                 headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), ak.describe(r)
    assert admin_env.admin.api.get("/api/v1/users/" + name).status_code == 404


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/auth/login", b'{"a":1,"a":2}', "a"),
    ("/api/v1/auth/login", b'{"username":"a","username":"b","password":"c"}', "username"),
    ("/api/v1/tokens", b'{"name":"n","role":"viewer","expires_in_days":9223372036854775808}',
     "expires_in_days"),
], ids=["dup-a", "dup-username", "int-beyond-64-bits"])
def test_parser_level_refusals_are_422_with_the_field(admin_env, path, body, field):
    r = admin_env.admin.api.post(path, data=body, headers={"Content-Type": "application/json"})
    ak.assert_problem(r, 422, "validation", field=field)


def test_413_body_over_16k(srv):
    # Raw connections: the server answers 413 as soon as it has read the
    # head and then closes; python-requests, still writing the body, would
    # now and then see the close instead of the answer.
    body = b'{"username":"a","password":"' + b"p" * ak.HTTP_BODY_DEFAULT + b'"}'
    c = ak.RawHttp(srv)
    try:
        c.send(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        j = check_raw_problem(c.read_response(timeout=10), 413)
        assert j["type"] == ak.problem("payload-too-large"), j
        assert c.wait_closed(timeout=10) == []
    finally:
        c.close()
    # announced but never sent: refused from the head alone, then closed
    c = ak.RawHttp(srv)
    try:
        c.send(("POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                "\r\nContent-Length: %d\r\n\r\n" % (ak.HTTP_BODY_DEFAULT + 1)).encode())
        j = check_raw_problem(c.read_response(timeout=10), 413)
        assert j["type"] == ak.problem("payload-too-large"), j
        assert c.wait_closed(timeout=10) == []
    finally:
        c.close()


def test_body_of_exactly_16k_is_read(anon):
    """The limit is the route's 16 KiB: a body of exactly that size is parsed
    (and refused by validation, not by size)."""
    head = b'{"username":"a","password":"'
    tail = b'"}'
    body = head + b"p" * (ak.HTTP_BODY_DEFAULT - len(head) - len(tail)) + tail
    assert len(body) == ak.HTTP_BODY_DEFAULT
    r = anon.post("/api/v1/auth/login", data=body, headers={"Content-Type": "application/json"})
    ak.assert_problem(r, 422, "validation", field="password")


def test_get_route_takes_no_body(srv):
    c = ak.RawHttp(srv)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        resp = c.read_response(timeout=10)
        assert resp.status in (400, 413), resp
        check_raw_problem(resp, resp.status)
    finally:
        c.close()


# --------------------------------------------------------------------------
# raw connections
# --------------------------------------------------------------------------

@pytest.fixture
def raw(srv):
    made = []

    def make(**kw):
        c = ak.RawHttp(srv, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_keep_alive_two_requests_on_one_connection(raw):
    c = raw()
    for _ in range(3):
        c.send(ak.get_request("/healthz"))
        r = c.read_response()
        assert r.status == 200 and r.json() == {"status": "ok"}, r
        assert (r.header("Connection") or "").lower() != "close", r.headers
    c.send(ak.get_request("/api/v1/nope"))
    r = c.read_response()
    assert r.status == 404, r
    check_raw_problem(r, 404)


def test_pipelining_answers_in_order(raw):
    c = raw()
    c.send(ak.get_request("/healthz") + ak.get_request("/api/v1/nope") +
           ak.get_request("/api/v1/me") + ak.get_request("/healthz", close=True))
    got = [c.read_response().status for _ in range(4)]
    assert got == [200, 404, 401, 200], got
    assert c.wait_closed(timeout=10) == []


def test_connection_close_is_honoured(raw):
    c = raw()
    c.send(ak.get_request("/healthz", close=True))
    r = c.read_response()
    assert r.status == 200 and (r.header("Connection") or "").lower() == "close", r.headers
    assert c.wait_closed(timeout=10) == []


def test_target_at_the_limit_is_served(raw):
    path = "/api/v1/" + "a" * (ak.HTTP_MAX_TARGET - len("/api/v1/"))
    assert len(path) == ak.HTTP_MAX_TARGET
    c = raw()
    c.send(ak.get_request(path))
    r = c.read_response()
    assert r.status == 404, r


def test_414_target_too_long(raw):
    c = raw()
    c.send(ak.get_request("/api/v1/" + "a" * ak.HTTP_MAX_TARGET))
    check_raw_problem(c.read_response(), 414)
    assert c.wait_closed(timeout=10) == []


def test_64_headers_are_fine(raw):
    extra = "".join("X-H%d: v\r\n" % i for i in range(ak.HTTP_MAX_HEADERS - 1))  # + Host
    c = raw()
    c.send(ak.get_request("/healthz", extra=extra))
    assert c.read_response().status == 200


def test_431_too_many_headers(raw):
    extra = "".join("X-H%d: v\r\n" % i for i in range(ak.HTTP_MAX_HEADERS))  # + Host = 65
    c = raw()
    c.send(ak.get_request("/healthz", extra=extra))
    check_raw_problem(c.read_response(), 431)
    assert c.wait_closed(timeout=10) == []


def test_431_head_too_large(raw):
    extra = "".join("X-Big%d: %s\r\n" % (i, "v" * 1000) for i in range(20))
    assert len(extra) > ak.HTTP_MAX_HEAD
    c = raw()
    c.send(ak.get_request("/healthz", extra=extra))
    check_raw_problem(c.read_response(), 431)
    assert c.wait_closed(timeout=10) == []


@pytest.mark.parametrize("line", [b"GET /hea lthz HTTP/1.1", b"GET * HTTP/1.1",
                                  b"GET healthz HTTP/1.1", b"GET /healthz\x00 HTTP/1.1",
                                  b"GET http://x/healthz HTTP/1.1"])
def test_malformed_request_line_400_then_close(raw, line):
    c = raw()
    c.send(line + b"\r\nHost: x\r\n\r\n")
    got = c.wait_closed(timeout=10)
    assert [r.status for r in got] == [400], got
    check_raw_problem(got[0], 400)


@pytest.mark.parametrize("line,status", [(b"GARBAGE", 501), (b"GET", 501),
                                         (b"get /healthz HTTP/1.1", 501),
                                         (b"GET /healthz HTTP/2.0", 505),
                                         (b"GET /healthz", 505)])
def test_unknown_method_or_version_refused_then_close(raw, line, status):
    c = raw()
    c.send(line + b"\r\nHost: x\r\n\r\n")
    got = c.wait_closed(timeout=10)
    assert len(got) == 1 and got[0].status in (400, status), got
    check_raw_problem(got[0], got[0].status)


def test_head_is_get_without_body(raw):
    c = raw()
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + ak.get_request("/healthz"))
    r = c.read_response(head=True)
    assert r.status == 200 and r.body == b"", r
    assert r.header("Content-Length") == str(len(b'{"status":"ok"}')), r.headers
    check_security_headers(r.header, "HEAD /healthz")
    # nothing was sent after the head: the next answer starts right there
    r = c.read_response()
    assert r.status == 200 and r.json() == {"status": "ok"}, r


def _post_raw(raw, head_lines, body=b""):
    c = raw()
    c.send(("POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            "\r\n%s\r\n" % "".join(l + "\r\n" for l in head_lines)).encode() + body)
    return c


def test_expect_100_continue(raw):
    body = b'{"bogus":1}'
    c = _post_raw(raw, ["Expect: 100-continue", "Content-Length: %d" % len(body)])
    r = c.read_response()
    assert r.status == 100, r
    c.send(body)
    r = c.read_response()
    assert r.status == 422 and r.json()["field"] == "bogus", r


def test_chunked_request_body(raw):
    body = b'{"bogus":1}'
    c = _post_raw(raw, ["Transfer-Encoding: chunked"],
                  b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    r = c.read_response()
    assert r.status == 422 and r.json()["field"] == "bogus", r


@pytest.mark.parametrize("lines", [
    ["Content-Length: 11", "Transfer-Encoding: chunked"],  # request smuggling
    ["Content-Length: 11", "Content-Length: 12"],
    ["Content-Length: -1"],
    ["Content-Length: 1x"],
], ids=["cl-and-te", "two-lengths", "negative", "not-a-number"])
def test_ambiguous_body_framing_400_then_close(raw, lines):
    c = _post_raw(raw, lines, b'b\r\n{"bogus":1}\r\n0\r\n\r\n')
    got = c.wait_closed(timeout=10)
    assert [r.status for r in got] == [400], got
    check_raw_problem(got[0], 400)


@pytest.mark.parametrize("body", [b'{"username":"\xff\xfe","password":"x"}',
                                  b'{"username":"a\\u0000b","password":"xx"}',
                                  b'{"username":"\\ud800","password":"xx"}'],
                         ids=["not-utf8", "nul", "lone-surrogate"])
def test_bad_text_in_json_refused(raw, body):
    c = _post_raw(raw, ["Content-Length: %d" % len(body)], body)
    r = c.read_response()
    assert r.status in (400, 422), r
    j = check_raw_problem(r, r.status)
    assert j["type"] in (ak.problem("invalid-json"), ak.problem("validation")), j


def test_http_1_0_closes_after_the_answer(raw):
    c = raw()
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    got = c.wait_closed(timeout=10)
    assert [r.status for r in got] == [200], got


def test_http_1_1_without_host_is_400(raw):
    c = raw()
    c.send(b"GET /healthz HTTP/1.1\r\n\r\n")
    r = c.read_response()
    assert r.status == 400, r


def test_slowloris_partial_head_is_cut_off(raw):
    c = raw(timeout=40)
    c.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    t0 = time.monotonic()
    got = c.wait_closed(timeout=30)  # generous upper bound: never tighter than 30 s
    elapsed = time.monotonic() - t0
    assert all(r.status == 408 for r in got), got
    # the deadline is the head timeout from the first byte, not sooner
    assert elapsed >= ak.HTTP_HEADER_TIMEOUT_S - 2.0, elapsed


def test_connections_per_address_capped(srv):
    src = ak.new_source()
    conns = []
    try:
        for i in range(ak.HTTP_MAX_CONNS_PER_ADDR):
            conns.append(ak.RawHttp(srv, source=src, timeout=10))
        conns[0].send(ak.get_request("/healthz"))
        assert conns[0].read_response().status == 200
        # the 17th from the same address: accepted and closed at once
        refused = False
        try:
            extra = ak.RawHttp(srv, source=src, timeout=10)
        except (ssl.SSLError, ConnectionError, OSError):
            refused = True
        else:
            try:
                extra.send(ak.get_request("/healthz"))
                assert extra.wait_closed(timeout=10) == []
                refused = True
            except (ssl.SSLError, ConnectionError):
                refused = True
            finally:
                extra.close()
        assert refused
        # another address is not affected
        other = ak.RawHttp(srv)
        other.send(ak.get_request("/healthz", close=True))
        assert other.read_response().status == 200
        other.close()
    finally:
        for c in conns:
            c.close()
    # once they are closed, the address may connect again
    deadline = time.monotonic() + 10
    while True:
        try:
            c = ak.RawHttp(srv, source=src, timeout=5)
            c.send(ak.get_request("/healthz", close=True))
            assert c.read_response().status == 200
            c.close()
            break
        except (ssl.SSLError, ConnectionError, OSError, ak.Closed):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_plain_http_to_the_https_port_is_refused(srv):
    s = socket.create_connection((ak.HOST, srv.api_port), timeout=10)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert b'{"status":"ok"}' not in data
        assert not data.startswith(b"HTTP/1.1 200")
    finally:
        s.close()


def test_control_characters_in_strings_are_refused(admin_env):
    r = admin_env.admin.api.post("/api/v1/tokens", json={"name": "\u0001ctl", "role": "viewer"})
    assert r.status_code == 422, ak.describe(r)
    assert r.json()["field"] == "name"
    listed = admin_env.admin.api.get("/api/v1/tokens?limit=200").json()["items"]
    assert not [t for t in listed if "ctl" in t["name"]]


# --------------------------------------------------------------------------
# idle connections hold no buffers (the server's own accounting)
# --------------------------------------------------------------------------

def _metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, "no %s in /metrics" % name
    return float(m.group(1))


def test_idle_keep_alive_connections_hold_no_buffers(admin_env):
    """Eight keep-alive connections, each after a request with a 16 KiB
    body and one with a big answer: once idle, the server counts them as
    idle and their parser arena, body and output buffers are given back
    (moat_http_idle_buffer_bytes is 0)."""
    srv = admin_env.server
    src = ak.new_source()
    conns = []
    try:
        for i in range(8):
            c = ak.RawHttp(srv, source=src)
            conns.append(c)
            body = json.dumps({"username": "x" * 20, "pad": "y" * 16000})[:16384]
            c.send(("POST /api/v1/setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    "\r\nContent-Length: %d\r\n\r\n" % len(body)).encode() + body.encode())
            assert c.read_response().status in (400, 403, 409, 410, 422), i
            c.send(ak.get_request("/healthz"))
            assert c.read_response().status == 200
        m = admin_env.admin.api.get("/metrics")
        assert m.status_code == 200, ak.describe(m)
        assert _metric(m.text, "moat_http_connections_idle") >= 8, m.text
        assert _metric(m.text, "moat_http_idle_buffer_bytes") == 0, m.text
        # while a request is half-sent, its connection is not idle and holds
        # the parser's arena
        conns[0].send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        m = admin_env.admin.api.get("/metrics")
        assert _metric(m.text, "moat_http_connection_buffer_bytes_max") > 16384, m.text
        assert _metric(m.text, "moat_http_idle_buffer_bytes") == 0, m.text
    finally:
        for c in conns:
            c.close()
