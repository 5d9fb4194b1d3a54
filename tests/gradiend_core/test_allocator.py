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
