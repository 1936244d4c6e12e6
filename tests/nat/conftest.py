"""Fixtures for tests behind a real UPnP router; see lab.py for the lab itself.

    def test_something(nat_lab):                      # a fresh router, function scoped
        server = nat_lab.add_lan_host("server")
        ...

    def test_other(nat_lab_factory):                  # options, or several labs
        lab = nat_lab_factory(secure_mode=False)

Missing prerequisites (root, ip/nft, the miniupnpd chroot from tests/nat/setup.sh, the
miniupnpc module) fail the test in CI (CI=true) and skip it elsewhere, with the reason.
When a test fails, its teardown prints the miniupnpd log and the router's nft ruleset.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterator

import pytest

from conftest import require  # tests/conftest.py: tests/ is on sys.path

from .lab import NatLab, prerequisites


def nat_lab_missing() -> list[str]:
    reasons = prerequisites()
    try:
        import miniupnpc  # noqa: F401
    except ImportError:
        reasons.append("the miniupnpc Python module is missing (pip install miniupnpc)")
    return reasons


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"nat_report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"nat_report_{when}", None), "failed", False)
               for when in ("setup", "call"))


def _dump(lab: NatLab) -> None:
    try:
        ruleset = lab.nft_ruleset()
    except Exception as exc:  # noqa: BLE001 - the lab may be half built
        ruleset = f"(unavailable: {exc})"
    print(f"--- NAT lab {lab.id}: miniupnpd log ---\n{lab.logs()}\n"
          f"--- router nft ruleset ---\n{ruleset}", file=sys.stderr)


@pytest.fixture
def nat_lab_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., NatLab]]:
    """nat_lab_factory(**NatLab options) → a started NatLab; all close after the test."""
    missing = nat_lab_missing()
    require(not missing, "; ".join(missing))
    labs: list[NatLab] = []

    def make(**options: Any) -> NatLab:
        lab = NatLab(**options)
        labs.append(lab)
        return lab.start()

    yield make
    errors = []
    for lab in labs:
        if _failed(request):
            _dump(lab)
        try:
            lab.close()
        except Exception as exc:  # noqa: BLE001 - close the others, then report
            errors.append(str(exc))
    assert not errors, "; ".join(errors)


@pytest.fixture
def nat_lab(nat_lab_factory: Callable[..., NatLab]) -> NatLab:
    """A started NatLab with default options (secure mode, NAT-PMP on), no hosts yet."""
    return nat_lab_factory()
