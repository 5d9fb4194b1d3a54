"""glibc tuning: on, idempotent, and off when GRADIEND_MALLOC_TUNING=0 (checked in a fresh process)."""
import subprocess
import sys

import pytest

CODE = "from gradiend_core import allocator as a; r = a.reuse_freed_memory(); a.release_freed_memory(); " \
       "print(r, a.reuse_freed_memory())"


def run(env_value):
    import os

    env = {**os.environ, "GRADIEND_MALLOC_TUNING": env_value}
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuning_is_applied_once_and_can_be_switched_off():
    assert run("1") == ["True", "True"]
    assert run("0") == ["False", "False"]


THREAD_CODE = """
import resource, threading
from gradiend_core import allocator as a
a.reuse_freed_memory()
n = 100 * 2**20  # above a thread arena's 64 MiB heaps: such a thread used to mmap it afresh every time
faults = []
def work():
    f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(10):
        b = bytearray(n)  # malloc + zero fill: touches every page
        del b
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0)
t = threading.Thread(target=work)
t.start()
t.join()
print(faults[0] / (n // 4096))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_worker_threads_reuse_large_blocks_instead_of_page_faulting_them_again():
    """Prefect runs stages on worker threads: a 100 MiB block allocated 10 times on one is page-faulted
    about once with the tuning (every thread on the main heap), about 10 times without it."""
    import os

    def pages_faulted_per_block(value):
        env = {**os.environ, "GRADIEND_MALLOC_TUNING": value}
        r = subprocess.run([sys.executable, "-c", THREAD_CODE], capture_output=True, text=True, env=env, check=True)
        return float(r.stdout.split()[-1])

    assert pages_faulted_per_block("1") < 2.0
    assert pages_faulted_per_block("0") > 8.0

