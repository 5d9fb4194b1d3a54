"""flows.env.apply(): the offline defaults, and the allocator setting handed on to child processes."""
import os
import subprocess
import sys

import pytest

CODE = ("import os, subprocess, sys; from flows import env; env.apply(); "
        "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"MALLOC_ARENA_MAX\"))'], "
        "capture_output=True, text=True).stdout.strip(), os.environ['HF_HUB_OFFLINE'])")


def child_sees(tuning: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "HF_HUB_OFFLINE")}
    env["GRADIEND_MALLOC_TUNING"] = tuning
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_processes_started_after_apply_get_one_malloc_arena():
    """Local Dask/Ray workers are started after apply(): they must start with the arena setting too."""
    assert child_sees("1") == ["1", "1"]
    assert child_sees("0") == ["None", "1"]  # tuning off: the allocator is left alone, the rest applies
