"""Read the next item of an iterator in a background thread while the caller works on this one.

Training reads each step's gradient rows from the store (decompression, copies: tens of ms per
step) and then runs the GRADIEND update (also tens of ms); on two cores the two overlap. Zarr and
torch release the GIL in their heavy parts, so one helper thread is enough.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterable[T]) -> Iterator[T]:
    """Yield the items of `items` in order, producing item k+1 while item k is being used.

    Only the helper thread advances the underlying iterator, so it need not be thread-safe. An
    exception raised while producing an item is re-raised here, at that item."""
    it = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(next, it, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, it, _END)
            yield item
