"""The real clients see the same GitHub through a node as straight from GitHub.

For every client and operation: what the client got straight from the fake GitHub must
be what GitHub promises (status, paging, lazy loading, 304, write then read, rate-limit
picture), and what it got through a node must be the same status, body (with URLs on the
base the client used) and headers that matter (compare.py)."""

from __future__ import annotations

import pytest

from .compare import differences, expectation_failures
from .conftest import CASES, record


@pytest.mark.parametrize(("client", "op"), CASES, ids=[f"{c}-{op}" for c, op in CASES])
def test_same_answer_through_the_node(conformance, client_ready, client, op):
    client_ready(client)
    runs = conformance.runs(client)
    direct, through = runs.direct[op], runs.through[op]
    problems = [f"straight to GitHub: {p}" for p in expectation_failures(op, direct)]
    problems += [f"through the node: {p}" for p in expectation_failures(op, through)]
    if not problems:  # a client that failed has no answer to compare
        problems = differences(direct, through, runs.direct_base, runs.node_base)
    record(client, op, problems)
    assert not problems, "\n".join(problems)
