"""Single-flight: concurrent identical misses on one node make one upstream request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, TypeVar

import trio

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    done: trio.Event = field(default_factory=trio.Event)
    result: T | None = None
    ok: bool = False


class Flights(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Return (result, shared): shared is True when another caller's flight answered.

        If the leading caller fails or is cancelled (its client went away), a waiting
        caller takes the lead itself rather than inherit the failure.
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.ok:
                return flight.result, True  # type: ignore[return-value]
        flight = _Flight()
        self._flights[key] = flight
        try:
            flight.result = await fn()
            flight.ok = True
            return flight.result, False
        finally:
            del self._flights[key]
            flight.done.set()
