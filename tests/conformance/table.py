"""Run the conformance suite and print its operation x client table (markdown), with the
first difference for each failing cell.

    python tests/conformance/table.py            # runs the suite, then prints
    python tests/conformance/table.py FILE.json  # prints a table saved by a run
                                                 # (CONFORMANCE_TABLE=FILE.json pytest ...)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def render(table: dict) -> str:
    clients, ops = table["clients"], table["ops"]
    cells = {(c["client"], c["op"]): c for c in table["cells"]}
    lines = ["| operation | " + " | ".join(clients) + " |",
             "| --- |" + " --- |" * len(clients)]
    for op in ops:
        lines.append(f"| {op} | " + " | ".join(cells[(c, op)]["outcome"] for c in clients)
                     + " |")
    failures = [c for c in table["cells"] if c["outcome"] == "FAIL"]
    if failures:
        lines += ["", "First difference per failing cell:"]
        lines += [f"- {c['client']} / {c['op']}: {c['reason']}" for c in failures]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv:
        print(render(json.loads(Path(argv[0]).read_text())))
        return 0
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "table.json")
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(root / "tests" / "conformance")], cwd=root,
                       env={**os.environ, "CONFORMANCE_TABLE": str(out)},
                       stdout=subprocess.DEVNULL)
        if not out.exists():
            print("the suite wrote no table (did it run?)", file=sys.stderr)
            return 1
        print(render(json.loads(out.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
