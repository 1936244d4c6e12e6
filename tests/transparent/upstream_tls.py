#!/usr/bin/env python3
"""The fake GitHub API (tests/fakegithub.py) over HTTPS, as api.github.com would be.

A test "public root" (a plain CA, no name constraints: it plays the Web PKI) signs a leaf
for the API host; the fake serves it. The node trusts that root through
P2P_CACHE_UPSTREAM_CA_BUNDLE (the setting a GitHub Enterprise Server with a private CA uses);
in the runner container the root is also in the system store, as the real roots are.

    python3 upstream_tls.py --host 127.0.0.2 --port 443 --cert leaf.pem --key key.pem \
        --token TOKEN                                       # serve (stdlib only)
    make_public_root(dir, "api.github.com") -> (root.pem, leaf.pem, key.pem)   # needs cryptography
"""

from __future__ import annotations

import argparse
import datetime
import signal
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakegithub import FakeGitHub  # noqa: E402


def wrap(fake: FakeGitHub, cert: Path, key: Path) -> FakeGitHub:
    """Serve FAKE over TLS: its listening socket is wrapped; each handshake happens on the
    first read, in the handler's thread, so one silent client blocks nobody."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = fake._servers[0]  # noqa: SLF001 (a test helper of the fake's own repository)
    server.socket = context.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    server.scheme = "https"  # its answers name https://<Host>, as GitHub's do
    return fake


def make_public_root(directory: Path, host: str) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Public Root")])
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(root_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                root_ski), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = directory / "public-root.pem", directory / "upstream.pem", directory / "upstream.key"
    paths[0].write_bytes(root.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token", action="append", default=[])
    args = parser.parse_args()
    fake = wrap(FakeGitHub(args.host, args.port, tokens=args.token), Path(args.cert),
                Path(args.key))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"fake GitHub on https://{args.host}:{args.port}", flush=True)
    fake.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
