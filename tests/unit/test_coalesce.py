"""Unit tests for p2pcache.coalesce.Flights, driven with trio.run directly."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pcache.coalesce import Flights


def run(afn):
    return trio.run(afn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_single_caller_is_not_shared():
    async def main():
        flights: Flights[int] = Flights()

        async def fn():
            return 7

        assert await flights.run("k", fn) == (7, False)
        assert not flights.in_flight("k")

    run(main)


def test_ten_concurrent_callers_run_fn_once():
    async def main():
        flights: Flights[str] = Flights()
        calls = 0
        results = []
        release = trio.Event()

        async def fn():
            nonlocal calls
            calls += 1
            await release.wait()
            return "answer"

        async def caller():
            results.append(await flights.run("GET /r", fn))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(caller)
            await trio.testing.wait_all_tasks_blocked()
            assert flights.in_flight("GET /r")
            release.set()
        assert calls == 1
        assert sorted(results) == [("answer", False)] + [("answer", True)] * 9
        assert not flights.in_flight("GET /r")

    run(main)


def test_different_keys_run_separately():
    async def main():
        flights: Flights[str] = Flights()
        calls: list[str] = []
        results: dict[str, tuple[str, bool]] = {}

        def make(key):
            async def fn():
                calls.append(key)
                await trio.sleep(1)
                return key.upper()
            return fn

        async def caller(key):
            results[key] = await flights.run(key, make(key))

        async with trio.open_nursery() as nursery:
            for key in ("a", "b", "c"):
                nursery.start_soon(caller, key)
        assert sorted(calls) == ["a", "b", "c"]
        assert results == {"a": ("A", False), "b": ("B", False), "c": ("C", False)}

    run(main)


def test_sequential_calls_do_not_share():
    async def main():
        flights: Flights[int] = Flights()
        n = 0

        async def fn():
            nonlocal n
            n += 1
            return n

        assert await flights.run("k", fn) == (1, False)
        assert await flights.run("k", fn) == (2, False)

    run(main)


def test_leader_failure_hands_the_lead_to_a_waiter():
    async def main():
        flights: Flights[str] = Flights()
        calls = 0
        leader_error: list[BaseException] = []
        results = []

        async def fn():
            nonlocal calls
            calls += 1
            me = calls
            await trio.sleep(1)
            if me == 1:
                raise RuntimeError("upstream broke")
            return f"ok from call {me}"

        async def leader():
            try:
                await flights.run("k", fn)
            except RuntimeError as exc:
                leader_error.append(exc)

        async def waiter():
            results.append(await flights.run("k", fn))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(4):
                nursery.start_soon(waiter)
        assert [str(e) for e in leader_error] == ["upstream broke"]
        assert calls == 2  # one waiter took the lead and ran fn itself
        assert sorted(results) == [("ok from call 2", False)] + [("ok from call 2", True)] * 3
        assert not flights.in_flight("k")

    run(main)


def test_leader_cancelled_waiters_still_get_a_result():
    async def main():
        flights: Flights[str] = Flights()
        calls = 0
        results = []
        leader_scope = trio.CancelScope()
        leader_done = trio.Event()

        async def fn():
            nonlocal calls
            calls += 1
            await trio.sleep(10)
            return f"result {calls}"

        async def leader():
            with leader_scope:
                await flights.run("k", fn)
            leader_done.set()

        async def waiter():
            results.append(await flights.run("k", fn))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            leader_scope.cancel()  # the leader's client went away
        assert leader_scope.cancelled_caught
        assert leader_done.is_set()
        assert calls == 2
        assert sorted(results) == [("result 2", False), ("result 2", True), ("result 2", True)]
        assert not flights.in_flight("k")

    run(main)


def test_every_attempt_failing_fails_everyone():
    async def main():
        flights: Flights[int] = Flights()
        calls = 0
        errors = 0

        async def fn():
            nonlocal calls
            calls += 1
            await trio.sleep(1)
            raise ValueError("nope")

        async def caller():
            nonlocal errors
            with pytest.raises(ValueError):
                await flights.run("k", fn)
            errors += 1

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(caller)
        assert errors == 3
        assert calls == 3  # each took its turn as leader
        assert not flights.in_flight("k")

    run(main)
