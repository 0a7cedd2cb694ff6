"""The micro-batcher on its own: grouping, limits, failures (a real function, no model)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from imgclf.serving.batcher import MicroBatcher, bucket_sizes

T = TypeVar("T")
# A batcher that waits when it should not hangs: fail fast instead.
pytestmark = pytest.mark.timeout(20)


class Recorder:
    """A batch function that remembers each batch's size: row i -> [sum of image i]."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_on = fail_on

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.sizes.append(len(pixels))
        if self.fail_on is not None and len(self.sizes) == self.fail_on:
            raise RuntimeError("model failed")
        return pixels.reshape(len(pixels), -1).sum(axis=1, keepdims=True)


def images(*values: int) -> np.ndarray:
    """``(len(values), 2, 2, 3)`` images, image i filled with ``values[i]``."""
    return np.stack([np.full((2, 2, 3), v, np.float32) for v in values])


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def test_announced_requests_arriving_within_the_window_share_one_call() -> None:
    fn = Recorder()

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(fn, max_images=32, window_s=1.0)
        await batcher.start()

        async def request(i: int) -> np.ndarray:
            with batcher.coming():  # as the app does while it reads and decodes
                await asyncio.sleep(0.02 * i)  # they arrive one after another
                queued = batcher.submit(images(i, i + 100))
            return await queued

        out = await asyncio.gather(*(request(i) for i in range(5)))
        assert (batcher.calls, batcher.images) == (1, 10)
        await batcher.stop()
        return out

    out = run(main)
    assert fn.sizes == [16]  # the 10 images, padded up to a bucket size
    for i, rows in enumerate(out):  # each request its own rows, in its own order
        np.testing.assert_array_equal(rows, [[12 * i], [12 * (i + 100)]])


def test_a_batch_never_grows_past_max_images() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(fn, max_images=8, window_s=0.05)
        await batcher.start()
        await asyncio.gather(*(batcher.predict(images(1, 2, 3)) for _ in range(5)))
        await batcher.stop()

    run(main)
    assert fn.sizes == [8, 8, 4]  # 6, 6 and 3 images, padded up to bucket sizes


def test_batches_are_cut_and_padded_to_bucket_sizes_and_the_padding_never_returned() -> None:
    assert bucket_sizes(32) == [1, 2, 4, 8, 16, 32]
    assert bucket_sizes(12) == [1, 2, 4, 8, 12]
    assert bucket_sizes(1) == [1]
    fn = Recorder()

    async def main() -> np.ndarray:
        batcher = MicroBatcher(fn, max_images=8)
        await batcher.start()
        rows = await batcher.predict(images(*range(1, 21)))  # one request of 20 images
        await batcher.stop()
        return rows

    np.testing.assert_array_equal(run(main), [[12 * v] for v in range(1, 21)])
    assert fn.sizes == [8, 8, 4]


def test_warm_up_calls_every_bucket_size_once() -> None:
    fn = Recorder()

    async def main() -> None:
        batcher = MicroBatcher(fn, max_images=16)
        await batcher.start()
        await batcher.warm_up((2, 2, 3))
        await batcher.stop()

    run(main)
    assert fn.sizes == [1, 2, 4, 8, 16]


def test_a_lone_request_does_not_wait_for_the_window() -> None:
    fn = Recorder()

    async def main() -> float:
        batcher = MicroBatcher(fn, window_s=30.0)  # nobody else announced: no wait at all
        await batcher.start()
        t0 = time.perf_counter()
        for v in range(3):
            np.testing.assert_array_equal(await batcher.predict(images(v)), [[12 * v]])
        seconds = time.perf_counter() - t0
        await batcher.stop()
        return seconds

    assert run(main) < 5
    assert fn.sizes == [1, 1, 1]


def test_the_window_ends_the_wait_for_an_announced_request_that_is_slow() -> None:
    fn = Recorder()
    window = 0.3

    async def main() -> float:
        batcher = MicroBatcher(fn, window_s=window)
        await batcher.start()
        first_done = asyncio.Event()

        async def slow() -> np.ndarray:
            with batcher.coming():  # announced, but still reading its upload...
                await first_done.wait()  # ...until the first request has its answer
                return await batcher.predict(images(2))

        slow_task = asyncio.create_task(slow())
        await asyncio.sleep(0)  # the slow request announces itself
        start = asyncio.get_running_loop().time()
        np.testing.assert_array_equal(await batcher.predict(images(1)), [[12]])
        waited = asyncio.get_running_loop().time() - start
        first_done.set()
        np.testing.assert_array_equal(await slow_task, [[24]])
        await batcher.stop()
        return waited

    # It waited for the announced request, but only the window: without the window's
    # end it would wait for ever (the timeout mark fails the test instead).
    assert run(main) >= window * 0.9  # asyncio's timers may fire a clock tick early
    assert fn.sizes == [1, 1]


def test_a_failing_call_fails_its_requests_and_the_next_ones_still_work() -> None:
    fn = Recorder(fail_on=1)

    async def main() -> None:
        batcher = MicroBatcher(fn, window_s=0.05)
        await batcher.start()
        failed = await asyncio.gather(batcher.predict(images(1)), batcher.predict(images(2)),
                                      return_exceptions=True)
        assert [str(e) for e in failed] == ["model failed", "model failed"]
        np.testing.assert_array_equal(await batcher.predict(images(3)), [[36]])
        await batcher.stop()

    run(main)
    assert fn.sizes == [2, 1]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_images"):
        MicroBatcher(Recorder(), max_images=0)
    with pytest.raises(ValueError, match="window_s"):
        MicroBatcher(Recorder(), window_s=-1)
