"""Fuzzing the local API of a real node with hypothesis (fixed budget, derandomized so CI
is repeatable): request-targets that are mostly NOT paths, odd header bytes, odd methods.
Every request gets a well-formed HTTP answer, nothing reaches a host but the upstream, and
the node is alive at the end."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evilupstream import raw_request, status_of

ALLOWED = {200, 304, 400, 401, 403, 404, 405, 413, 414, 422, 431, 501, 502, 503}

_target_chars = st.sampled_from(list(b"/.%?#@:[]\\!$&'()*+,;=~-_aZ09 \t\x7f\x80\xff") +
                                list(b"2eE"))
targets = st.one_of(
    st.binary(min_size=1, max_size=64),  # anything at all
    st.lists(_target_chars, min_size=1, max_size=48).map(bytes),  # URL-ish punctuation
    st.builds(lambda a, b: a + b,  # plausible prefixes glued to junk
              st.sampled_from([b"", b"/", b"//", b"http://", b"@", b"1", b".", b"/api/v3",
                               b"/repos/o/r/../", b"/%2e%2e/", b"*", b"HTTP://x"]),
              st.lists(_target_chars, max_size=32).map(bytes)),
)
header_values = st.binary(max_size=40).filter(lambda v: b"\r" not in v and b"\n" not in v)
methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"DELETE", b"OPTIONS", b"CONNECT",
                           b"TRACE", b"G\xc3\xa9T", b"get"])


def test_the_local_api_survives_hostile_requests(nodes, fake):
    node = nodes("fuzzed")
    answered: list[int] = []

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(method=methods, target=targets, value=header_values)
    def one(method: bytes, target: bytes, value: bytes) -> None:
        if b" " in target or b"\r" in target or b"\n" in target:
            target = target.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"") or b"x"
        request = (method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fuzz: "
                   + value + b"\r\nConnection: close\r\n\r\n")
        answer = raw_request(node.http_port, request)
        status = status_of(answer)
        assert status in ALLOWED, (request, answer[:200])
        answered.append(status)

    one()
    assert node.proc.poll() is None, node.log()
    assert node.get("/-/healthz").status_code == 200
    assert "Traceback" not in node.log()
    # Whatever reached the upstream was a canonical path on the upstream's own host.
    for entry in fake.request_log():
        path = entry["path"]
        assert path.startswith("/") and not path.startswith("//"), path
        assert "/../" not in path and "/./" not in path, path
    print(f"{len(answered)} requests; statuses: "
          f"{ {s: answered.count(s) for s in sorted(set(answered))} }")
