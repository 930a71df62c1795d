"""Storage full: on a small file system that fills up, the broker stops
acknowledging what it cannot store (v5 0x97, v3 disconnect), says so in its
log, keeps serving QoS 0, and recovers by itself once space is back; what it
acknowledged is there after a restart and the database is intact."""

import os
import shutil
import sqlite3
import subprocess

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqttkit as mk

pytestmark = pytest.mark.moat_only("moat's store on a full file system")

QUOTA_EXCEEDED = 0x97


@pytest.fixture
def small_fs(scratch, master_dir):
    """A 6 MiB tmpfs (the test creates and removes it; needs root)."""
    mnt = os.path.join(scratch, "smallfs-%d" % os.getpid())
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s): run as root" % r.stderr.strip())
    d = os.path.join(mnt, "data")
    os.mkdir(d, 0o700)
    for f in os.listdir(master_dir):
        src = os.path.join(master_dir, f)
        if f != "moat.conf" and os.path.isfile(src):
            shutil.copy2(src, os.path.join(d, f))
    yield mnt, d
    subprocess.run(["umount", "-l", mnt], capture_output=True)


def fill(mnt):
    """Write filler files until the file system is full (unbuffered, so the
    last short write is where it stops)."""
    paths = []
    for i, size in enumerate((65536, 512, 1)):
        path = os.path.join(mnt, "filler%d" % i)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
        finally:
            os.close(fd)
        paths.append(path)
    return paths


def test_full_disk_refuses_then_recovers(make_broker, client, small_fs):
    mnt, d = small_fs
    b = make_broker(name="fullfs", datadir=d)
    p = client(listener="open", on=b)
    sub = client(listener="open", on=b)
    assert sub.subscribe("live/#", 0) == [0]
    assert p.publish("keep/before", b"stored", qos=1, retain=True) == 0

    fillers = fill(mnt)
    big = os.urandom(200 * 1024)
    code = p.publish("keep/during", big, qos=1, retain=True)
    assert code == QUOTA_EXCEEDED, "retained QoS 1 on a full disk answered %r, not 0x97" % (code,)
    b.wait_log(r"event=store_write_failed")
    # QoS 0 keeps flowing while storage is full
    p.publish("live/x", b"qos0-still-works", qos=0)
    assert sub.get_topic("live/x").payload == b"qos0-still-works"
    assert b.alive()

    for f in fillers:
        os.unlink(f)
    assert p.publish("keep/after", b"stored-again", qos=1, retain=True) == 0

    assert b.stop() == 0
    db = sqlite3.connect(os.path.join(d, "moat.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    b.start(write_config=False)
    s = client(listener="open", on=b)
    assert s.subscribe("keep/#", 1) == [1]
    got = {}
    for _ in range(2):
        m = s.get()
        got[m.topic] = m.payload
    assert got == {"keep/before": b"stored", "keep/after": b"stored-again"}


def test_full_disk_v3_disconnects_instead_of_acking(make_broker, client, small_fs):
    mnt, d = small_fs
    b = make_broker(name="fullfs-v3", datadir=d)
    p = client(listener="open", on=b, protocol=mk.V311)
    fillers = fill(mnt)
    code = p.publish("v3/during", os.urandom(200 * 1024), qos=1, retain=True)
    assert code == "disconnected", "v3 publisher got %r instead of a disconnect" % (code,)
    for f in fillers:
        os.unlink(f)
    p2 = client(listener="open", on=b, protocol=mk.V311)
    assert p2.publish("v3/after", b"ok", qos=1, retain=True) == 0
