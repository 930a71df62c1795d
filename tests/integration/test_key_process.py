"""The key process (issue 9, section 6): `moat serve`'s serving process never
opens ca.key, audit.key or seal.key -- the key process forked at start holds
the CA key, the audit signing key and the sealing key (the TLS key
server.key stays with the serving process, which handshakes with it) --
audit checkpoints it signs
verify offline, and TOTP seeds are sealed at rest under seal.key, bound to
their operator and column, with plaintext seeds from before sealed at
start."""

import base64
import os
import shutil
import signal
import sqlite3
import stat
import time

import pytest

import apikit as ak
from apikit import admin_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.moat_only("key process")

KEY_FILES = ("ca.key", "audit.key", "seal.key")


def db_files(d):
    """moat.db and its write-ahead log: a seed may sit in either."""
    out = b""
    for name in ("moat.db", "moat.db-wal"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            with open(p, "rb") as f:
                out += f.read()
    return out


def db_query(d, sql, args=()):
    con = sqlite3.connect(os.path.join(d, "moat.db"), timeout=15)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def db_exec(d, sql, args=()):
    con = sqlite3.connect(os.path.join(d, "moat.db"), timeout=15)
    try:
        with con:
            return con.execute(sql, args).rowcount
    finally:
        con.close()


def raw_seed(b32):
    return base64.b32decode(b32 + "=" * (-len(b32) % 8))


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


# --------------------------------------------------------------------------
# the serving process never opens a key file
# --------------------------------------------------------------------------

def test_serving_process_never_opens_a_key(moat_bin, scratch):
    """strace -ff writes one file per thread and process: the key process's
    file shows the key files opened (so the trace works), no other does."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (scripts/install-deps installs it)")
    s = ak.ApiServer(moat_bin, scratch, "keys-strace")
    # A data directory from before the key process: no seal.key yet, which
    # must be created by the key process, not by the serving process.
    os.unlink(os.path.join(s.dir, "seal.key"))
    prefix = os.path.join(scratch, os.path.basename(s.dir) + "-trace")
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    # (LeakSanitizer traces its own process at exit, which it cannot under
    # strace; a sanitizer build is still checked for everything else.)
    s.broker.command = lambda: [strace, "-qq", "-ff", "-o", prefix, "-e", "trace=open,openat",
                                "env", "ASAN_OPTIONS=" + asan, moat_bin, "serve", "--dir",
                                s.dir]
    s.start(timeout=60)
    serve = []
    try:
        serve = children(s.broker.proc.pid)
        assert len(serve) == 1, serve
        keyproc = children(serve[0])
        assert len(keyproc) == 1, keyproc
        # Work that needs every key: checkpoints (audit.key), a TOTP
        # enrolment and a login with it (seal.key).
        adm = ak.setup_admin(s)
        c = s.client()
        c.login(adm.name, adm.password, totp=adm.totp.next_code())
        assert c.get("/api/v1/me").status_code == 200
        assert s.client().get("/.well-known/est/cacerts").status_code == 200
    finally:
        # strace detaches on SIGTERM and leaves its tracee running: stop
        # `moat serve` itself first, then the tracer.
        for pid in serve:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in serve:
            deadline = time.monotonic() + 15
            while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if os.path.exists("/proc/%d" % pid):
                os.kill(pid, signal.SIGKILL)
        s.stop()
    opened = {}
    for name in os.listdir(scratch):
        if name.startswith(os.path.basename(prefix) + "."):
            tid = int(name.rsplit(".", 1)[1])
            with open(os.path.join(scratch, name)) as f:
                text = f.read()
            opened[tid] = [k for k in KEY_FILES if ("/" + k + '"') in text]
    assert keyproc[0] in opened, sorted(opened)
    assert sorted(opened[keyproc[0]]) == sorted(KEY_FILES), opened[keyproc[0]]
    leaks = {tid: keys for tid, keys in opened.items() if tid != keyproc[0] and keys}
    assert not leaks, "the serving process opened key files: %r" % leaks
    assert len(opened) >= 4, sorted(opened)  # main, threads, the key process
    st = os.stat(os.path.join(s.dir, "seal.key"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    # The checkpoints the key process signed verify with audit.pub alone.
    p = s.moat("audit", "verify", "--dir", s.dir)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "intact" in p.stdout and "NOT" not in p.stdout, p.stdout


def test_init_creates_seal_key(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "keys-init")
    st = os.stat(os.path.join(s.dir, "seal.key"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert "seal.key" in s.init_stdout
    with open(os.path.join(s.dir, "seal.key")) as f:
        lines = [l for l in f.read().splitlines() if l and not l.startswith("#")]
    assert len(lines) == 1 and len(base64.b64decode(lines[0])) == 32


def test_mismatched_audit_key_refuses_to_start(moat_bin, scratch):
    """The key process loads audit.key against audit.pub: a key from another
    install stops `moat serve` with a reason instead of signing checkpoints
    nobody can verify."""
    a = ak.ApiServer(moat_bin, scratch, "keys-mix-a")
    b = ak.ApiServer(moat_bin, scratch, "keys-mix-b")
    shutil.copy(os.path.join(b.dir, "audit.pub"), os.path.join(a.dir, "audit.pub"))
    with pytest.raises(AssertionError):
        a.start(timeout=15)
    out = a.broker.tail()
    assert "key process" in out and "audit.key" in out, out
    a.stop()


# --------------------------------------------------------------------------
# TOTP seeds sealed at rest
# --------------------------------------------------------------------------

def test_totp_seed_sealed_at_rest(admin_env):
    s = admin_env.server
    api = s.client()
    u = ak.create_user(admin_env.admin.api, "admin", login=False)
    api.login(u.name, u.password)
    # pending: sealed from the first moment
    r = api.post("/api/v1/me/totp", {})
    assert r.status_code == 200, ak.describe(r)
    b32 = r.json()["secret"]
    data = db_files(s.dir)
    assert b32.encode() not in data
    assert raw_seed(b32) not in data
    (pending,), = db_query(s.dir, "SELECT totp_pending FROM operators WHERE name = ?", (u.name,))
    assert pending[:4] == b"MKS1" and len(pending) == 20 + 44, pending
    t = ak.Totp(b32)
    r = api.post("/api/v1/me/totp/confirm", {"code": t.next_code()})
    assert r.status_code == 200, ak.describe(r)
    # enrolled: sealed again for its own column, never stored in plaintext
    data = db_files(s.dir)
    assert b32.encode() not in data and b32.lower().encode() not in data
    assert raw_seed(b32) not in data
    (secret, pending), = db_query(
        s.dir, "SELECT totp_secret, totp_pending FROM operators WHERE name = ?", (u.name,))
    assert pending is None
    assert secret[:4] == b"MKS1" and len(secret) == 64, secret
    # and login with TOTP still works
    c = s.client()
    ak.assert_problem(c.login(u.name, u.password, totp=t.wrong_code(), expect=401), 401,
                      "invalid-credentials")
    c.login(u.name, u.password, totp=t.next_code())
    assert c.get("/api/v1/me").json()["mfa_enrolled"] is True


def test_sealed_seed_moved_to_another_row_does_not_open(admin_env):
    """Someone who can write moat.db copies their own sealed seed into
    another administrator's row to log in as them with their own app: the
    blob is bound to its operator and column, so it does not open."""
    s = admin_env.server
    mallory = ak.create_user(admin_env.admin.api, "admin")
    victim = ak.create_user(admin_env.admin.api, "admin")
    n = db_exec(s.dir, "UPDATE operators SET totp_secret = (SELECT totp_secret FROM operators "
                "WHERE name = ?), totp_last_step = 0 WHERE name = ?", (mallory.name, victim.name))
    assert n == 1
    r = s.client().login(victim.name, victim.password, totp=mallory.totp.next_code(),
                         expect=500)
    assert r.status_code == 500, ak.describe(r)
    assert any("totp_unseal_failed" in l and victim.name in l for l in s.broker.log_lines())
    # pending into secret (same row, other column) does not open either
    api = s.client()
    other = ak.create_user(admin_env.admin.api, "admin", login=False)
    api.login(other.name, other.password)
    r = api.post("/api/v1/me/totp", {})
    t = ak.Totp(r.json()["secret"])
    db_exec(s.dir, "UPDATE operators SET totp_secret = totp_pending, totp_pending = NULL "
            "WHERE name = ?", (other.name,))
    r = s.client().login(other.name, other.password, totp=t.next_code(), expect=500)
    assert r.status_code == 500, ak.describe(r)


def test_plaintext_seed_sealed_at_start(admin_env):
    """A seed stored in plaintext (by a Moat from before sealing) is sealed
    when `moat serve` starts, with an audit entry, and still logs in."""
    s = admin_env.server
    u = ak.create_user(admin_env.admin.api, "admin")
    seed = os.urandom(20)
    db_exec(s.dir, "UPDATE operators SET totp_secret = ?, totp_last_step = 0 WHERE name = ?",
            (seed, u.name))
    s.stop()
    s.start()
    try:
        (stored,), = db_query(s.dir, "SELECT totp_secret FROM operators WHERE name = ?",
                              (u.name,))
        assert stored[:4] == b"MKS1" and len(stored) == 64, stored
        assert seed not in db_files(s.dir)
        # no other row needed sealing
        adm = s.client()
        adm.login(admin_env.admin.name, admin_env.admin.password,
                  recovery=admin_env.admin.recovery_codes.pop())
        sealed = ak.audit_all(adm, action="user.totp_sealed")
        assert [e["target"] for e in sealed] == [u.name], sealed
        assert sealed[0]["actor"] == "system"
        assert ak.detail(sealed[0]) == {"totp_pending": False, "totp_secret": True}
        t = ak.Totp(base64.b32encode(seed).decode().rstrip("="))
        c = s.client()
        c.login(u.name, u.password, totp=t.next_code())
        # a second start has nothing left to seal
        s.stop()
        s.start()
        adm = s.client()
        adm.login(admin_env.admin.name, admin_env.admin.password,
                  recovery=admin_env.admin.recovery_codes.pop())
        assert len(ak.audit_all(adm, action="user.totp_sealed")) == 1
    finally:
        # the module's server is shared: leave it running
        if not s.alive():
            s.start()
