"""`make run` (scripts/run-demo): on a new and on an existing data directory
it prints one setup token and two mosquitto commands that work as printed,
at the same time (a reader service and a publishing device)."""

import datetime
import os
import queue
import re
import signal
import sqlite3
import subprocess
import threading

import pytest

import mqttkit as mk

pytestmark = pytest.mark.moat_only("scripts/run-demo")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEMO = os.path.join(REPO, "scripts", "run-demo")


class Demo:
    """scripts/run-demo in the background: its printed text (stdout up to
    the broker's start) and the broker's log (stderr)."""

    def __init__(self, moat_bin, datadir, env_extra):
        env = dict(os.environ, MOAT_BIN=moat_bin, **env_extra)
        self.proc = subprocess.Popen([DEMO, datadir], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.out = []
        self.err = []
        self.ready = threading.Event()
        self.t_out = threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                      daemon=True)
        self.t_err = threading.Thread(target=self._read, args=(self.proc.stderr, self.err),
                                      daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _read(self, f, into):
        for line in iter(f.readline, ""):
            into.append(line)
            if "event=ready" in line:
                self.ready.set()

    def wait_ready(self):
        if not self.ready.wait(30):
            self.stop()
            raise AssertionError("run-demo did not start the broker:\n%s\n%s"
                                 % ("".join(self.out), "".join(self.err[-30:])))
        # The text is printed before the exec; let the reader drain it.
        mk.wait_until(lambda: any("Stop: Ctrl-C" in l for l in self.out), what="demo text")
        return "".join(self.out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.t_out.join(timeout=5)
        self.t_err.join(timeout=5)
        return self.proc.returncode


def printed_command(text, prog):
    """The shell command starting with prog, with its continuation lines."""
    m = re.search(r"^\s*(%s\b(?:[^\n]*\\\n)*[^\n]*)$" % re.escape(prog), text, re.M)
    assert m, "no %s command in:\n%s" % (prog, text)
    return m.group(1)


def check_printed_commands_work(text):
    sub_cmd = printed_command(text, "mosquitto_sub")
    pub_cmd = printed_command(text, "mosquitto_pub")
    lines = queue.Queue()
    sub = subprocess.Popen(["bash", "-c", "exec " + sub_cmd], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=lambda: [lines.put(l) for l in iter(sub.stdout.readline, "")],
                     daemon=True).start()
    try:
        got = []
        # mosquitto_sub says nothing when its subscription is in place:
        # publish until the reader has the message (or the time is up).
        for _ in range(int(mk.WAIT * 3)):
            pub = subprocess.run(["bash", "-c", pub_cmd], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=30)
            assert pub.returncode == 0, "printed mosquitto_pub failed: %s" % pub.stdout
            try:
                got.append(lines.get(timeout=1))
                break
            except queue.Empty:
                assert sub.poll() is None, "mosquitto_sub exited: %s" % "".join(got)
        assert got and got[0].strip() == "d/demo-sensor-1/temp 21.5", got
        # The device's connection did not take the reader's session over.
        assert sub.poll() is None, "the reader was disconnected by the publisher"
    finally:
        sub.terminate()
        sub.wait(timeout=10)


def tokens(text):
    return re.findall(r"moat_st_[A-Za-z0-9_-]+", text)


def test_run_demo_new_and_existing_directory(moat_bin, scratch, uid):
    d = os.path.join(scratch, uid("demo"), "data")
    env = {"MOAT_DEMO_MQTT_PORT": str(mk.free_port()), "MOAT_DEMO_API_PORT": str(mk.free_port())}
    for run in ("new", "existing"):
        demo = Demo(moat_bin, d, env)
        try:
            text = demo.wait_ready()
            assert len(tokens(text)) == 1, "%s directory: %d setup tokens printed:\n%s" \
                % (run, len(tokens(text)), text)
            assert ("moat init:" in text) == (run == "new"), text
            check_printed_commands_work(text)
        finally:
            assert demo.stop() == 0, "".join(demo.err[-30:])

    # Both identities are registered like any other: active, in their
    # groups, certificate recorded.
    db = sqlite3.connect(os.path.join(d, "moat.db"))
    try:
        ids = dict(db.execute("SELECT id, kind || ' ' || state FROM identities"))
        assert ids == {"demo-sensor-1": "device active", "demo-reader": "service active"}, ids
        groups = set(db.execute("SELECT identity, group_name FROM memberships"))
        assert groups == {("demo-sensor-1", "devices"), ("demo-reader", "demo-readers")}, groups
        assert set(db.execute("SELECT policy, group_name FROM attachments "
                              "WHERE group_name = 'demo-readers'")) == {
            ("demo-readers", "demo-readers")}
        certs = [r[0] for r in db.execute("SELECT identity FROM certificates")]
        assert sorted(certs) == ["demo-reader", "demo-sensor-1"], certs
    finally:
        db.close()
    # The device certificate has the normal lifetime ([broker] cert_days, 90).
    end = mk.run(["openssl", "x509", "-in", os.path.join(d, "devices", "demo-sensor-1.crt"),
                  "-noout", "-enddate"]).stdout.strip().split("=", 1)[1]
    left = datetime.datetime.strptime(end, "%b %d %H:%M:%S %Y %Z") - datetime.datetime.utcnow()
    assert 89 <= left.days <= 90, end


def test_cert_issue_service_options(moat_bin, scratch, uid):
    d = os.path.join(scratch, uid("svc"))
    mk.run([moat_bin, "init", "--dir", d, "--no-setup-token"])

    def issue(*args):
        return subprocess.run([moat_bin, "cert", "issue", "--dir", d] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=30)

    p = issue("--service", "svc1")
    assert p.returncode == 2 and "--group" in p.stderr, p.stderr
    p = issue("--device", "dev1", "--rule", "allow subscribe d/+/#")
    assert p.returncode == 2 and "--group" in p.stderr, p.stderr
    p = issue("--service", "svc1", "--group", "g1", "--rule", "allow nothing d/#")
    assert p.returncode == 2 and "--rule" in p.stderr, p.stderr
    p = issue("--service", "svc1", "--group", "g1", "--rule", "allow subscribe d/+/t/#")
    assert p.returncode == 0, p.stderr
    # The same rules again: fine (the policy is kept); other rules: refused.
    assert issue("--service", "svc2", "--group", "g1", "--rule",
                 "allow subscribe d/+/t/#").returncode == 0
    p = issue("--service", "svc3", "--group", "g1", "--rule", "allow subscribe #")
    assert p.returncode == 1 and "policy g1 exists with other rules" in p.stderr, p.stderr
    p = issue("--device", "svc1", "--out", os.path.join(d, "other"))
    assert p.returncode == 1 and "registered as a service" in p.stderr, p.stderr
    db = sqlite3.connect(os.path.join(d, "moat.db"))
    try:
        assert dict(db.execute("SELECT id, kind FROM identities")) == {
            "svc1": "service", "svc2": "service"}
        assert db.execute("SELECT rules FROM policies WHERE name = 'g1'").fetchone()[0] == \
            "allow subscribe d/+/t/#"
    finally:
        db.close()
