"""Unit tests for p2pcache.floor (the event's time, on GitHub's clock) and the event floor
`actions start` sets from GITHUB_EVENT_PATH."""

from __future__ import annotations

import json

import pytest

from p2pcache.actions import set_event_floor
from p2pcache.floor import (MAX_EVENT_BYTES, EventError, event_time, parse_event,
                            parse_not_before, parse_time)

STARTED = 1_800_000_000.0
T = "2024-05-01T12:00:00Z"
T_S = 1714564800.0


@pytest.mark.parametrize("name, payload, field", [
    ("pull_request", {"pull_request": {"updated_at": T}}, "pull_request.updated_at"),
    ("pull_request_target", {"pull_request": {"updated_at": T}}, "pull_request.updated_at"),
    ("issues", {"issue": {"updated_at": T}}, "issue.updated_at"),
    ("issue_comment", {"comment": {"updated_at": T}, "issue": {"updated_at": "2024-05-01T11:00:00Z"}},
     "comment.updated_at"),
    ("pull_request_review", {"review": {"submitted_at": T},
                             "pull_request": {"updated_at": "2024-04-01T00:00:00Z"}},
     "review.submitted_at"),
    ("push", {"repository": {"pushed_at": int(T_S)}, "head_commit": {"timestamp": "2020-01-01T00:00:00Z"}},
     "repository.pushed_at"),
    ("push", {"head_commit": {"timestamp": "2024-05-01T14:00:00+02:00"}}, "head_commit.timestamp"),
    ("release", {"release": {"published_at": T, "created_at": "2024-04-30T00:00:00Z"}},
     "release.published_at"),
    ("workflow_run", {"workflow_run": {"updated_at": T}}, "workflow_run.updated_at"),
])
def test_the_events_time_is_the_latest_of_its_fields(name, payload, field):
    assert event_time(name, payload, STARTED) == (T_S, field)


@pytest.mark.parametrize("name, payload", [
    ("workflow_dispatch", {"inputs": {}}), ("repository_dispatch", {"action": "x"}),
    ("label", {"label": {"name": "bug"}}), ("some_new_event", {"x": 1}),
    ("pull_request", {"pull_request": {"updated_at": "yesterday"}}),
    ("pull_request", None), ("issues", ["not", "an", "object"]),
])
def test_events_without_a_time_take_the_jobs_start(name, payload):
    when, source = event_time(name, payload, STARTED)
    assert when == STARTED and "start" in source


def test_schedule_has_no_floor():
    assert event_time("schedule", {"schedule": "0 * * * *"}, STARTED)[0] is None


@pytest.mark.parametrize("value, expected", [
    (T, T_S), ("2024-05-01T14:00:00+02:00", T_S), (T_S, T_S), (int(T_S), T_S),
    ("2024-05-01T12:00:00", None), ("", None), ("x" * 100, None), (True, None), (-5, None),
    (float("nan"), None), (None, None), ({"a": 1}, None)])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


def test_parse_not_before():
    assert parse_not_before(" 1714564800 ", T_S) == T_S
    assert parse_not_before("1714564800.5", T_S) == T_S + 0.5
    for bad in ("soon", "-1", "nan", "inf", str(T_S + 7200)):
        with pytest.raises(ValueError):
            parse_not_before(bad, T_S)


def test_the_payload_is_read_bounded_and_parsed_tolerantly(tmp_path, capsys):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(MAX_EVENT_BYTES + 1)
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"[" * 100_000)
    for bad in (huge, garbage, tmp_path / "missing", tmp_path):
        env = {"GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(bad)}
        set_event_floor(env, now=STARTED)
        assert float(env["P2P_CACHE_NOT_BEFORE"]) == STARTED, bad
        out = capsys.readouterr().out
        assert "Could not read the event payload" in out and "[[[" not in out
    with pytest.raises(EventError):
        parse_event(b"\xff{")


def test_actions_start_takes_the_floor_from_the_event(tmp_path, capsys):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "labeled", "pull_request": {"updated_at": T}}))
    env = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}
    set_event_floor(env, now=STARTED)
    assert float(env["P2P_CACHE_NOT_BEFORE"]) == T_S
    assert "2024-05-01T12:00:00Z (pull_request.updated_at)" in capsys.readouterr().out


def test_an_unreadable_payload_costs_precision_not_the_job(tmp_path, capsys):
    env = {"GITHUB_EVENT_NAME": "issues", "GITHUB_EVENT_PATH": str(tmp_path / "nope")}
    set_event_floor(env, now=STARTED)
    assert float(env["P2P_CACHE_NOT_BEFORE"]) == STARTED
    assert "Could not read the event payload" in capsys.readouterr().out


def test_no_floor_outside_actions_and_for_schedule():
    env: dict[str, str] = {}
    set_event_floor(env, now=STARTED)
    assert "P2P_CACHE_NOT_BEFORE" not in env
    env = {"GITHUB_EVENT_NAME": "schedule", "GITHUB_EVENT_PATH": "/nonexistent"}
    set_event_floor(env, now=STARTED)
    assert env["P2P_CACHE_NOT_BEFORE"] == ""
