"""Where a benchmark's figures go: one JSON file in bench/results/ (or --out), keys sorted,
the same text printed, so a run's output and its file say the same."""

from __future__ import annotations

import json
from pathlib import Path


def write(out_dir: str | Path, name: str, result: dict) -> Path:
    out = Path(out_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, sort_keys=True)
    out.write_text(text + "\n")
    print(text)
    return out
