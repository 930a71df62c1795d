"""src/http for large and long-lived exchanges, through moat-http-testd
(src/http's server with a test-only route table, built next to moat):
request bodies streamed to a handler callback or to a file, answers
streamed from a callback with Content-Length or chunked, with the server's
own accounting showing that memory does not grow with the size. Clients:
raw ssl+socket, http.client and curl."""

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

import mqttkit as mk

pytestmark = pytest.mark.moat_only("src/http test server")

HOST = "127.0.0.1"
STREAM_MAX = 512 * 1024 * 1024  # the streamed routes' limit in this test
BIG = 300 * 1024 * 1024         # a body far over anything buffered (MOAT_HTTP_BODY_MAX)


class HttpTestd:
    def __init__(self, moat_bin, workdir, **opts):
        binary = os.path.join(os.path.dirname(os.path.abspath(moat_bin)), "moat-http-testd")
        if not os.access(binary, os.X_OK):
            pytest.fail("moat-http-testd not found next to %s (a build with tests)" % moat_bin,
                        pytrace=False)
        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        self.cert = os.path.join(workdir, "server.crt")
        self.key = os.path.join(workdir, "server.key")
        mk.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out", self.cert,
                "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        self.port = mk.free_port()
        args = [binary, "--port", str(self.port), "--cert", self.cert, "--key", self.key,
                "--stream-max", str(opts.get("stream_max", STREAM_MAX))]
        for k in ("upload_dir", "static"):
            if opts.get(k):
                args += ["--" + k.replace("_", "-"), opts[k]]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", (line, self.proc.stderr.read())

    def ctx(self):
        c = ssl.create_default_context(cafile=self.cert)
        return c

    def conn(self, timeout=60):
        return http.client.HTTPSConnection(HOST, self.port, context=self.ctx(), timeout=timeout)

    def raw(self, timeout=60):
        s = socket.create_connection((HOST, self.port), timeout=timeout)
        return self.ctx().wrap_socket(s, server_hostname=HOST)

    def get_json(self, path):
        c = self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def stats(self):
        return self.get_json("/stats")[1]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read()
        assert "Sanitizer" not in err and "runtime error" not in err, err


@pytest.fixture(scope="module")
def tsrv(moat_bin, scratch):
    d = os.path.join(scratch, "http-stream-%d" % os.getpid())
    up = os.path.join(d, "uploads")
    st = os.path.join(d, "static")
    os.makedirs(up, exist_ok=True)
    os.makedirs(st, exist_ok=True)
    s = HttpTestd(moat_bin, d, upload_dir=up, static=st)
    s.uploads, s.static = up, st
    yield s
    s.stop()


def pattern(n):
    """Bytes i % 251 for i in [0, n): what GET /gen/N sends."""
    block = bytes(i % 251 for i in range(251 * 256))
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


def generated_chunks(total, piece=1 << 20):
    """A body of `total` bytes produced on the fly (never held whole)."""
    block = os.urandom(piece)
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        yield block[:n]
        sent += n


def stream_put(srv, path, total, chunked=False, piece=1 << 20):
    """PUT a generated body; returns (status, json, sha256 of what was sent)."""
    h = hashlib.sha256()
    c = srv.raw(timeout=120)
    try:
        head = "PUT %s HTTP/1.1\r\nHost: x\r\n" % path
        head += "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % total
        c.sendall((head + "\r\n").encode())
        for part in generated_chunks(total, piece):
            h.update(part)
            if chunked:
                c.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            else:
                c.sendall(part)
        if chunked:
            c.sendall(b"0\r\n\r\n")
        f = c.makefile("rb")
        status = int(f.readline().split()[1])
        n = 0
        while True:
            line = f.readline().strip()
            if not line:
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                n = int(v)
        return status, json.loads(f.read(n)), h.hexdigest()
    finally:
        c.close()


# --------------------------------------------------------------------------
# streamed request bodies
# --------------------------------------------------------------------------

def test_big_streamed_body_in_constant_memory(tsrv):
    """300 MiB (Content-Length) and 64 MiB (chunked) to a callback: every
    byte arrives (the handler's SHA-256 matches) and no connection ever
    held more than a few tens of KiB of buffers."""
    status, j, digest = stream_put(tsrv, "/upload/sink", BIG)
    assert status == 200, j
    assert j["bytes"] == BIG and j["streamed"] == BIG and j["sha256"] == digest, j
    status, j, digest = stream_put(tsrv, "/upload/sink", 64 << 20, chunked=True)
    assert status == 200 and j["bytes"] == 64 << 20 and j["sha256"] == digest, j
    st = tsrv.stats()
    # the parser arena (~22 KiB) and the output buffer: nothing near the body
    assert st["conn_bytes_max"] < 128 * 1024, st
    assert 0 < st["sink_chunk_max"] <= 64 * 1024, st
    assert st["sink_chunks"] >= BIG // (64 * 1024), st


def test_streamed_body_over_the_route_limit_is_413_before_reading(moat_bin, scratch):
    srv = HttpTestd(moat_bin, os.path.join(scratch, "http-stream-small"), stream_max=100000)
    try:
        c = srv.conn()
        c.request("PUT", "/upload/sink", body=b"x" * 100000)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["bytes"] == 100000
        c.close()
        # declared too big: refused from the head
        c = srv.raw()
        c.sendall(b"PUT /upload/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 100001\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 413 "), "413"
        c.close()
        # chunked, over the limit while streaming: 413, and the handler's
        # sink was told to undo (abort)
        aborts = srv.stats()["aborts"]
        status = None
        c = srv.raw()
        try:
            c.sendall(b"PUT /upload/sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(20):
                c.sendall(b"2710\r\n" + b"y" * 10000 + b"\r\n")
            status = c.recv(4096)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            c.close()
        assert status is None or status.startswith(b"HTTP/1.1 413 "), status
        mk.wait_until(lambda: srv.stats()["aborts"] == aborts + 1, what="sink aborted")
    finally:
        srv.stop()


def test_refusal_before_the_body_is_read(tsrv):
    """The handler answers from the head: 403 at once, the body unread,
    then the connection closes."""
    c = tsrv.raw()
    try:
        c.sendall(b"PUT /upload/refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        got = c.recv(4096)
        assert got.startswith(b"HTTP/1.1 403 "), got
        assert b"100 Continue" not in got and b"Connection: close" in got, got
    finally:
        c.close()


def test_expect_continue_then_stream(tsrv):
    c = tsrv.raw()
    try:
        c.sendall(b"PUT /upload/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        got = c.recv(4096)
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
        c.sendall(b"hello")
        got = got[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"}" not in got:
            got += c.recv(4096)
        assert got.startswith(b"HTTP/1.1 200 ") and b'"bytes":5' in got, got
    finally:
        c.close()


def test_upload_to_a_file(tsrv):
    name = "artifact-%d.bin" % time.monotonic_ns()
    status, j, digest = stream_put(tsrv, "/upload/file/" + name, 20 << 20, piece=300000)
    assert status == 201 and j == {"name": name, "bytes": 20 << 20}, j
    with open(os.path.join(tsrv.uploads, name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    # O_EXCL: the same name again is refused, the file untouched
    status, j, _ = stream_put(tsrv, "/upload/file/" + name, 10)
    assert status == 409, j
    assert os.path.getsize(os.path.join(tsrv.uploads, name)) == 20 << 20
    # a symlink in the upload directory is never followed
    link = "link-%d" % time.monotonic_ns()
    target = os.path.join(tsrv.dir, "outside-%d" % time.monotonic_ns())
    os.symlink(target, os.path.join(tsrv.uploads, link))
    status, j, _ = stream_put(tsrv, "/upload/file/" + link, 10)
    assert status == 409 and not os.path.exists(target), j


def test_interrupted_upload_leaves_no_file(tsrv):
    name = "partial-%d.bin" % time.monotonic_ns()
    c = tsrv.raw()
    c.sendall(b"PUT /upload/file/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
              % name.encode())
    c.sendall(b"z" * 1000000)
    path = os.path.join(tsrv.uploads, name)
    mk.wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0,
                  what="the upload started")
    c.close()
    mk.wait_until(lambda: not os.path.exists(path), what="the partial file removed")


# --------------------------------------------------------------------------
# streamed answers
# --------------------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True])
def test_streamed_answer(tsrv, chunked):
    n = 5 * 1000 * 1000 + 7
    c = tsrv.conn()
    try:
        c.request("GET", "/gen/%d%s" % (n, "?chunked=1" if chunked else ""))
        r = c.getresponse()
        assert r.status == 200
        if chunked:
            assert r.getheader("Transfer-Encoding") == "chunked" and \
                r.getheader("Content-Length") is None
        else:
            assert r.getheader("Content-Length") == str(n)
        assert r.getheader("Cache-Control") == "no-store"
        body = r.read()
        assert len(body) == n and body == pattern(n)
        # keep-alive after a streamed answer
        c.request("GET", "/gen/10")
        r = c.getresponse()
        assert r.read() == pattern(10)
    finally:
        c.close()


def test_streamed_answer_with_curl(tsrv):
    n = 3 << 20
    out = subprocess.run(["curl", "-sS", "--cacert", tsrv.cert, "-o", "-",
                          "https://%s:%d/gen/%d?chunked=1" % (HOST, tsrv.port, n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == pattern(n)


def test_slow_reader_backpressure_and_pipelining(tsrv):
    """A 200 MiB answer to a client that reads slowly: the server writes
    only while TLS takes it (its buffers stay small), and a request
    pipelined behind it is answered after it, in order."""
    n = 200 << 20
    c = tsrv.raw()
    try:
        c.sendall(b"GET /gen/%d HTTP/1.1\r\nHost: x\r\n\r\nGET /gen/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                  % n)
        got = c.recv(65536)
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        time.sleep(1.0)  # the reader stalls; the server must wait, not buffer
        st = tsrv.stats()
        assert st["conn_bytes_max"] < 128 * 1024, st
        left = n - len(rest)
        h = hashlib.sha256(rest)
        while left > 0:
            b = c.recv(min(1 << 20, left))
            assert b
            h.update(b)
            left -= len(b)
        assert h.hexdigest() == hashlib.sha256(pattern(n)).hexdigest()
        tail = b""
        while not tail.endswith(pattern(3)):
            tail += c.recv(4096)
        assert tail.startswith(b"HTTP/1.1 200 "), tail
        assert tsrv.stats()["conn_bytes_max"] < 128 * 1024
    finally:
        c.close()


def test_head_of_a_streamed_answer_has_no_body(tsrv):
    c = tsrv.raw()
    try:
        c.sendall(b"HEAD /gen/1000 HTTP/1.1\r\nHost: x\r\n\r\nGET /gen/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(pattern(2)):
            got += c.recv(4096)
        first, _, second = got.partition(b"\r\n\r\n")
        assert b"Content-Length: 1000" in first, first
        assert second.startswith(b"HTTP/1.1 200 "), second
    finally:
        c.close()


def test_http_1_0_unknown_length_closes(tsrv):
    c = tsrv.raw()
    try:
        c.sendall(b"GET /gen/100000?chunked=1 HTTP/1.0\r\n\r\n")
        got = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head and b"Connection: close" in head, head
        assert body == pattern(100000)
    except ssl.SSLError:
        pass
    finally:
        c.close()


def test_idle_after_streaming_holds_nothing(tsrv):
    c = tsrv.conn()
    try:
        c.request("GET", "/gen/100000")
        c.getresponse().read()
        c.request("PUT", "/upload/sink", body=b"q" * 100000)
        assert c.getresponse().status == 200
        st = tsrv.stats()
        assert st["idle"] >= 1 and st["idle_bytes"] == 0, st
    finally:
        c.close()


# --------------------------------------------------------------------------
# files: ETag, 304, ranges, confinement (GET /files/{file*} serves --static)
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tsrv):
    d = os.path.join(tsrv.static, "console")
    os.makedirs(os.path.join(d, "css"), exist_ok=True)
    data = os.urandom(100000)
    with open(os.path.join(d, "css", "app.css"), "wb") as f:
        f.write(data)
    with open(os.path.join(d, "index.html"), "wb") as f:
        f.write(b"<!doctype html><title>console</title>")
    with open(os.path.join(tsrv.dir, "secret.txt"), "w") as f:
        f.write("outside the static directory")
    os.symlink(os.path.join(tsrv.dir, "secret.txt"), os.path.join(tsrv.static, "abs-link"))
    os.symlink("../secret.txt", os.path.join(tsrv.static, "rel-link"))
    os.symlink("console/index.html", os.path.join(tsrv.static, "inside-link"))
    return data


def curl(tsrv, path, *args):
    """(status, headers dict (lower-case names), body) via curl."""
    out = subprocess.run(["curl", "-sS", "--cacert", tsrv.cert, "-D", "-", "-o", "-"] +
                         list(args) + ["https://%s:%d%s" % (HOST, tsrv.port, path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, body


def test_static_file_etag_and_304(tsrv, files):
    st, h, body = curl(tsrv, "/files/console/css/app.css")
    assert st == 200 and body == files, (st, h)
    assert h["content-type"] == "text/css; charset=utf-8" and h["accept-ranges"] == "bytes"
    assert h["cache-control"] == "no-cache" and h["content-length"] == "100000", h
    etag = h["etag"]
    assert etag.startswith('"') and not etag.startswith("W/"), etag
    # still there: the security headers of every answer
    assert "nosniff" in h["x-content-type-options"] and "default-src" in h["content-security-policy"]
    st, h2, body = curl(tsrv, "/files/console/css/app.css", "-H", "If-None-Match: " + etag)
    assert st == 304 and body == b"" and h2["etag"] == etag, (st, h2)
    st, _, _ = curl(tsrv, "/files/console/css/app.css", "-H", 'If-None-Match: "x", W/' + etag)
    assert st == 304
    st, _, _ = curl(tsrv, "/files/console/css/app.css", "-H", "If-None-Match: *")
    assert st == 304
    st, _, body = curl(tsrv, "/files/console/css/app.css", "-H", 'If-None-Match: "other"')
    assert st == 200 and body == files
    st, h, body = curl(tsrv, "/files/console/index.html")
    assert st == 200 and h["content-type"].startswith("text/html") and body.startswith(b"<!doc")
    # a change makes a new ETag
    p = os.path.join(tsrv.static, "console", "index.html")
    with open(p, "ab") as f:
        f.write(b"<p>more")
    st, h3, _ = curl(tsrv, "/files/console/index.html", "-H", "If-None-Match: " + h["etag"])
    assert st == 200 and h3["etag"] != h["etag"]


@pytest.mark.parametrize("rng,first,last", [
    ("100-199", 100, 199), ("0-0", 0, 0), ("99990-", 99990, 99999), ("-500", 99500, 99999),
    ("99000-200000", 99000, 99999), ("-200000", 0, 99999)])
def test_static_single_range(tsrv, files, rng, first, last):
    st, h, body = curl(tsrv, "/files/console/css/app.css", "-H", "Range: bytes=" + rng)
    assert st == 206, (st, h)
    assert h["content-range"] == "bytes %d-%d/100000" % (first, last), h
    assert body == files[first:last + 1] and h["content-length"] == str(last - first + 1)


@pytest.mark.parametrize("rng", ["bytes=100000-", "bytes=200000-300000", "bytes=-0"])
def test_static_range_unsatisfiable_416(tsrv, files, rng):
    st, h, body = curl(tsrv, "/files/console/css/app.css", "-H", "Range: " + rng)
    assert st == 416 and h["content-range"] == "bytes */100000", (st, h)
    assert json.loads(body)["status"] == 416


@pytest.mark.parametrize("rng", ["bytes=0-1,5-6", "items=0-5", "bytes=5-1", "bytes=x-y", "bytes"])
def test_static_other_ranges_are_ignored(tsrv, files, rng):
    st, h, body = curl(tsrv, "/files/console/css/app.css", "-H", "Range: " + rng)
    assert st == 200 and body == files, (st, h)


def test_static_if_range(tsrv, files):
    _, h, _ = curl(tsrv, "/files/console/css/app.css")
    st, _, body = curl(tsrv, "/files/console/css/app.css", "-H", "Range: bytes=0-9",
                       "-H", "If-Range: " + h["etag"])
    assert st == 206 and body == files[:10]
    for other in ('"stale"', "W/" + h["etag"], "Tue, 01 Dec 2026 00:00:00 GMT"):
        st, _, body = curl(tsrv, "/files/console/css/app.css", "-H", "Range: bytes=0-9",
                           "-H", "If-Range: " + other)
        assert st == 200 and body == files, other


def test_static_resume_a_download_with_curl(tsrv, files):
    """curl -C: a partial download completed with a range request."""
    out = os.path.join(tsrv.dir, "dl-%d" % time.monotonic_ns())
    with open(out, "wb") as f:
        f.write(files[:12345])
    p = subprocess.run(["curl", "-sS", "--cacert", tsrv.cert, "-C", "-", "-o", out,
                        "https://%s:%d/files/console/css/app.css" % (HOST, tsrv.port)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    with open(out, "rb") as f:
        assert f.read() == files


@pytest.mark.parametrize("path", [
    "/files/abs-link", "/files/rel-link", "/files/console", "/files/console/",
    "/files/../secret.txt", "/files/console/../../secret.txt", "/files/%2e%2e/secret.txt",
    "/files/console/%2e%2e/rel-link", "/files/console%00.css", "/files/console/css//app.css",
    "/files/nope.css", "/files/console\\css\\app.css"])
def test_static_confinement(tsrv, files, path):
    c = tsrv.raw()
    try:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        got = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
    except ssl.SSLError:
        pass
    finally:
        c.close()
    assert got.split(b"\r\n", 1)[0] in (b"HTTP/1.1 404 Not Found", b"HTTP/1.1 400 Bad Request"), got
    assert b"outside the static" not in got


def test_static_symlink_inside_is_followed(tsrv, files):
    st, _, body = curl(tsrv, "/files/inside-link")
    assert st == 200 and body.startswith(b"<!doctype html>")


def test_static_head_and_big_file_in_constant_memory(tsrv, files):
    p = os.path.join(tsrv.static, "big.bin")
    with open(p, "wb") as f:
        for part in generated_chunks(64 << 20):
            f.write(part)
    st, h, body = curl(tsrv, "/files/big.bin", "-I")
    assert st == 200 and h["content-length"] == str(64 << 20) and len(body) < 100
    assert h["content-type"] == "application/octet-stream"
    st, h, body = curl(tsrv, "/files/big.bin", "-H", "Range: bytes=%d-" % (32 << 20))
    assert st == 206 and len(body) == 32 << 20
    with open(p, "rb") as f:
        f.seek(32 << 20)
        assert f.read() == body
    assert tsrv.stats()["conn_bytes_max"] < 128 * 1024


# --------------------------------------------------------------------------
# WebSocket (GET /ws: an echo handler)
# --------------------------------------------------------------------------

import wskit  # noqa: E402


def ws_open(tsrv, **kw):
    host = "%s:%d" % (HOST, tsrv.port)
    return wskit.WebSocket.open(tsrv.raw(timeout=20), "/ws", host, **kw)


def test_websocket_echo_and_close(tsrv):
    before = tsrv.stats()
    ws, hs = ws_open(tsrv, origin="https://%s:%d" % (HOST, tsrv.port))
    assert hs.status == 101 and hs.header("upgrade") == "websocket", hs.headers
    assert ws.recv() == (wskit.TEXT, b"hello")  # sent by on_open
    ws.send(wskit.TEXT, "ping me")
    assert ws.recv() == (wskit.TEXT, b"ping me")
    ws.send(wskit.BINARY, bytes(range(256)) * 200)  # 51200 bytes: under the limit
    assert ws.recv() == (wskit.BINARY, bytes(range(256)) * 200)
    # a fragmented message is one message
    ws.send(wskit.TEXT, "frag", fin=False)
    ws.send(0, "mented")
    assert ws.recv() == (wskit.TEXT, b"fragmented")
    ws.send(wskit.PING, "p")
    assert ws.recv() == (wskit.PONG, b"p")
    ws.send(wskit.TEXT, "close")
    assert ws.close_code(ws.recv()) == 1000
    ws.send(wskit.CLOSE, b"\x03\xe8")
    assert ws.s.recv(10) == b""
    ws.s.close()
    mk.wait_until(lambda: tsrv.stats()["ws_closed"] == before["ws_closed"] + 1,
                  what="close_cb called once")
    st = tsrv.stats()
    assert st["ws_open"] == before["ws_open"] + 1


def test_websocket_frames_sent_with_the_upgrade(tsrv):
    """Frames that arrive in the same packet as the upgrade request."""
    s = tsrv.raw()
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ws = wskit.WebSocket(s)
    req = ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode()
    k = b"\x01\x02\x03\x04"
    frame = bytes([0x81, 0x80 | 3]) + k + bytes(b ^ k[i] for i, b in enumerate(b"abc"))
    s.sendall(req + frame)
    ws._need(4)
    head, ws.buf = ws.buf.split(b"\r\n\r\n", 1) if b"\r\n\r\n" in ws.buf else (b"", ws.buf)
    while not head:
        ws.buf += s.recv(4096)
        if b"\r\n\r\n" in ws.buf:
            head, ws.buf = ws.buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101 ")
    # RFC 6455's own example key and accept
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, head
    assert ws.recv() == (wskit.TEXT, b"hello")
    assert ws.recv() == (wskit.TEXT, b"abc")
    s.close()


@pytest.mark.parametrize("kw,status", [
    ({"origin": "https://evil.example"}, 403),
    ({"origin": "http://127.0.0.1"}, 403),
    ({"version": "8"}, 426),
    ({"version": None}, 426),
    ({"key": "short"}, 400),
    ({"key": "!!!!!!!!!!!!!!!!!!!!!!=="}, 400),
])
def test_websocket_handshake_refusals(tsrv, kw, status):
    ws, hs = ws_open(tsrv, **kw)
    assert ws is None and hs.status == status, (hs.status, hs.body)
    if status == 426:
        assert hs.header("sec-websocket-version") == "13"
    assert json.loads(hs.body)["status"] == status


def test_websocket_limits(tsrv):
    # a message over MOAT_HTTP_WS_MAX_MSG (64 KiB): 1009
    ws, _ = ws_open(tsrv)
    assert ws.recv()[0] == wskit.TEXT
    try:
        ws.send(wskit.BINARY, b"x" * (64 * 1024 + 1))
    except (ConnectionError, ssl.SSLError):
        pass  # refused from the frame header: the rest may not be taken
    assert ws.close_code(ws.recv()) == 1009
    ws.s.close()
    # an unmasked client frame is a protocol error: 1002
    ws, _ = ws_open(tsrv)
    assert ws.recv()[0] == wskit.TEXT
    ws.send(wskit.TEXT, "x", mask=False)
    assert ws.close_code(ws.recv()) == 1002
    ws.s.close()
    # a client that does not read: sends are refused past the queue limit
    # (MOAT_HTTP_WS_MAX_QUEUE, 1 MiB) instead of buffering without end
    ws, _ = ws_open(tsrv)
    assert ws.recv()[0] == wskit.TEXT
    ws.send(wskit.TEXT, "flood")
    mk.wait_until(lambda: tsrv.stats()["ws_full"] >= 1, what="the queue filled")
    st = tsrv.stats()
    assert st["conn_bytes_max"] < 2 * 1024 * 1024, st
    while True:  # wslay may send the close before the queued messages
        op, payload = ws.recv()
        if op == wskit.CLOSE:
            assert ws.close_code((op, payload)) == 1008
            queued = int(payload[2:].split()[1])
            assert 0 < queued * 32768 <= 1024 * 1024, queued
            break
    ws.s.close()
