"""Parts of the decoder grid without Prefect: how cells are split, and how finalize refuses an
incomplete or overlapping set of parts."""
import pytest

from gradiend_core.errors import StoreError
from gradiend_core.stages import grid_parts as gp
from gradiend_core.store import LocalStore


@pytest.mark.parametrize("n_cells", [1, 2, 7, 32])
@pytest.mark.parametrize("parts", [1, 2, 3, 5, 40])
def test_split_keeps_canonical_order_and_never_gives_an_empty_part(n_cells, parts):
    split = gp.split_cells(n_cells, parts)
    assert [i for p in split for i in p] == list(range(n_cells))  # every cell once, in canonical order
    assert len(split) == min(parts, n_cells) and all(split)  # more parts than cells: one cell each
    assert max(map(len, split)) - min(map(len, split)) <= 1


def plan(n_cells: int) -> dict:
    return {"stage": "decoder-grid", "version": "2", "key": "k", "started": 0.0, "cells": [[1.0, float(i)] for i in range(n_cells)], "base": {}, "layout": {}}


def part(index: int, cells: list[int]) -> dict:
    return {"part": index, "cells": cells, "records": [{"cell": i} for i in cells], "seconds": 0.0}


@pytest.mark.parametrize("parts, needle", [
    ([part(0, [0, 1]), part(1, [3])], r"grid cells \[2\] were not scored by any part"),
    ([part(0, [0, 1]), part(1, [1, 2, 3])], "grid cell 1 was scored by two parts"),
])
def test_finalize_refuses_lost_or_duplicated_cells(tmp_path, parts, needle):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StoreError, match=needle):
        gp.finalize(store, {}, {}, plan(4), parts)
    assert list(store.outputs()) == []
