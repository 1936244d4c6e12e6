"""A real HTTP server that plays a hostile GitHub (or an attacker's host the node must never
reach): it answers whatever raw status line, header bytes and body a test sets, and records
every request it receives, Authorization included (the tests check no token arrives)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Seen:
    request_line: str
    headers: dict[str, str]


@dataclass
class EvilUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    status: bytes = b"200 OK"
    headers: list[bytes] = field(default_factory=lambda: [
        b"Content-Type: application/json; charset=utf-8", b'ETag: "evil"'])
    body: bytes = b'{"evil": true}'
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.listen(64)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.seen.append(Seen(head[0], headers))
            response = (b"HTTP/1.1 " + self.status + b"\r\n" + b"\r\n".join(self.headers)
                        + b"\r\nContent-Length: " + str(len(self.body)).encode()
                        + b"\r\nConnection: close\r\n\r\n" + self.body)
            try:
                conn.sendall(response)
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self._sock.close()


def raw_request(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the node's API (clients would normalise what tests need to send)
    and return everything it answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and _complete(out):
                break
        return out


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
