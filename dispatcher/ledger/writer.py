"""The run's one ledger writer: group commit from many workers, one transaction at a time.

Workers hand an operation to the writer and wait until it is durable. While one
batch is being committed (in a worker thread, so the event loop keeps sending), the
next operations queue up and go into the following transaction together: the
ledger costs one fsync per batch, not per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from dispatcher.errors import LedgerError
from dispatcher.ledger.ops import (
    MarkSending,
    RecordAnswer,
    Register,
    Reopen,
    SetWave,
    SkipRest,
    WriteOp,
)
from dispatcher.ledger.records import Answer, Status
from dispatcher.ledger.store import LedgerStore


class _Op:
    __slots__ = ("done", "error", "result", "write")

    def __init__(self, write: WriteOp) -> None:
        self.write = write
        self.done = anyio.Event()
        self.result: Any = None
        self.error: LedgerError | None = None


class LedgerWriter:
    """Owns all writes of one run; ``run()`` is its task in the run's task group."""

    def __init__(
        self, ledger: LedgerStore, run_id: str, *, capacity: int, record_sends: bool = True
    ) -> None:
        self._ledger = ledger
        self._run_id = run_id
        # False only to measure what the ledger costs (the benchmarks' ablation): the
        # "sending" marks and the answers are then not written, so nothing is durable.
        self._record_sends = record_sends
        self._send: MemoryObjectSendStream[_Op]
        self._recv: MemoryObjectReceiveStream[_Op]
        self._send, self._recv = anyio.create_memory_object_stream[_Op](capacity)
        self.commits = 0
        self.failed: LedgerError | None = None

    async def run(self) -> None:
        """Apply operations until ``close()``; a batch is everything waiting at that moment."""
        try:
            async for op in self._recv:
                batch = [op]
                while True:
                    try:
                        batch.append(self._recv.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._apply(batch)
        finally:
            # Nobody may wait forever on a writer that is gone.
            gone = self.failed or LedgerError("the ledger writer stopped")
            while True:
                try:
                    left = self._recv.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                left.error = gone
                left.done.set()
            self._recv.close()

    async def _apply(self, batch: list[_Op]) -> None:
        if self.failed is not None:
            error: LedgerError | None = self.failed
            results: list[Any] = [None] * len(batch)
        else:
            try:
                # Shielded: a commit that started must finish, or a sent request's answer is lost.
                with anyio.CancelScope(shield=True):
                    results = await anyio.to_thread.run_sync(
                        self._ledger.apply, [op.write for op in batch]
                    )
                error = None
                self.commits += 1
            except LedgerError as exc:
                self.failed = error = exc
                results = [None] * len(batch)
        for op, result in zip(batch, results, strict=True):
            op.result = result
            op.error = error
            op.done.set()

    async def close(self) -> None:
        await self._send.aclose()

    async def _do(self, write: WriteOp) -> Any:
        op = _Op(write)
        # Shielded so that a stop between "answered" and "recorded" still records the answer.
        with anyio.CancelScope(shield=True):
            try:
                await self._send.send(op)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise self.failed or LedgerError("the ledger writer stopped") from None
            await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def register(
        self, devices: Sequence[tuple[str, str, Sequence[str | tuple[str, str]]]]
    ) -> dict[str, list[Status]]:
        result: dict[str, list[Status]] = await self._do(Register(self._run_id, devices))
        return result

    async def sending(self, imei: str, command: int, at: float) -> None:
        if not self._record_sends:
            return
        await self._do(MarkSending(self._run_id, imei, command, at))

    async def answer(self, answer: Answer) -> None:
        if not self._record_sends:
            return
        await self._do(RecordAnswer(self._run_id, answer))

    async def skip_rest(self, imei: str, after: int, reason: str) -> None:
        await self._do(SkipRest(self._run_id, imei, after, reason))

    async def reopen(self, rows: Sequence[tuple[str, int]]) -> None:
        await self._do(Reopen(self._run_id, rows))

    async def set_wave(self, wave: int) -> None:
        await self._do(SetWave(self._run_id, wave))
