"""The process of Prefect's temporary API server (uvicorn), which never outlives the run that started it.

`python -m flows.api_server FD UVICORN-ARGS...` (flows/local_api.py starts it): FD is the read end of a
pipe whose write end only the starting process holds. When that process closes it (LocalAPI.stop) or
ends in any way (its exit, Ctrl-C, SIGKILL, the OOM killer: the kernel closes it), the read here returns
end-of-file: the server then shuts down as on SIGTERM (uvicorn closes its connections and the database),
and exits at once if that takes longer than GRACE_S. Unlike PR_SET_PDEATHSIG this needs no preexec_fn (unsafe in a process
with threads), is not tied to the thread that started the server, and works on every POSIX system.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_S = 5.0


def watch(fd: int) -> None:
    """Wait for end-of-file on the lifeline `fd` (nothing is ever written to it), then shut down quietly: the
    run is over, and what a server cut short prints (events it could not record) would only land among or
    after the run's last lines."""
    while os.read(fd, 1):
        pass
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown (before it is set up: the default exit)
    time.sleep(GRACE_S)
    os._exit(0)


def main() -> None:
    fd = int(sys.argv[1])
    threading.Thread(target=watch, args=(fd,), name="lifeline", daemon=True).start()
    import uvicorn

    uvicorn.main(args=sys.argv[2:], prog_name="uvicorn")  # exits with uvicorn's status (3: port in use)


if __name__ == "__main__":
    main()
