import threading
import time

import pytest

from babyemo.parallel import prefetch


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


def test_ordered_map_keeps_input_order_across_threads():
    import random

    from babyemo.parallel import ordered_map

    rng = random.Random(0)
    delays = [rng.random() / 200 for _ in range(40)]
    names = set()

    def slow_square(i):
        names.add(threading.current_thread().name)
        time.sleep(delays[i])
        return i * i

    assert list(ordered_map(slow_square, range(40), workers=3, ahead=6)) == [
        i * i for i in range(40)]
    assert len(names) > 1 and all(n.startswith("babyemo-stream") for n in names)


def test_ordered_map_bounds_the_items_in_flight_and_runs_the_initializer():
    from babyemo.parallel import ordered_map

    pulled = []
    inits = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    gen = ordered_map(lambda i: i, items(), workers=2, ahead=4,
                      initializer=lambda tag: inits.append(tag), initargs=("ready",))
    assert next(gen) == 0
    assert len(pulled) <= 4  # not all 100 submitted up front
    gen.close()
    assert inits and set(inits) == {"ready"} and len(inits) <= 2


def test_ordered_map_reraises_at_the_failing_item_and_stops():
    from babyemo.parallel import ordered_map

    calls = []

    def fn(i):
        calls.append(i)
        if i == 5:
            raise KeyError("item 5")
        return i

    got = []
    with pytest.raises(KeyError, match="item 5"):
        for value in ordered_map(fn, range(1000), workers=2, ahead=4):
            got.append(value)
    assert got == [0, 1, 2, 3, 4] and len(calls) < 20


def test_ordered_map_checks_its_arguments():
    from babyemo.parallel import ordered_map

    with pytest.raises(ValueError):
        next(ordered_map(abs, [1], workers=0, ahead=1))
    with pytest.raises(ValueError):
        next(ordered_map(abs, [1], workers=2, ahead=1))
