"""Environment defaults for running Prefect offline on one machine."""
import os

DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MPLBACKEND": "Agg",
}


def apply() -> None:
    """The defaults above, and glibc's allocator tuned before any task thread starts (see
    gradiend_core/allocator.py: a thread started earlier keeps its own arena)."""
    from gradiend_core.allocator import child_environment, reuse_freed_memory

    for k, v in {**DEFAULTS, **child_environment()}.items():
        os.environ.setdefault(k, v)
    reuse_freed_memory()
