"""The gradiend-flow Prefect flow, its CLI, and the Python API for notebooks."""
