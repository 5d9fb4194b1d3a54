"""Run a command and report ITS peak RSS: `python bench/_rss_shim.py CMD ARGS...`.

Linux keeps a process's ru_maxrss across exec, so a child spawned straight from a benchmark process
that already holds ~0.9 GiB (torch, a model) reports at least that much, whatever it used itself.
This shim is that child; it forks the real command from its own small address space and prints the
command's own peak as the last stderr line: `__PEAK_RSS_KIB__ <n>`.
"""
import os
import sys

pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\n__PEAK_RSS_KIB__ {usage.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
