"""A distributed runner's address (runner.address) is probed before anything runs: a scheduler that does
not answer is one line, in seconds, instead of a Dask/Ray connect timeout and its traceback mid-flow."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from gradiend_core.errors import ConfigError

PROBE_SECONDS = 5.0  # a refused port answers at once; a silent (firewalled) host is given this long
DEFAULT_PORTS = {("dask", ""): 8786, ("dask", "tcp"): 8786, ("dask", "tls"): 8786,
                 ("ray", "ray"): 10001, ("ray", ""): 6379}
LOCAL = ("auto", "local")  # ray: an already started cluster on this host, found without an address


def check_address(kind: str, address: str | None) -> None:
    """Raise ConfigError unless `address` (a Dask scheduler or Ray cluster) accepts a TCP connection."""
    if kind == "threads" or address is None or address in LOCAL:
        return
    target = host_port(kind, address)
    if target is None:  # a transport we do not probe (dask inproc://, ucx://): the library reports on it
        return
    host, port = target
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except OSError as e:
        why = "no answer within {:g} s".format(PROBE_SECONDS) if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ConfigError(f"runner.address {address}: no {kind} {'scheduler' if kind == 'dask' else 'cluster'} "
                          f"answers at {host}:{port} ({why}); start it, fix runner.address, or remove it to run on "
                          f"a local {kind} cluster") from None


def host_port(kind: str, address: str) -> tuple[str, int] | None:
    """(host, port) of `address` ("tcp://h:8786", "h:8786", "ray://h:10001"; a missing port: the default);
    None for another transport (dask's inproc://, ucx://)."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    scheme = parts.scheme.lower()
    if (kind, scheme) not in DEFAULT_PORTS:
        return None
    try:
        port = parts.port or DEFAULT_PORTS.get((kind, scheme))
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        example = "tcp://host:8786" if kind == "dask" else "ray://host:10001"
        raise ConfigError(f"runner.address '{address}' is not a {kind} address like {example}; fix runner.address")
    return parts.hostname, port
