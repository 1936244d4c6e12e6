"""Publishing the bootstrap multiaddr: to a file, or to the repository secret itself.

The secret goes through GitHub's REST API the way the web UI does it: fetch the
repository's public key, seal the value in a libsodium sealed box (PyNaCl), PUT it with the
key id. GitHub never shows a secret back, so we remember a hash of what we last wrote and
only write again when the multiaddr changed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

import httpx
from nacl.public import PublicKey, SealedBox

SECRET_NAME = "MCP_P2P_BOOTSTRAP_PEERS"
STATE_FILE = "published-secret.json"


class PublishError(Exception):
    """GitHub refused or could not be reached; the message says what to do."""


def write_file(path: Path, text: str) -> None:
    """Atomically, so a reader never sees half an address."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    tmp.replace(path)


def seal_for_github(public_key_b64: str, value: str) -> str:
    sealed = SealedBox(PublicKey(base64.b64decode(public_key_b64))).encrypt(value.encode())
    return base64.b64encode(sealed).decode("ascii")


def parse_public_key(answer: object) -> tuple[str, str]:
    """(key_id, key) from GitHub's public-key answer: a JSON object whose `key` is a
    base64 Curve25519 public key (32 bytes) and whose `key_id` is a short string."""
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    key_id, key = answer.get("key_id"), answer.get("key")
    if not isinstance(key_id, str) or not key_id or len(key_id) > 256:
        raise ValueError("no key_id")
    if not isinstance(key, str):
        raise ValueError("no key")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not base64") from None
    if len(raw) != PublicKey.SIZE:
        raise ValueError(f"the key is {len(raw)} bytes, not {PublicKey.SIZE}")
    return key_id, key


def _fingerprint(repo: str, name: str, value: str) -> str:
    return hashlib.sha256(f"{repo}\0{name}\0{value}".encode()).hexdigest()


class SecretPublisher:
    """Sets MCP_P2P_BOOTSTRAP_PEERS (or another secret) on OWNER/REPO."""

    def __init__(self, api: str, token: str | None, repo: str, state_dir: Path,
                 name: str = SECRET_NAME) -> None:
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise PublishError(f"invalid repository {repo!r}: expected OWNER/REPO")
        if not token:
            raise PublishError("setting a secret needs a token (GH_TOKEN or GITHUB_TOKEN) "
                               "allowed to write Actions secrets on " + repo)
        self.api = api.rstrip("/")
        self.repo = repo
        self.name = name
        self.state_path = state_dir / STATE_FILE
        self._headers = {"authorization": f"Bearer {token}",
                         "accept": "application/vnd.github+json",
                         "x-github-api-version": "2022-11-28"}

    def _already(self, value: str) -> bool:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return False
        return state.get(f"{self.repo}/{self.name}") == _fingerprint(self.repo, self.name, value)

    def _remember(self, value: str) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            state = {}
        state[f"{self.repo}/{self.name}"] = _fingerprint(self.repo, self.name, value)
        write_file(self.state_path, json.dumps(state, indent=2))

    def publish(self, value: str, force: bool = False) -> str:
        """'unchanged' (nothing sent) or 'created' / 'updated'."""
        if not force and self._already(value):
            return "unchanged"
        base = f"{self.api}/repos/{self.repo}/actions/secrets"
        with httpx.Client(headers=self._headers, timeout=30) as http:
            answer = self._check(http.get(f"{base}/public-key"), "read the repository public key")
            try:
                key_id, key = parse_public_key(answer)
            except ValueError as exc:
                raise PublishError(f"{self.api} answered a malformed public key for "
                                   f"{self.repo} ({exc})") from None
            body = {"encrypted_value": seal_for_github(key, value), "key_id": key_id}
            response = http.put(f"{base}/{self.name}", json=body)
            self._check(response, f"set the secret {self.name}")
        self._remember(value)
        return "created" if response.status_code == 201 else "updated"

    def _check(self, response: httpx.Response, doing: str) -> object:
        """The JSON answer (None if empty or not JSON), or PublishError for a status >= 300."""
        if response.status_code < 300:
            try:
                return response.json() if response.content else None
            except ValueError:  # JSONDecodeError, UnicodeDecodeError
                return None
        try:
            answer = response.json()
            message = str(answer.get("message", "")) if isinstance(answer, dict) else ""
        except ValueError:
            message = response.text[:200]
        hint = {401: "the token is invalid or expired",
                403: "the token lacks permission: it needs 'Secrets: write' on the repository "
                     "(fine-grained) or the 'repo' scope (classic)",
                404: f"no repository {self.repo}, or the token cannot see it"}.get(
                    response.status_code, "")
        raise PublishError(f"could not {doing} on {self.repo}: HTTP {response.status_code} "
                           f"{message}" + (f" ({hint})" if hint else ""))


def publish_secret(api: str, token: str | None, repo: str, state_dir: Path, value: str,
                   force: bool = False) -> str:
    try:
        return SecretPublisher(api, token, repo, state_dir).publish(value, force)
    except httpx.HTTPError as exc:
        raise PublishError(f"could not reach {api}: {exc}") from None
