"""What the MCP tools hand an agent: at most 4 MiB a result, cut with a note that says what
was left out and how to get it, and pages read only while they fit (issue 21, finding 7).
The node is a stand-in here (no sockets); tests/integration/test_mcp.py drives the real one."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from p2pcache.client import next_target
from p2pcache.mcp import (MAX_RESULT_BYTES, READ_BUDGET, Tools, cut, fit, page_body,
                          result_bytes, tool_result)

JSON = {"content-type": "application/json; charset=utf-8"}
ITEM = {"number": 1, "title": "t" * 1000}


def compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class Node:
    """Pages by target: (headers, body bytes); reads are capped as the real client caps."""

    base = "http://127.0.0.1:9180"

    def __init__(self, pages: dict[str, tuple[dict[str, str], bytes]]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def get_capped(self, target: str, headers: Any, max_bytes: int):
        self.asked.append(target)
        head, body = self.pages[target]
        response = httpx.Response(200, headers={**head, "content-length": str(len(body)),
                                                "x-p2p-cache": "hit"})
        return response, body[:max_bytes], len(body) <= max_bytes

    def next_page(self, response: httpx.Response) -> str | None:
        return next_target(response.headers.get("link", ""), self.base)


def tools(pages: dict[str, tuple[dict[str, str], bytes]]) -> tuple[Tools, Node]:
    node = Node(pages)
    return Tools(node, None), node  # type: ignore[arg-type]


def test_cut_keeps_a_lists_first_items_a_strings_beginning_an_objects_small_members():
    items = [ITEM] * 100
    kept = cut(items, 10_000)
    assert kept == items[:len(kept)] and compact(kept) <= 10_000 and len(kept) == 9
    assert cut("abcdef" * 1000, 101) == ("abcdef" * 1000)[:99]
    obj = {"total_count": 100, "items": items, "note": "x"}
    small = cut(obj, 20_000)
    assert small["total_count"] == 100 and small["note"] == "x" and compact(small) <= 20_000
    assert cut(items, 10**9) is items


def test_fit_brings_a_result_within_the_bound_and_says_how_much_was_left_out():
    result = {"status": 200, "body": [ITEM] * 10_000}
    assert result_bytes(result) > 4 * MAX_RESULT_BYTES
    fitted, left_out = fit(result, "body")
    assert result_bytes(fitted) <= MAX_RESULT_BYTES
    assert len(fitted["body"]) > 1000  # it uses the room it has
    assert left_out == compact(result["body"]) - compact(fitted["body"])


def test_escaping_counts_the_text_copy_twice():
    quotes = '"' * 1000
    assert result_bytes(quotes) > 2 * 2 * 1000  # each quote: \" in JSON, \\\" in the text


def test_a_dict_tool_result_is_bounded_too():
    peers = {"peer_id": "me", "connected_peers": [{"peer_id": "p" * 52}] * 100_000}
    result = tool_result(peers)
    size = len(result.content[0].text.encode()) + compact(result.structured_content)
    assert size <= MAX_RESULT_BYTES and "cut to stay within 4 MiB" in \
        result.structured_content["note"]
    assert result.structured_content["peer_id"] == "me"


def test_a_page_read_in_part_gives_its_whole_items():
    body = json.dumps([ITEM] * 50).encode()
    response = httpx.Response(200, headers=JSON)
    items = page_body(response, body[:len(body) // 2 - 10], whole=False)  # in item 25
    assert items == [ITEM] * 24
    assert page_body(response, b'{"a": [1, 2', whole=False) == '{"a": [1, 2'
    assert page_body(httpx.Response(200, headers={"content-type": "text/plain"}),
                     "é".encode()[:1], whole=False) == ""


def test_a_huge_first_page_is_read_only_in_part_and_cut_with_a_note():
    huge = json.dumps([ITEM] * 60_000).encode()
    tool, node = tools({"/x": ({**JSON, "link": '</x?page=2>; rel="next"'}, huge)})
    got = tool.github_get("/x", None, True, 5)
    assert node.asked == ["/x"]  # nothing more read once the result is full
    assert 0 < len(got.body) <= READ_BUDGET // 1000 and got.next_path == "/x?page=2"
    assert f"the page is {len(huge):,} bytes" in got.note and "per_page=100 (or smaller)" in got.note
    assert result_bytes(got.model_dump(mode="json")) <= MAX_RESULT_BYTES


def test_pages_are_read_while_they_fit_then_next_path_says_where_to_go_on():
    page = json.dumps([ITEM] * 200).encode()  # ~200 KiB
    pages = {f"/x?page={i}": ({**JSON, "link": f'</x?page={i + 1}>; rel="next"'}, page)
             for i in range(1, 31)}
    tool, node = tools(pages)
    got = tool.github_get("/x?page=1", None, True, 30)
    whole_pages = READ_BUDGET // len(page)
    assert got.pages == whole_pages and len(got.body) == 200 * whole_pages
    assert got.next_path == f"/x?page={whole_pages + 1}"
    assert f"stopped before page {whole_pages + 1}" in got.note
    assert len(node.asked) <= whole_pages + 1


def test_a_next_link_off_the_node_stops_paging_with_a_note_and_no_request():
    tool, node = tools({"/x": ({**JSON, "link": '<@127.0.0.9:8999/x?page=2>; rel="next"'},
                               b'[{"n": 1}]')})
    got = tool.github_get("/x", None, True, 5)
    assert node.asked == ["/x"] and got.body == [{"n": 1}] and got.next_path is None
    assert "paging stopped" in got.note and "@127.0.0.9:8999" in got.note
    assert tool.github_get("/x", None, False, 5).note is None  # not paging: nothing to say


@pytest.mark.parametrize("body", [b'{"ok": true}', b"[]", b"plain text"])
def test_small_answers_come_whole_and_without_a_note(body):
    tool, _ = tools({"/x": (JSON, body)})
    got = tool.github_get("/x", None, False, 1)
    assert got.note is None and got.pages == 1
