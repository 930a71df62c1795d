"""
`moat device import` (issue 9, benchmarks): a list of device ids registered
offline in the data directory through the registry service, in one
transaction with one audit entry; every line checked first, a bad one named
by its line number and nothing imported; a running server applies the
import on SIGHUP.
"""

import json
import os
import signal
import subprocess
import sqlite3

import pytest

import apikit as ak
import mqttkit as mk

pytestmark = pytest.mark.moat_only("device registry")


def server(moat_bin, scratch, name):
    s = ak.ApiServer(moat_bin, scratch, name)
    s.broker.conf["unknown_devices"] = "refuse"
    return s


def write_ids(path, ids):
    with open(path, "w") as f:
        f.write("".join(i + "\n" for i in ids))
    return path


def export(s):
    p = s.moat("audit", "export", "--dir", s.dir)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def detail(e):
    return e["detail"] if isinstance(e["detail"], dict) else json.loads(e["detail"])


def registered(s, like):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(s.dir, "moat.db"), uri=True)
    try:
        return db.execute("SELECT count(*) FROM identities WHERE id LIKE ?",
                          (like,)).fetchone()[0]
    finally:
        db.close()


def connect_rc(s, pki, dev):
    c = mk.TClient(mk.HOST, s.mqtt_port, dev, mk.V5, cert=pki.issue(dev), name=dev)
    try:
        return c.connect(expect=None)[0]
    finally:
        c.close()


def test_import_1000_ids_one_connects_an_unlisted_one_is_refused(moat_bin, scratch):
    s = server(moat_bin, scratch, "import-1000")
    ids = ["imp-%04d" % i for i in range(1000)]
    path = write_ids(os.path.join(scratch, "import-1000.txt"), ids)
    before = export(s)
    p = s.moat("device", "import", "--dir", s.dir, "--file", path, "--group", "devices",
               "--state", "active")
    assert p.returncode == 0, p.stderr
    assert "imported 1000 devices" in p.stdout, p.stdout
    assert registered(s, "imp-%") == 1000
    after = export(s)
    assert len(after) == len(before) + 1, after[len(before):]
    e = after[-1]
    assert e["action"] == "device.import" and e["outcome"] == "ok", e
    d = detail(e)
    assert d == {"count": 1000, "kind": "device", "state": "active", "groups": ["devices"],
                 "first": "imp-0000", "last": "imp-0999"}, d
    p = s.moat("audit", "verify", "--dir", s.dir)
    assert p.returncode == 0 and "NOT" not in p.stdout + p.stderr, p.stdout + p.stderr
    s.start()
    try:
        pki = mk.PKI(s.dir, os.path.join(scratch, "import-1000-certs"))
        assert connect_rc(s, pki, "imp-0500") == 0
        assert connect_rc(s, pki, "imp-1000") == 0x87, "not in the list"
    finally:
        s.stop()


def test_default_state_is_registered_and_sighup_applies_an_import(moat_bin, scratch):
    s = server(moat_bin, scratch, "import-hup")
    s.start()
    try:
        pki = mk.PKI(s.dir, os.path.join(scratch, "import-hup-certs"))
        assert connect_rc(s, pki, "hup-1") == 0x87
        p = s.moat("device", "import", "--dir", s.dir, "--file",
                   write_ids(os.path.join(scratch, "import-hup-a.txt"), ["hup-1", "hup-2"]),
                   "--state", "active")
        assert p.returncode == 0, p.stderr
        p = s.moat("device", "import", "--dir", s.dir, "--file",
                   write_ids(os.path.join(scratch, "import-hup-b.txt"), ["hup-3"]))
        assert p.returncode == 0, p.stderr
        m = s.broker.mark()
        s.broker.signal(signal.SIGHUP)
        line = s.broker.wait_log(r"event=reload\b", since=m)
        assert "ok=1" in line.split(), line
        assert connect_rc(s, pki, "hup-1") == 0
        assert connect_rc(s, pki, "hup-3") == 0x87, "registered, not active: may not connect"
    finally:
        s.stop()


@pytest.mark.parametrize("lines,line_no,says", [
    (["bad-a", "bad-b", "Bad C", "bad-d"], 3, "not a valid device id"),
    (["bad-a", "# a comment", "", "bad-b", "bad-a"], 5, "already on line 1"),
    (["bad-a", "taken-1"], 2, "already registered"),
    (["bad-a", "x" * 65], 2, "not a valid device id"),
])
def test_a_bad_line_is_named_and_nothing_is_imported(moat_bin, scratch, lines, line_no, says):
    s = server(moat_bin, scratch, "import-bad")
    p = s.moat("device", "import", "--dir", s.dir, "--file",
               write_ids(os.path.join(scratch, "import-taken.txt"), ["taken-1"]))
    assert p.returncode == 0, p.stderr
    before = export(s)
    path = write_ids(os.path.join(s.dir, "..", os.path.basename(s.dir) + "-ids.txt"), lines)
    p = s.moat("device", "import", "--dir", s.dir, "--file", path)
    assert p.returncode == 1, p.stdout
    assert ("line %d:" % line_no) in p.stderr and says in p.stderr, p.stderr
    assert "nothing was imported" in p.stderr, p.stderr
    assert registered(s, "bad-%") == 0
    assert export(s) == before


def test_bad_options_are_refused(moat_bin, scratch):
    s = server(moat_bin, scratch, "import-opts")
    path = write_ids(os.path.join(scratch, "import-opts.txt"), ["opt-1"])
    p = s.moat("device", "import", "--file", path)
    assert p.returncode == 2 and "--dir" in p.stderr, p.stderr
    p = s.moat("device", "import", "--dir", s.dir, "--file", path, "--state", "disabled")
    assert p.returncode == 2 and "registered or active" in p.stderr, p.stderr
    p = s.moat("device", "import", "--dir", s.dir, "--file", path, "--group", "nope")
    assert p.returncode == 1 and "group nope does not exist" in p.stderr, p.stderr
    p = s.moat("device", "import", "--dir", s.dir, "--file", write_ids(
        os.path.join(scratch, "import-empty.txt"), ["# only a comment"]))
    assert p.returncode == 1 and "no device id" in p.stderr, p.stderr
    assert registered(s, "opt-%") == 0
    p = s.moat("device", "import", "--help")
    assert p.returncode == 0 and "SIGHUP" in p.stdout and "one transaction" in p.stdout
    p = s.moat("device", "--help")
    assert "import --dir DIR" in p.stdout + p.stderr


def test_import_from_stdin(moat_bin, scratch):
    s = server(moat_bin, scratch, "import-stdin")
    p = subprocess.run([moat_bin, "device", "import", "--dir", s.dir, "--file", "-"],
                       input="in-1\nin-2\nIn-3\n", capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "stdin line 3:" in p.stderr, p.stderr
    assert registered(s, "in-%") == 0
    p = subprocess.run([moat_bin, "device", "import", "--dir", s.dir, "--file", "-"],
                       input="in-1\r\nin-2\r\n", capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "imported 2 devices" in p.stdout, p.stderr
    assert registered(s, "in-%") == 2
