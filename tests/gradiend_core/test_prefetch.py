import threading

import pytest

from gradiend_core.prefetch import prefetch


def test_items_come_in_order_and_are_produced_off_the_caller_thread():
    seen = []

    def produce():
        for i in range(5):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(produce())) == [0, 1, 2, 3, 4]
    assert all(name.startswith("prefetch") for name in seen)


def test_an_error_surfaces_at_its_item():
    def produce():
        yield 1
        raise ValueError("bad row")

    got = prefetch(produce())
    assert next(got) == 1
    with pytest.raises(ValueError, match="bad row"):
        next(got)


def test_stopping_early_reads_at_most_one_item_ahead():
    produced = []

    def produce():
        for i in range(100):
            produced.append(i)
            yield i

    for i in prefetch(produce()):
        if i == 3:
            break
    assert produced == [0, 1, 2, 3, 4]
