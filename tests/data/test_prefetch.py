import threading
import time

import pytest

from babyemo.data.prefetch import prefetch


def test_prefetch_keeps_order_and_runs_in_another_thread():
    threads = set()

    def items():
        for i in range(50):
            threads.add(threading.get_ident())
            yield i

    assert list(prefetch(items(), depth=3)) == list(range(50))
    assert threads and threading.get_ident() not in threads


def test_prefetch_produces_the_next_item_while_the_consumer_holds_this_one():
    second_made = threading.Event()

    def items():
        yield 0
        second_made.set()
        yield 1

    gen = prefetch(items(), depth=1)
    assert next(gen) == 0
    assert second_made.wait(timeout=10)  # made before the consumer asked for it
    assert list(gen) == [1]


def test_prefetch_reraises_the_producer_error_in_place():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in prefetch(items()):
            got.append(x)
    assert got == [1, 2]


def test_closing_early_stops_the_producer():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    gen = prefetch(items(), depth=2)
    assert next(gen) == 0
    gen.close()
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 5


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        prefetch([], depth=0)
