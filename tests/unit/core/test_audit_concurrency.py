"""Many real processes appending to one audit log at once."""
import json
import subprocess
import sys
import textwrap
import time

from opskit.core.audit import AuditLog

WORKERS = 8
PER_WORKER = 50

WRITER = textwrap.dedent("""
    import sys, time
    from opskit.core.audit import AuditLog
    path, worker, count, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    log = AuditLog(path)
    while time.time() < start_at:      # start together to maximise contention
        time.sleep(0.001)
    for i in range(count):
        log.append(operator=f"worker{worker}", host="h", command="test append",
                   arguments={"worker": int(worker), "i": i}, result="ok", exit_code=0,
                   summary=f"{worker}/{i}")
""")


def _spawn_writers(path, workers, per_worker):
    start_at = time.time() + 1.0           # all interpreters are up by then
    return [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(per_worker),
                              str(start_at)], stderr=subprocess.PIPE, text=True)
            for w in range(workers)]


def test_concurrent_writers_keep_one_unbroken_chain(tmp_path):
    path = tmp_path / "audit" / "audit.log"
    log = AuditLog(path)
    procs = _spawn_writers(path, WORKERS, PER_WORKER)
    checks = 0
    while any(p.poll() is None for p in procs):   # readers during the writes never see
        report = log.verify()                     # a half-written line or a broken chain
        assert report.ok, report.describe()
        checks += 1
    for p in procs:
        assert p.wait() == 0, p.stderr.read()

    report = log.verify()
    assert report.ok, report.describe()
    total = WORKERS * PER_WORKER
    assert report.entries_checked == total
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == list(range(1, total + 1))
    pairs = sorted((e["arguments"]["worker"], e["arguments"]["i"]) for e in entries)
    assert pairs == [(w, i) for w in range(WORKERS) for i in range(PER_WORKER)]
    with open(path, "rb") as fh:
        raw = fh.read()
    assert raw.count(b"\n") == total and raw.endswith(b"\n")
    assert all(json.loads(line)["seq"] for line in raw.splitlines())
    assert checks >= 1


def test_concurrent_checkpoints_and_appends(tmp_path):
    path = tmp_path / "audit" / "audit.log"
    log = AuditLog(path)
    log.append(operator="o", host="h", command="c", result="ok", exit_code=0)
    procs = _spawn_writers(path, 4, 25)
    taken = []
    while any(p.poll() is None for p in procs):
        taken.append(log.checkpoint())
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    report = log.verify()
    assert report.ok, report.describe()
    assert report.entries_checked == 101
    assert report.checkpoints_checked == len(taken) >= 1
