"""
The `moat` CLI against a real `moat serve`: setup with the one-time token,
login with TOTP enrolment (the test computes the codes), user and token
management, the audit log listed, verified and exported over the API and
offline, and tampering caught by `moat audit verify --dir`.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import time

import pytest

import mqttkit as mk

pytestmark = pytest.mark.moat_only("management API")

PASSWORD = "correct horse battery staple"


def totp(secret, at=None):
    secret = secret.strip().replace(" ", "").upper()
    key = base64.b32decode(secret + "=" * ((8 - len(secret) % 8) % 8))
    counter = int((at if at is not None else time.time()) // 30)
    h = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def next_code(secret, last):
    """A code for a later 30 s step than `last` (TOTP codes are single use)."""
    while True:
        c = totp(secret)
        if c != last:
            return c
        time.sleep(0.5)


class Cli:
    def __init__(self, moat_bin, home, server, ca):
        self.bin = moat_bin
        self.env = dict(os.environ)
        self.env["XDG_CONFIG_HOME"] = home
        self.env.pop("MOAT_TOKEN", None)
        self.server = server
        self.ca = ca

    def run(self, *args, stdin="", env=None, check=True):
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run([self.bin] + list(args), input=stdin, capture_output=True,
                           text=True, env=e, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError("moat %s: exit %d\nstdout:\n%s\nstderr:\n%s"
                                 % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p


@pytest.fixture(scope="module")
def served(moat_bin, scratch):
    """A fresh `moat init` data directory served with an HTTPS listener."""
    d = os.path.join(scratch, "cli-api")
    p = mk.run([moat_bin, "init", "--dir", d], check=False)
    assert p.returncode == 0, p.stderr
    token = re.search(r"moat_st_[A-Za-z0-9_-]+", p.stdout).group(0)
    api_port = mk.free_port()
    b = mk.Broker("moat", moat_bin, d, name="cli-api", extra_listeners={
        "api": {"bind": mk.HOST, "port": api_port, "protocol": "https"}})
    b.start()
    server = "https://%s:%d" % (mk.HOST, api_port)
    yield {"broker": b, "dir": d, "token": token, "server": server,
           "ca": os.path.join(d, "ca.crt")}
    b.stop()


@pytest.fixture(scope="module")
def admin(served, moat_bin, scratch):
    """`moat setup` then `moat login` with TOTP enrolment, as a script would."""
    home = os.path.join(scratch, "cli-home")
    os.makedirs(home, exist_ok=True)
    cli = Cli(moat_bin, home, served["server"], served["ca"])
    pwfile = os.path.join(scratch, "cli-pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    p = cli.run("setup", "--server", served["server"], "--ca", served["ca"], "--token",
                served["token"], "--user", "alice", "--password-file", pwfile)
    assert "alice" in p.stdout
    # the token is single use
    p = cli.run("setup", "--server", served["server"], "--ca", served["ca"], "--token",
                served["token"], "--user", "mallory", "--password-file", pwfile, check=False)
    assert p.returncode == 1 and "setup" in p.stderr.lower()
    secret_file = os.path.join(scratch, "cli-totp")
    proc = subprocess.Popen([moat_bin, "login", "--server", served["server"], "--ca",
                             served["ca"], "--user", "alice", "--password-file", pwfile,
                             "--enrol-totp-file", secret_file],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli.env)
    deadline = time.time() + 30
    while time.time() < deadline and not (os.path.exists(secret_file)
                                          and os.path.getsize(secret_file) > 0):
        time.sleep(0.05)
    assert os.stat(secret_file).st_mode & 0o077 == 0, "the TOTP secret file must be 0600"
    with open(secret_file) as f:
        secret = [l for l in f.read().split("\n") if l and not l.startswith("#")][0]
    code = totp(secret)
    out, err = proc.communicate(code + "\n", timeout=30)
    assert proc.returncode == 0, out + err
    codes = re.findall(r"(?m)^\s*([2-9a-z]{5}-[2-9a-z]{5})\s*$", out)
    assert len(codes) == 10, out
    cred = os.path.join(home, "moat", "credentials")
    assert os.stat(cred).st_mode & 0o077 == 0, "credentials must be 0600"
    return {"cli": cli, "secret": secret, "last": code, "pwfile": pwfile, "codes": codes}


def test_user_and_token_commands(served, admin):
    cli = admin["cli"]
    p = cli.run("user", "list")
    assert re.search(r"(?m)^alice\s+admin\s+false\s+true", p.stdout), p.stdout
    p = cli.run("user", "add", "bob", "--role", "operator", stdin="bob's long passphrase 1\n")
    p = cli.run("user", "list", "--json")
    users = {u["username"]: u for u in json.loads(p.stdout)["items"]}
    assert users["bob"]["role"] == "operator" and users["bob"]["mfa_enrolled"] is False
    # a weak password is refused with the reason, nothing created
    p = cli.run("user", "add", "carol", "--role", "viewer", stdin="password1234\n", check=False)
    assert p.returncode == 1 and "carol" not in cli.run("user", "list").stdout
    cli.run("user", "set-role", "bob", "viewer")
    cli.run("user", "disable", "bob")
    p = cli.run("user", "show", "bob", "--json")
    bob = json.loads(p.stdout)
    assert bob["role"] == "viewer" and bob["disabled"] is True
    cli.run("user", "enable", "bob")
    cli.run("user", "reset-mfa", "bob")

    p = cli.run("token", "create", "--name", "scraper", "--role", "metrics", "--days", "7")
    tok = re.search(r"moat_at_[A-Za-z0-9_-]+", p.stdout).group(0)
    tid = re.search(r"(?m)^id:\s*(\S+)", p.stdout).group(1)
    p = cli.run("token", "list", "--json")
    items = json.loads(p.stdout)["items"]
    assert [t for t in items if t["id"] == tid and t["role"] == "metrics"]
    assert tok not in p.stdout, "a token is shown once, never listed"
    # the metrics token cannot list users through the CLI (MOAT_TOKEN)
    p = cli.run("user", "list", env={"MOAT_TOKEN": tok, "MOAT_SERVER": served["server"],
                                     "MOAT_CA": served["ca"]}, check=False)
    assert p.returncode == 1 and "not allowed" in (p.stderr + p.stdout).lower()
    cli.run("token", "revoke", tid)
    p = cli.run("token", "list", "--json")
    assert [t for t in json.loads(p.stdout)["items"] if t["id"] == tid][0]["revoked"] is True


def test_login_needs_totp_and_recovery_code_works_once(served, admin, scratch):
    home = os.path.join(scratch, "cli-home2")
    os.makedirs(home, exist_ok=True)
    cli = Cli(admin["cli"].bin, home, served["server"], served["ca"])
    base = ["login", "--server", served["server"], "--ca", served["ca"], "--user", "alice",
            "--password-file", admin["pwfile"]]
    # no code on a non-interactive stdin: refused
    p = cli.run(*base, stdin="", check=False)
    assert p.returncode == 1
    code = next_code(admin["secret"], admin["last"])
    admin["last"] = code
    cli.run(*(base + ["--totp", code]))
    assert "alice" in cli.run("user", "list").stdout
    cli.run("logout")
    assert not os.path.exists(os.path.join(home, "moat", "credentials"))
    p = cli.run("user", "list", "--server", served["server"], "--ca", served["ca"], check=False)
    assert p.returncode == 1 and "login" in p.stderr
    rc = admin["codes"][0]
    cli.run(*(base + ["--totp", rc]))
    cli.run("logout")
    p = cli.run(*(base + ["--totp", rc]), check=False)
    assert p.returncode == 1, "a recovery code works once"


def test_audit_list_verify_export(served, admin, scratch):
    cli = admin["cli"]
    p = cli.run("audit", "list", "--all", "--json")
    actions = [e["action"] for e in json.loads(p.stdout)["items"]]
    for a in ("auth.setup", "auth.login", "user.totp_begin", "user.totp_enrol", "user.create",
              "user.update", "user.reset_mfa", "token.create", "token.revoke"):
        assert a in actions, "%s missing from %s" % (a, actions)
    p = cli.run("audit", "list", "--action", "token.", "--json")
    assert {e["action"] for e in json.loads(p.stdout)["items"]} <= {"token.create",
                                                                   "token.revoke"}
    p = cli.run("audit", "verify")
    assert "intact" in p.stdout
    out = os.path.join(scratch, "audit-export.jsonl")
    cli.run("audit", "export", "--out", out)
    with open(out) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    seqs = [e["seq"] for e in lines]
    assert seqs == sorted(seqs) and seqs[0] == 1 and len(seqs) >= len(actions)


def _copy_stopped(served, scratch, name):
    """Stop the server (it seals the log with a checkpoint), copy the data
    directory, start it again."""
    b = served["broker"]
    b.stop()
    d = os.path.join(scratch, name)
    shutil.copytree(served["dir"], d)
    b.start(write_config=False)
    return d


def _tamper(d, *sql):
    db = sqlite3.connect(os.path.join(d, "moat.db"))
    # what an attacker with the file would do first
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for s in sql:
        db.execute(s)
    db.commit()
    db.close()


def test_offline_verify_catches_tampering(served, admin, scratch, moat_bin):
    d = _copy_stopped(served, scratch, "audit-pristine")
    p = mk.run([moat_bin, "audit", "verify", "--dir", d], check=False)
    assert p.returncode == 0 and "intact" in p.stdout, p.stdout + p.stderr
    n = sqlite3.connect(os.path.join(d, "moat.db")).execute(
        "SELECT max(seq) FROM audit_log").fetchone()[0]
    assert n >= 8
    cases = {
        "modified": ["UPDATE audit_log SET outcome = 'denied' WHERE seq = 3"],
        "removed": ["DELETE FROM audit_log WHERE seq = 4"],
        "reordered": ["UPDATE audit_log SET seq = -1 WHERE seq = 5",
                      "UPDATE audit_log SET seq = 5 WHERE seq = 6",
                      "UPDATE audit_log SET seq = 6 WHERE seq = -1"],
        "truncated": ["DELETE FROM audit_log WHERE seq > %d" % (n - 2)],
    }
    first = {"modified": 3, "removed": 4, "reordered": 5, "truncated": n - 1}
    for kind, sql in cases.items():
        c = os.path.join(scratch, "audit-" + kind)
        shutil.copytree(d, c)
        _tamper(c, *sql)
        p = mk.run([moat_bin, "audit", "verify", "--dir", c], check=False)
        assert p.returncode == 1, "%s: not detected\n%s%s" % (kind, p.stdout, p.stderr)
        assert kind in p.stdout, "%s: %s" % (kind, p.stdout)
        assert re.search(r"seq %d\b" % first[kind], p.stdout), "%s: %s" % (kind, p.stdout)
