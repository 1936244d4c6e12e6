"""Settings from flags and environment, validated once at start.

Every flag has an environment variable (CONTRACT.md). A bad value is one clear line that
names the variable and the value, and exit status 2; one bad bootstrap entry among good
ones is reported and skipped.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

import multiaddr
import platformdirs

DEFAULT_PORT = 9100
DEFAULT_HTTP = "127.0.0.1:9180"
DEFAULT_UPSTREAM = "https://api.github.com"
DEFAULT_TTL = 60.0


class ConfigError(Exception):
    """A setting that cannot be used. str() is the one line the user sees."""

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(f"invalid {name}={value!r}: {reason}")


@dataclass(frozen=True)
class BootstrapPeer:
    multiaddr: str
    peer_id: str


@dataclass(frozen=True)
class Settings:
    port: int = DEFAULT_PORT
    listen_host: str = "0.0.0.0"
    http_host: str = "127.0.0.1"
    http_port: int = 9180
    bootstrap: tuple[BootstrapPeer, ...] = ()
    bootstrap_rejected: tuple[str, ...] = ()  # one line each: entry and why
    data_dir: Path = Path(".")
    upstream: str = DEFAULT_UPSTREAM
    announce: str | None = None
    upnp: bool = False
    ttl: float = DEFAULT_TTL
    token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    namespace: str = "default"
    peer_timeout: float = 5.0
    # A server silent this long while a ping waits is dropped (policy.Liveness): long enough
    # for one slowed by load, short enough that a vanished one goes within 25 s.
    peer_silence: float = 20.0
    max_bytes: int = 512 * 1024 * 1024
    upnp_lease: int = 3600
    ip_echo_url: str | None = None  # e.g. https://api.ipify.org; off unless set
    publish_secret: str | None = None  # OWNER/REPO whose MCP_P2P_BOOTSTRAP_PEERS we keep
    unix_socket: Path | None = None  # the local API also here (mode 0600), e.g. for gh
    lend_token: bool = False  # writes/GraphQL without a client token use the node's token
    # GitHub confirms the node's token as the node starts, before the job's clients present
    # it (actions start sets this: a job's clients use the job's token; node.py)
    confirm_token: bool = False
    # transparent mode (actions start --transparent sets these; intercept.py, tls.py)
    https: str | None = None  # host:port or fd:N of the HTTPS listener for the upstream's host
    tls_cert: Path | None = None
    tls_key: Path | None = field(default=None, repr=False)
    upstream_addresses: tuple[str, ...] = ()  # the upstream's IPs, resolved before redirecting
    upstream_ca_bundle: Path | None = None  # roots for the upstream instead of certifi's
    refresh_ahead: bool = True  # revalidate hot entries before they go stale (refresh.py)
    warm_start_bytes: int = 16 * 1024 * 1024  # a joining runner's budget (warmstart.py); 0: off
    # The event floor (floor.py): nothing GitHub vouched for at or before this time (its
    # clock, Unix seconds) is served without revalidation. None: no floor.
    not_before: float | None = None
    upstream_concurrency: int = 25  # requests in flight to GitHub per token (limits.py)
    # GitHub deliveries at POST /webhook (webhooks.py): host and port, and the hook's secret
    webhook: tuple[str, int] | None = None
    webhook_secret: bytes | None = field(default=None, repr=False)

    @property
    def http_base(self) -> str:
        host = self.http_host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"


def split_peers(value: str) -> list[str]:
    """MCP_P2P_BOOTSTRAP_PEERS is comma, space or newline separated."""
    return [p for p in re.split(r"[\s,]+", value.strip()) if p]


def parse_bootstrap(entry: str) -> BootstrapPeer:
    """A dialable bootstrap multiaddr: a TCP address ending in /p2p/<peer id>."""
    try:
        addr = multiaddr.Multiaddr(entry)
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ValueError(f"not a multiaddr ({exc})") from None
    protocols = [p.name for p in addr.protocols()]
    if "tcp" not in protocols:
        raise ValueError("no /tcp/<port> part (p2pcache dials TCP)")
    if "p2p" not in protocols and "ipfs" not in protocols:
        raise ValueError("no /p2p/<peer id> part (the peer ID authenticates the node)")
    if not any(p in protocols for p in ("ip4", "ip6", "dns", "dns4", "dns6")):
        raise ValueError("no /ip4, /ip6 or /dns address")
    peer_id = addr.value_for_protocol("p2p")
    return BootstrapPeer(str(addr), str(peer_id))


# GitHub's limit for a secret's value: MCP_P2P_BOOTSTRAP_PEERS is one.
MAX_PEER_LIST_BYTES = 48 * 1024
# A DNS name (253) with the rest of a multiaddr fits with room to spare.
MAX_PEER_ENTRY_CHARS = 512


def parse_peer_list(value: str) -> list[str]:
    """A value for MCP_P2P_BOOTSTRAP_PEERS about to be published: its entries, in order,
    duplicates dropped. Stricter than the node's reading (which skips a bad entry), since a
    published list with a hole or a stray word in it is a mistake to stop at, not to spread."""
    size = len(value.encode())
    if size > MAX_PEER_LIST_BYTES:
        raise ValueError(f"{size} bytes, over GitHub's limit of {MAX_PEER_LIST_BYTES} for a "
                         "secret")
    # Commas and whitespace separate, as for the node; a comma with nothing before or after
    # it (',,', a leading or trailing comma) is an empty entry.
    entries = re.split(r"\s*,\s*|\s+", value.strip())
    if entries == [""]:
        raise ValueError("no multiaddr in it")
    unique: list[str] = []
    for number, entry in enumerate(entries, 1):
        if not entry:
            raise ValueError(f"entry {number} is empty")
        if len(entry) > MAX_PEER_ENTRY_CHARS or not entry.isprintable():
            raise ValueError(f"entry {number} is no multiaddr (control characters, or over "
                             f"{MAX_PEER_ENTRY_CHARS} characters)")
        try:
            parse_bootstrap(entry)
        except ValueError as exc:
            raise ValueError(f"entry {number} {entry!r}: {exc}") from None
        if entry not in unique:
            unique.append(entry)
    return unique


def _port(name: str, value: object) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(name, value, "not a number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(name, value, "port must be between 1 and 65535")
    return port


def _http(name: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(name, value, "expected host:port, e.g. 127.0.0.1:9180")
    try:
        return host.strip("[]"), _port(name, port)
    except ConfigError:
        raise ConfigError(name, value, "the port must be a number from 1 to 65535") from None


def _positive(name: str, value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(name, value, "not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(name, value, "must be a finite number greater than 0")
    return number


def _byte_count(name: str, value: object) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(name, value, "not a whole number of bytes") from None
    if number <= 0:
        raise ConfigError(name, value, "must be a whole number of bytes greater than 0")
    return number


def _warm_start(name: str, value: object) -> int:
    from .warmstart import MAX_BYTES

    text = str(value).strip()
    if text == "0":
        return 0
    number = _byte_count(name, text)
    if number > MAX_BYTES:
        raise ConfigError(name, value, f"at most {MAX_BYTES} bytes (what one peer frame inflates to), or 0")
    return number


def _concurrency(name: str, value: object) -> int:
    from .limits import MAX_CONCURRENCY

    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_CONCURRENCY:
        raise ConfigError(name, value, f"expected a whole number from 1 to {MAX_CONCURRENCY} "
                          f"(GitHub allows {MAX_CONCURRENCY} requests in flight per token)")
    return int(text)


def _listen_host(name: str, value: str) -> str:
    """libp2p listens on an IP address, never a name: say so rather than fail inside it."""
    host = value.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        multiaddr.Multiaddr(f"/ip{ip.version}/{ip}/tcp/1")
    except Exception:  # ValueError, or the multiaddr package's own types
        raise ConfigError(name, value, "expected an IP address to listen on, e.g. 0.0.0.0, "
                          "127.0.0.1 or :: (not a host name)") from None
    return str(ip)


def _upstream(name: str, value: str) -> str:
    upstream = value.rstrip("/")
    try:
        parts = urlsplit(upstream)
        parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ConfigError(name, upstream, f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, upstream, "expected an http(s) URL like https://api.github.com")
    return upstream


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def default_data_dir() -> Path:
    return Path(platformdirs.user_cache_dir("p2pcache"))


def check_data_dir(name: str, path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds the node key
    except OSError as exc:
        raise ConfigError(name, str(path), f"cannot create it ({exc.strerror})") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(name, str(path), "not readable and writable by this user")
    return path


def _pick(flag: object, env: Mapping[str, str], var: str, label: str) -> tuple[object, str]:
    """The flag wins over the environment; the label names where the value came from."""
    if flag is not None:
        return flag, label
    return env.get(var), var


def load(flags: Mapping[str, object], env: Mapping[str, str] | None = None,
         need_data_dir: bool = True) -> Settings:
    """Build Settings from parsed flags (None = not given) and the environment."""
    env = os.environ if env is None else env
    kw: dict[str, object] = {}

    value, name = _pick(flags.get("port"), env, "P2P_CACHE_PORT", "--port")
    if value not in (None, ""):
        kw["port"] = _port(name, value)
    value, name = _pick(flags.get("listen_host"), env, "P2P_CACHE_LISTEN_HOST", "--listen-host")
    if value:
        kw["listen_host"] = _listen_host(name, str(value))
    value, name = _pick(flags.get("http"), env, "P2P_CACHE_HTTP", "--http")
    kw["http_host"], kw["http_port"] = _http(name, str(value or DEFAULT_HTTP))

    entries: list[str] = []
    flag_peers = flags.get("bootstrap") or []
    if flag_peers:
        for item in flag_peers:  # type: ignore[union-attr]
            entries.extend(split_peers(str(item)))
    else:
        entries = split_peers(env.get("MCP_P2P_BOOTSTRAP_PEERS", ""))
    good: list[BootstrapPeer] = []
    rejected: list[str] = []
    for entry in entries:
        try:
            peer = parse_bootstrap(entry)
        except ValueError as exc:
            rejected.append(f"{entry!r}: {exc}")
            continue
        if peer not in good:
            good.append(peer)
    kw["bootstrap"], kw["bootstrap_rejected"] = tuple(good), tuple(rejected)

    value, name = _pick(flags.get("data_dir"), env, "P2P_CACHE_DATA_DIR", "--data-dir")
    data_dir = Path(str(value)).expanduser() if value else default_data_dir()
    kw["data_dir"] = check_data_dir(name, data_dir) if need_data_dir else data_dir

    value, name = _pick(flags.get("upstream"), env, "GITHUB_API_URL", "--upstream")
    kw["upstream"] = _upstream(name, str(value or DEFAULT_UPSTREAM))

    value, name = _pick(flags.get("announce"), env, "P2P_CACHE_ANNOUNCE", "--announce")
    if value:
        kw["announce"] = check_announce(name, str(value))
    upnp = flags.get("upnp")
    kw["upnp"] = bool(upnp) if upnp else _truthy(env.get("P2P_CACHE_UPNP", ""))
    value, name = _pick(flags.get("ttl"), env, "P2P_CACHE_TTL", "--ttl")
    if value not in (None, ""):
        kw["ttl"] = _positive(name, value)
    value, name = _pick(flags.get("peer_timeout"), env, "P2P_CACHE_PEER_TIMEOUT",
                        "--peer-timeout")
    if value not in (None, ""):
        kw["peer_timeout"] = _positive(name, value)
    value = env.get("P2P_CACHE_PEER_SILENCE")
    if value not in (None, ""):
        kw["peer_silence"] = _positive("P2P_CACHE_PEER_SILENCE", value)
    value, name = _pick(flags.get("max_bytes"), env, "P2P_CACHE_MAX_BYTES", "--max-bytes")
    if value not in (None, ""):
        kw["max_bytes"] = _byte_count(name, value)

    value = env.get("P2P_CACHE_UPNP_LEASE")
    if value not in (None, ""):
        try:
            kw["upnp_lease"] = int(value)  # type: ignore[arg-type]
        except ValueError:
            raise ConfigError("P2P_CACHE_UPNP_LEASE", value, "not a whole number of seconds") \
                from None
        if kw["upnp_lease"] < 0:  # type: ignore[operator]
            raise ConfigError("P2P_CACHE_UPNP_LEASE", value, "must be 0 (permanent) or more")
    value = env.get("P2P_CACHE_IP_ECHO_URL")
    if value:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ConfigError("P2P_CACHE_IP_ECHO_URL", value, "expected an http(s) URL")
        kw["ip_echo_url"] = value
    value, name = _pick(flags.get("publish_secret"), env, "P2P_CACHE_PUBLISH_SECRET",
                        "--publish-secret")
    if value:
        repo = str(value)
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ConfigError(name, repo, "expected OWNER/REPO")
        kw["publish_secret"] = repo

    value, name = _pick(flags.get("unix_socket"), env, "P2P_CACHE_UNIX_SOCKET", "--unix-socket")
    if value:
        kw["unix_socket"] = check_unix_socket(name, Path(str(value)).expanduser())
    lend = flags.get("lend_token")
    kw["lend_token"] = bool(lend) if lend else _truthy(env.get("P2P_CACHE_LEND_TOKEN", ""))
    kw["confirm_token"] = _truthy(env.get("P2P_CACHE_CONFIRM_TOKEN", ""))
    _transparent(env, kw)

    # Refresh-ahead is on by default on server nodes (no bootstrap peers): runners ask them.
    value, name = _pick(flags.get("refresh_ahead"), env, "P2P_CACHE_REFRESH_AHEAD",
                        "--refresh-ahead")
    if value in (None, ""):
        kw["refresh_ahead"] = not good
    elif str(value).strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        kw["refresh_ahead"] = _truthy(str(value))
    else:
        raise ConfigError(name, value, "expected 1 or 0 (true/false, yes/no, on/off)")

    value, name = _pick(flags.get("warm_start"), env, "P2P_CACHE_WARM_START", "--warm-start")
    if value not in (None, ""):
        kw["warm_start_bytes"] = _warm_start(name, value)
    value, name = _pick(flags.get("upstream_concurrency"), env,
                        "P2P_CACHE_UPSTREAM_CONCURRENCY", "--upstream-concurrency")
    if value not in (None, ""):
        kw["upstream_concurrency"] = _concurrency(name, value)

    value, name = _pick(flags.get("webhook"), env, "P2P_CACHE_WEBHOOK", "--webhook")
    if value:
        kw["webhook"] = _http(name, str(value))
        secret = env.get("P2P_CACHE_WEBHOOK_SECRET", "")
        if not secret:
            raise ConfigError("P2P_CACHE_WEBHOOK_SECRET", "",
                              f"required with {name}: the secret set in the webhook's "
                              "settings on GitHub")
        kw["webhook_secret"] = secret.encode()

    value, name = _pick(flags.get("not_before"), env, "P2P_CACHE_NOT_BEFORE", "--not-before")
    if value not in (None, ""):
        from .floor import parse_not_before

        try:
            kw["not_before"] = parse_not_before(str(value), time.time())
        except ValueError as exc:
            raise ConfigError(name, value, str(exc)) from None

    token = env.get("GH_TOKEN") or env.get("GITHUB_TOKEN") or None
    kw["token"] = token
    kw["secret"] = env.get("P2P_CACHE_SECRET") or token
    kw["namespace"] = (env.get("IPFS_ACCELERATE_GITHUB_REPO") or env.get("GITHUB_REPOSITORY")
                       or "default")
    return Settings(**kw)  # type: ignore[arg-type]


def check_unix_socket(name: str, path: Path) -> Path:
    if len(os.fsencode(path)) > 100:  # sun_path holds 108 bytes on Linux
        raise ConfigError(name, str(path), "a Unix socket path must be under 100 bytes")
    if not path.parent.is_dir():
        raise ConfigError(name, str(path), "its directory does not exist")
    if path.exists() and not path.is_socket():
        raise ConfigError(name, str(path), "a file that is not a socket is in the way")
    if path.is_socket() and socket_answers(path):
        raise ConfigError(name, str(path), "a live node already answers there: stop it, or "
                          "choose another path")
    return path


def socket_answers(path: Path, timeout: float = 2.0) -> bool:
    """Something may be listening on the Unix socket PATH: only a socket that refuses
    connections (its node is dead) or is gone counts as free; one we may not connect to,
    or whose backlog is full, is someone's live socket."""
    import errno
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
        except OSError as exc:
            return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    return True
def _transparent(env: Mapping[str, str], kw: dict[str, object]) -> None:
    """The environment-only settings of transparent mode."""
    import ipaddress

    value = env.get("P2P_CACHE_HTTPS")
    if value:
        if value.startswith("fd:"):
            if not value[3:].isascii() or not value[3:].isdigit():
                raise ConfigError("P2P_CACHE_HTTPS", value, "expected host:port or fd:N")
        else:
            _http("P2P_CACHE_HTTPS", value)
        kw["https"] = value
        for var, name in (("P2P_CACHE_TLS_CERT", "tls_cert"), ("P2P_CACHE_TLS_KEY", "tls_key")):
            path = env.get(var)
            if not path or not os.access(path, os.R_OK):
                raise ConfigError(var, path or "", "P2P_CACHE_HTTPS needs a readable PEM file")
            kw[name] = Path(path)
    value = env.get("P2P_CACHE_UPSTREAM_ADDRESSES", "")
    addresses = []
    for item in split_peers(value):
        try:
            addresses.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ConfigError("P2P_CACHE_UPSTREAM_ADDRESSES", value,
                              f"{item!r} is not an IP address") from None
    kw["upstream_addresses"] = tuple(addresses)
    value = env.get("P2P_CACHE_UPSTREAM_CA_BUNDLE")
    if value:
        if not os.access(value, os.R_OK):
            raise ConfigError("P2P_CACHE_UPSTREAM_CA_BUNDLE", value, "not a readable file")
        kw["upstream_ca_bundle"] = Path(value)


def check_announce(name: str, value: str) -> str:
    """--announce takes a multiaddr (/ip4/1.2.3.4/tcp/9100) or a bare IP address."""
    if value.startswith("/"):
        try:
            multiaddr.Multiaddr(value)
        except Exception as exc:
            raise ConfigError(name, value, f"not a multiaddr ({exc})") from None
        return value
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(name, value, "expected an IP address or a multiaddr") from None
    return value
