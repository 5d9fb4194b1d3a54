"""One thin Prefect task per pipeline stage; the work itself lives in gradiend_core.stages."""
