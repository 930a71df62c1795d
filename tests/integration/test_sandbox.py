"""
The serving process runs under a seccomp filter once started (issue 9,
section 6): no exec, no ptrace, no new processes (docs/security.md). The
filter itself is exercised by tests/unit/test_sandbox.c; here: the running
`moat serve` has it on every thread, and its key process has its own.
"""

import os

import pytest

import apikit as ak

pytestmark = pytest.mark.moat_only("seccomp filter")


def status(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_every_thread_of_moat_serve_is_filtered(moat_bin, scratch):
    s = ak.ApiServer(moat_bin, scratch, "sandbox")
    s.start()
    try:
        pid = s.broker.proc.pid
        lines = "\n".join(s.broker.log_lines())
        if "seccomp=off reason=sanitizer_build" in lines:
            # Sanitizer builds fork and trace at exit (the leak check): the
            # filter is compiled out there, and says so.
            assert status(pid)["Seccomp"] == "0"
            return
        assert "event=sandbox seccomp=on" in lines, s.broker.tail()
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        assert len(tids) >= 4, tids  # main, store writer, management, workers
        for tid in tids:
            st = status(pid, tid)
            assert st["Seccomp"] == "2", (tid, st["Seccomp"])
            assert st["NoNewPrivs"] == "1", (tid, st["NoNewPrivs"])
        # the key process: a child with a filter of its own
        children = open("/proc/%d/task/%d/children" % (pid, pid)).read().split()
        assert children, "no key process"
        assert status(int(children[0]))["Seccomp"] == "2"
        # the API still works under the filter (it never needed exec or fork)
        adm = ak.setup_admin(s)
        assert adm.api.get("/api/v1/me").status_code == 200
    finally:
        s.stop()
