"""One writer per output folder: a live holder refuses others, a dead one is taken over, a lock
from another host says how to remove it, and every rank of a job sees the same outcome."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lavis.common.output_lock import LOCK_NAME, OutputLock, OutputLockedError, lock_output_for_job

HOLD = textwrap.dedent(
    """
    import sys, time
    from lavis.common.output_lock import OutputLock
    lock = OutputLock(sys.argv[1], "training run").acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_writer_refuses_a_second_one(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(OutputLockedError, match=rf"in use by another training run \(pid {proc.pid} on this host"):
            OutputLock(tmp_path, "slide job").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_writers_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the killed process
    with caplog.at_level(logging.WARNING), OutputLock(tmp_path, "training run") as lock:
        assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "no longer running" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()  # released


def test_a_recycled_pid_is_not_the_holder(tmp_path):
    """The pid lives, but it is another process (different start time) than the one that locked."""
    record = {"host": OutputLock(tmp_path, "x").record["host"], "pid": os.getppid(), "started_ticks": "1",
              "what": "training run", "since": "2026-01-01T00:00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with OutputLock(tmp_path, "training run"):
        pass


def test_a_lock_from_another_host_says_how_to_remove_it(tmp_path):
    record = {"host": "gpu-node-17", "pid": 4242, "what": "training run", "since": "2026-01-01T00:00:00",
              "argv": ["train.py", "--cfg-path", "x.yaml"]}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(OutputLockedError, match=rf"pid 4242 on host gpu-node-17.*train.py.*delete {tmp_path}/\.lock"):
        OutputLock(tmp_path, "training run").acquire()


def test_release_leaves_someone_elses_lock_alone(tmp_path):
    lock = OutputLock(tmp_path, "a").acquire()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    lock.release()
    assert (tmp_path / LOCK_NAME).exists()


def test_a_torn_lock_file_is_abandoned_once_old(tmp_path):
    path = tmp_path / LOCK_NAME
    path.write_text("{")
    old = time.time() - 60
    os.utime(path, (old, old))
    with OutputLock(tmp_path, "cache build"):
        pass


RANKS = textwrap.dedent(
    """
    import sys, torch.distributed as dist
    from lavis.common.output_lock import OutputLockedError, lock_output_for_job
    dist.init_process_group("gloo")
    with lock_output_for_job(sys.argv[1], "training run") as lock:
        print(f"rank {dist.get_rank()} owns={lock is not None}", flush=True)
        dist.barrier()
    try:
        with lock_output_for_job(sys.argv[2], "training run"):
            print("not refused", flush=True)
    except OutputLockedError as err:
        print(f"rank {dist.get_rank()} refused: {err}"[:40], flush=True)
    dist.destroy_process_group()
    """
)


def test_ranks_of_one_job_share_the_lock_and_all_refuse_together(tmp_path, free_port):
    """Rank 0 alone holds a free folder's lock; a folder held elsewhere is refused on every rank
    (none is left waiting at a barrier)."""
    port = free_port()
    with OutputLock(tmp_path / "busy", "another run"):
        procs = []
        for rank in range(2):
            env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
            args = [sys.executable, "-c", RANKS, str(tmp_path / "free"), str(tmp_path / "busy")]
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True))
        outputs = [proc.communicate(timeout=120)[0].split("\n")[:2] for proc in procs]
    assert [lines[0] for lines in outputs] == ["rank 0 owns=True", "rank 1 owns=False"]
    assert all(lines[1].startswith(f"rank {rank} refused: ") for rank, lines in enumerate(outputs)), outputs
    assert not (tmp_path / "free" / LOCK_NAME).exists()


def test_lock_output_for_job_in_one_process(tmp_path):
    with lock_output_for_job(tmp_path, "slide job") as lock:
        assert lock.held
        with pytest.raises(OutputLockedError, match="already locked by this process"):
            OutputLock(tmp_path, "slide job").acquire()


def test_named_locks_let_writers_of_different_files_share_a_folder(tmp_path):
    with OutputLock(tmp_path, "prediction run", name=".a.jsonl.lock"):
        with OutputLock(tmp_path, "prediction run", name=".b.jsonl.lock") as other:
            assert other.held and (tmp_path / ".b.jsonl.lock").exists()
        with pytest.raises(OutputLockedError, match="already locked by this process"):
            OutputLock(tmp_path, "prediction run", name=".a.jsonl.lock").acquire()
    assert not list(tmp_path.iterdir())
