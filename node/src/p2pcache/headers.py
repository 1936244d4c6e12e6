"""HTTP header fields as they enter the node: from GitHub, from peers, from clients.

A field that is not valid HTTP (RFC 9110 §5: a token name; a value of visible ASCII, spaces
and tabs) cannot be sent on by h11 and would fail every answer that carries it. It is
dropped where it enters, so everything deeper holds only fields that can go out again.
"""

from __future__ import annotations

import re
from typing import Iterable

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_VALUE = re.compile(r"[\x21-\x7e]([\x20\x21-\x7e\t]*[\x21-\x7e])?|")
MAX_VALUE = 16 * 1024


def valid(name: str, value: str) -> bool:
    return bool(_NAME.fullmatch(name)) and len(value) <= MAX_VALUE \
        and bool(_VALUE.fullmatch(value.strip(" \t")))


def clean(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names, surrounding whitespace trimmed, invalid fields dropped, repeated
    fields joined with ", " (RFC 9110 §5.3: GitHub sends Vary twice)."""
    out: dict[str, str] = {}
    for name, value in fields:
        if valid(name, value):
            name, value = name.lower(), value.strip(" \t")
            out[name] = f"{out[name]}, {value}" if name in out else value
    return out
