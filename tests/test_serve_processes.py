"""`geoflora serve` as production runs it: several server processes under gunicorn. A process that
stops answering (here: stopped with SIGSTOP, as a worker stuck in a C call holding the GIL would be)
is killed and replaced after GEOFLORA_WORKER_TIMEOUT_S, and the service answers all along."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import Processes, children, server_env, start_server, wait_for

TIMEOUT_S = 4


@pytest.mark.slow
def test_a_hung_server_process_is_replaced_while_the_service_keeps_answering(computed, tmp_path):
    settings, _, run_id = computed
    processes = Processes(tmp_path)
    port = free_port()
    try:
        master = start_server(processes, "api", port, 2, server_env(settings.data_dir, worker_timeout_s=TIMEOUT_S))
        workers = wait_for(lambda: c if len(c := children(master.pid)) == 2 else None, 30, "two server processes")
        # the service answers (start_server waits for it), but the second process may still be
        # starting up (app, MapProxy configuration), when it sends no heartbeat yet: let both
        # finish starting, so the stopped one is killed by the heartbeat timeout measured below
        time.sleep(TIMEOUT_S)
        workers = children(master.pid)
        assert len(workers) == 2, workers
        victim = min(workers)
        os.kill(victim, signal.SIGSTOP)
        t0 = time.monotonic()
        answered = []
        while True:
            t1 = time.monotonic()
            health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)  # a new connection each time
            answered.append(time.monotonic() - t1)
            assert health.status_code == 200 and health.json()["live_run"] == run_id
            now = children(master.pid)
            if victim not in now and len(now) == 2:
                break
            assert time.monotonic() - t0 < TIMEOUT_S + 20, f"the stopped process {victim} was not replaced"
            time.sleep(0.2)
        replaced_after = time.monotonic() - t0
        assert replaced_after > TIMEOUT_S * 0.7  # by the heartbeat timeout, not by chance
        assert max(answered) < 1.0, answered
        (new,) = now - workers
        # the replacement serves: stop the other original process and the service still answers
        os.kill(min(workers - {victim}), signal.SIGSTOP)
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
        assert new in children(master.pid)
        print(f"\nhung server process replaced after {replaced_after:.1f} s (timeout {TIMEOUT_S} s); "
              f"health answered {len(answered)} times, slowest {max(answered) * 1000:.0f} ms")
    finally:
        for pid in children(master.pid) if "master" in locals() else ():
            os.kill(pid, signal.SIGCONT)
        processes.close()
