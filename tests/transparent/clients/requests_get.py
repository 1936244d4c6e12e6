"""requests.get of https://api.github.com/PATH: run by Debian's python3 (python3-requests,
system store) and by a venv's python (pip's requests with certifi)."""
import hashlib
import json
import os
import sys

import requests

try:
    r = requests.get("https://api.github.com/" + sys.argv[1], timeout=30,
                     headers={"authorization": "Bearer " + os.environ["GITHUB_TOKEN"]})
except requests.RequestException as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(1)
print(json.dumps({"status": r.status_code, "cache": r.headers.get("x-p2p-cache"),
                  "sha256": hashlib.sha256(r.content).hexdigest(),
                  "certifi": "certifi" in requests.certs.where()}))
