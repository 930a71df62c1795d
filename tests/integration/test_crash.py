"""Nothing acknowledged is lost: publishers send numbered QoS 1 messages to
topics that offline persistent sessions subscribe to; the broker is killed
with SIGKILL at random moments and restarted; finally the subscribers
reconnect. Every message whose PUBACK a publisher received is delivered at
least once, in order per publisher, and the database passes
PRAGMA integrity_check. (The short form; MOAT_CRASH_CYCLES makes it longer,
MOAT_CRASH_SEED replays a run.)"""

import os
import random
import sqlite3
import threading
import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

pytestmark = pytest.mark.moat_only("kill -9 of moat and its store")

CYCLES = int(os.environ.get("MOAT_CRASH_CYCLES", "3"))
PUBLISHERS = 3
SUBSCRIBERS = 2


def conprops(**kw):
    p = Properties(PacketTypes.CONNECT)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


class Publisher:
    def __init__(self, i):
        self.i = i
        self.next = 1      # next number to send
        self.acked = []    # numbers whose PUBACK arrived

    def run(self, c, stop):
        while not stop.is_set():
            try:
                code = c.publish("crash/p%d" % self.i, b"%d:%d" % (self.i, self.next), qos=1,
                                 timeout=3)
            except AssertionError:
                return  # no PUBACK: the broker died; resend this number next cycle
            if code != 0:
                return
            self.acked.append(self.next)
            self.next += 1


def test_sigkill_loses_nothing_acknowledged(make_broker, client):
    seed = int(os.environ.get("MOAT_CRASH_SEED", str(random.randrange(1 << 30))))
    rnd = random.Random(seed)
    b = make_broker(name="crash", broker_conf={"max_queued_messages": 100000})
    for k in range(SUBSCRIBERS):
        s = client(listener="open", on=b, client_id="crash-sub-%d" % k, connect=False)
        assert s.connect(properties=conprops(SessionExpiryInterval=3600))[:2] == (0, 0)
        assert s.subscribe("crash/#", 1) == [1]
        s.disconnect()
    pubs = [Publisher(i) for i in range(PUBLISHERS)]
    for cycle in range(CYCLES):
        stop = threading.Event()
        clients = [client(listener="open", on=b) for _ in pubs]
        threads = [threading.Thread(target=p.run, args=(c, stop)) for p, c in zip(pubs, clients)]
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.2, 0.8))  # a random moment to crash at
        b.kill()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        b.stop()
        b.start(write_config=False)
    total = sum(len(p.acked) for p in pubs)
    assert total > 0, "no message was acknowledged at all (seed %d)" % seed

    for k in range(SUBSCRIBERS):
        s = client(listener="open", on=b, client_id="crash-sub-%d" % k, connect=False)
        code, present, _ = s.connect(clean_start=False,
                                     properties=conprops(SessionExpiryInterval=3600))
        assert (code, present) == (0, 1), "subscriber session lost (seed %d)" % seed
        want = {p.i: set(p.acked) for p in pubs}
        seen = {p.i: [] for p in pubs}

        def missing():
            return sum(len(want[i] - set(seen[i])) for i in want)

        while missing():
            m = s.get(timeout=10, what="%d of %d acknowledged messages still missing (seed %d)"
                      % (missing(), total, seed))
            i, n = (int(x) for x in m.payload.split(b":"))
            seen[i].append(n)
        for i, ns in seen.items():
            firsts = []
            for n in ns:
                if n not in firsts:
                    firsts.append(n)
            assert firsts == sorted(firsts), \
                "publisher %d out of order for subscriber %d: %r (seed %d)" % (
                    i, k, firsts[:50], seed)
        s.disconnect()
    assert b.stop() == 0
    db = sqlite3.connect(os.path.join(b.dir, "moat.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
