"""Group the images of requests that arrive together into one model call.

Each request hands its ``(n, S, S, 3)`` pixels to :meth:`MicroBatcher.predict` and
awaits its ``(n, C)`` probabilities. One worker takes the first waiting request, waits
up to ``window_s`` more for others (never past ``max_images``), runs the model once on
all of them in its own thread and hands each request its rows. While the model runs,
new requests queue up, so the busier the server, the larger the batches: throughput
grows with load.

The worker waits only while other requests are on their way (announced with
:meth:`MicroBatcher.coming`, while they are read and decoded): a lone request never
waits at all.

At most ``max_queue`` requests are on their way or waiting at once: one more is
refused with :class:`Busy` (the server answers 503), so under overload the answers that
are given stay fast instead of every answer growing late. A request whose client has
gone cancels its future, and the worker skips it.

The model is only ever called on a few batch sizes (:func:`bucket_sizes`: powers of
two up to ``max_images``), the batch padded with blank images up to the next one, and
each size is run once at start-up (:meth:`MicroBatcher.warm_up`). On a CPU the first
call at a new batch shape costs TensorFlow 0.2-2 s (measured with MobileNetV2 at 224
px); without buckets, a busy server would meet a new shape at nearly every call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from imgclf.serving.settings import DEFAULTS

MAX_IMAGES, WINDOW_S, MAX_QUEUE = DEFAULTS.batch_images, DEFAULTS.batch_window_s, DEFAULTS.max_queue


class Busy(RuntimeError):
    """``max_queue`` requests are already on their way or waiting: try again later."""


def bucket_sizes(max_images: int) -> list[int]:
    """The batch sizes the model is called with: 1, 2, 4, ... below ``max_images``, and it."""
    sizes = [1 << k for k in range(max_images.bit_length()) if 1 << k < max_images]
    return [*sizes, max_images]


def padded_chunks(pixels: np.ndarray, max_images: int) -> list[tuple[np.ndarray, int]]:
    """``pixels`` (``(N, ...)``) cut into chunks of at most ``max_images``, each padded
    with zero images up to a bucket size: ``[(chunk (B, ...), real images n <= B)]``."""
    sizes = bucket_sizes(max_images)
    out = []
    for start in range(0, len(pixels), max_images):
        chunk = pixels[start:start + max_images]
        size = next(b for b in sizes if b >= len(chunk))
        pad = np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)
        out.append((np.concatenate([chunk, pad]) if len(pad) else chunk, len(chunk)))
    return out


@dataclass
class _Job:
    pixels: np.ndarray
    result: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Run ``fn`` (``(B, S, S, 3)`` -> ``(B, C)``) on batches gathered from concurrent calls."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_images: int = MAX_IMAGES,
                 window_s: float = WINDOW_S, max_queue: int = MAX_QUEUE) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        if window_s < 0:
            raise ValueError(f"window_s must not be negative, got {window_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.fn, self.max_images, self.window_s = fn, max_images, window_s
        self.max_queue = max_queue
        self.calls = 0  # model calls made
        self.images = 0  # images predicted
        self.expected = 0  # requests announced by coming() and not yet queued
        self._queue: asyncio.Queue[_Job] | None = None
        self._held: _Job | None = None  # taken from the queue, but for the next batch
        self._worker: asyncio.Task[None] | None = None
        # One thread: model calls never overlap, so requests pile up into the next batch.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="imgclf-model")

    async def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue(self.max_queue)
        self._worker = asyncio.create_task(self._run(), name="imgclf-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting get ``RuntimeError``."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.result.done():
                job.result.set_exception(RuntimeError("the server is shutting down"))
        self._thread.shutdown(wait=False)

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a request that will call :meth:`predict` soon (or fail before it):
        a batch being gathered meanwhile waits for it, up to the window. :class:`Busy`
        when ``max_queue`` requests are already on their way or queued."""
        if self.expected + self.waiting >= self.max_queue:
            raise Busy(f"{self.max_queue} requests are already waiting")
        self.expected += 1
        try:
            yield
        finally:
            self.expected -= 1

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken into a model call."""
        return (self._queue.qsize() if self._queue is not None else 0) + (self._held is not None)

    async def warm_up(self, image_shape: tuple[int, ...]) -> None:
        """Call the model once at every bucket size on blank images of ``image_shape``."""
        loop = asyncio.get_running_loop()
        for size in bucket_sizes(self.max_images):
            blank = np.zeros((size, *image_shape), np.float32)
            await loop.run_in_executor(self._thread, self.fn, blank)

    def _predict_padded(self, pixels: np.ndarray) -> np.ndarray:
        """``fn`` of ``pixels`` called on bucket-sized chunks (in the model thread)."""
        return np.concatenate([self.fn(chunk)[:n]
                               for chunk, n in padded_chunks(pixels, self.max_images)])

    def submit(self, pixels: np.ndarray) -> asyncio.Future[np.ndarray]:
        """Queue ``pixels`` (``(n, S, S, 3)``, n >= 1) at once; the future gives their
        ``(n, C)`` probabilities."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        job = _Job(pixels, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)  # never waits: a full queue is refused
        except asyncio.QueueFull:
            raise Busy(f"{self.max_queue} requests are already waiting") from None
        return job.result

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, C)`` probabilities of ``pixels`` (``(n, S, S, 3)``, n >= 1)."""
        return await self.submit(pixels)

    async def _gather(self) -> list[_Job]:
        """The next batch: the first waiting job, and whatever joins within the window."""
        assert self._queue is not None
        first, self._held = self._held or await self._queue.get(), None
        jobs, count = [first], len(first.pixels)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while count < self.max_images:
            try:  # those already waiting first, then those arriving within the window
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0 or self.expected == 0:  # nobody else on the way: go now
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if job.result.done():  # its client has gone: no room taken in this batch
                continue
            if count + len(job.pixels) > self.max_images:
                self._held = job  # would overflow this batch: it starts the next one
                break
            jobs.append(job)
            count += len(job.pixels)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [j for j in await self._gather() if not j.result.done()]  # not cancelled
            if not jobs:
                continue
            batch = np.concatenate([j.pixels for j in jobs])
            try:
                probs = await loop.run_in_executor(self._thread, self._predict_padded, batch)
            except Exception as exc:  # the requests fail; the server keeps serving
                for j in jobs:
                    if not j.result.done():
                        j.result.set_exception(exc)
                continue
            self.calls += 1
            self.images += len(batch)
            start = 0
            for j in jobs:
                n = len(j.pixels)
                if not j.result.done():
                    j.result.set_result(probs[start:start + n])
                start += n
