"""Container health check: the node's local API answers GET /-/healthz with 200.

Run by the image's HEALTHCHECK with the image's Python (standard library only). It asks
the address in P2P_CACHE_HTTP (the image sets 0.0.0.0:9180, asked on loopback), never
through a proxy from the environment, and prints one line either way (`docker inspect`
shows it).
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_S = 3.0


def healthz_url(http: str) -> str:
    host, _, port = http.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/-/healthz"


def main() -> int:
    url = healthz_url(os.environ.get("P2P_CACHE_HTTP") or "127.0.0.1:9180")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            body = response.read(512).decode(errors="replace").strip()
            print(f"{url}: {response.status} {body}")
            return 0 if response.status == 200 else 1
    except Exception as exc:  # any failure is "unhealthy", with its reason
        print(f"{url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
