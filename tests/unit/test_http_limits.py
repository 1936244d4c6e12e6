"""A listener's connection budget (http_api.Limits): connections waiting on their client
make room for new ones, longest waiting first; busy ones never do."""

from __future__ import annotations

import trio

from p2pcache.http_api import Limits


def test_at_the_cap_the_longest_waiting_connection_makes_room():
    async def main() -> None:
        evicted: list[int] = []
        limits = Limits("test", max_connections=3, on_evict=lambda: evicted.append(1))
        slots = [limits.admit() for _ in range(3)]
        assert all(slots) and len(limits.open) == 3
        ended: list[int] = []

        async def wait(i: int) -> None:
            with slots[i].waiting():
                await trio.sleep_forever()
            ended.append(i)

        async with trio.open_nursery() as nursery:
            for i in (1, 0, 2):  # slot 1 began waiting first
                nursery.start_soon(wait, i)
                await trio.sleep(0.01)
            newcomer = limits.admit()
            await trio.sleep(0.01)
            assert newcomer is not None and ended == [1] and slots[1].evicted
            assert len(limits.open) == 3 and evicted == [1]
            slots[1].release()  # the evicted connection's own cleanup counts nothing twice
            assert len(limits.open) == 3
            assert limits.admit() is not None
            await trio.sleep(0.01)
            assert ended == [1, 0]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_busy_connections_are_never_closed_and_the_newcomer_is_refused():
    async def main() -> None:
        limits = Limits("test", max_connections=2)
        busy = [limits.admit(), limits.admit()]
        assert limits.admit() is None
        assert not any(s.evicted for s in busy if s)
        busy[0].release()
        assert limits.admit() is not None

    trio.run(main)


def test_a_connection_that_stops_waiting_is_no_longer_a_candidate():
    async def main() -> None:
        limits = Limits("test", max_connections=1)
        slot = limits.admit()
        assert slot is not None
        with slot.waiting():
            await trio.sleep(0)
        assert limits.admit() is None and not slot.evicted  # now busy: answering

    trio.run(main)


def test_listeners_share_no_budget():
    tcp, https = Limits("tcp", max_connections=1), Limits("https", max_connections=1)
    assert tcp.admit() is not None and tcp.admit() is None
    assert https.admit() is not None  # a full local API leaves the HTTPS listener its own
    tcp.body_bytes += 64 * 1024 * 1024
    assert https.body_bytes == 0
