"""The `p2pcache` command."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any, Sequence

from . import __version__

EXAMPLES = """\
How a fleet is set up:
  1. On the long-lived server (TCP 9100 reachable from the runners):
       GH_TOKEN=... p2pcache serve
     It prints 'Peer ID: ...' and 'Bootstrap Multiaddr:' followed by the address.
  2. Put that address into the repository secret MCP_P2P_BOOTSTRAP_PEERS.
  3. On each runner:
       GH_TOKEN=... MCP_P2P_BOOTSTRAP_PEERS=/ip4/.../tcp/9100/p2p/... \\
         p2pcache serve --port 9000
     then send GitHub API GETs to http://127.0.0.1:9180 (or `p2pcache api PATH`).

Every flag has an environment variable; flags win. See README.md for the table.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pcache", formatter_class=_Formatter,
        description="A libp2p cache of GitHub API responses shared by a CI fleet. Misses are "
                    "fetched once for the whole fleet, stale entries are revalidated with "
                    "ETags (free on GitHub), and peer traffic is sealed with AES-256-GCM "
                    "under a key derived from the fleet secret.",
        epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"p2pcache {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve", formatter_class=_Formatter, help="run a cache node (server or runner)",
        description="Run a node: a libp2p host for peers, and a local HTTP API that answers "
                    "GitHub REST paths through the cache. A node with bootstrap peers asks "
                    "them before GitHub; a node without them (the server) asks GitHub.",
        epilog="Secrets come only from the environment: GH_TOKEN (else GITHUB_TOKEN) for "
               "GitHub, P2P_CACHE_SECRET (else the token) for the fleet key. The namespace "
               "(IPFS_ACCELERATE_GITHUB_REPO, else GITHUB_REPOSITORY) must match on every node.")
    serve.add_argument("--port", type=str, default=None,
                       help="TCP port for libp2p peers [env P2P_CACHE_PORT, default 9100]")
    serve.add_argument("--listen-host", default=None,
                       help="address to listen on for peers [env P2P_CACHE_LISTEN_HOST, "
                            "default 0.0.0.0]")
    serve.add_argument("--http", default=None, metavar="HOST:PORT",
                       help="local HTTP API [env P2P_CACHE_HTTP, default 127.0.0.1:9180]")
    serve.add_argument("--bootstrap", action="append", default=None, metavar="MULTIADDR",
                       help="server node to join, /ip4/IP/tcp/PORT/p2p/PEER_ID; repeatable "
                            "[env MCP_P2P_BOOTSTRAP_PEERS, comma/space/newline separated]")
    _data_dir(serve)
    serve.add_argument("--upstream", default=None, metavar="URL",
                       help="GitHub API base URL [env GITHUB_API_URL, "
                            "default https://api.github.com]")
    serve.add_argument("--announce", default=None, metavar="ADDR",
                       help="public IP or multiaddr to publish [env P2P_CACHE_ANNOUNCE, "
                            "default: discovered]")
    serve.add_argument("--upnp", action="store_true", default=None,
                       help="map the port on the router by UPnP, renew it, remove it at exit "
                            "[env P2P_CACHE_UPNP=1; lease P2P_CACHE_UPNP_LEASE, default 3600]")
    serve.add_argument("--publish-secret", default=None, metavar="OWNER/REPO",
                       help="keep the repository secret MCP_P2P_BOOTSTRAP_PEERS set to this "
                            "node's multiaddr (needs a token that may write Actions secrets; "
                            "a fleet of one server: with several, publish their list with "
                            "`p2pcache publish --multiaddr`) [env P2P_CACHE_PUBLISH_SECRET]")
    serve.add_argument("--ttl", default=None, metavar="SECONDS",
                       help="freshness before an entry is revalidated with its ETag "
                            "[env P2P_CACHE_TTL, default 60]")
    serve.add_argument("--peer-timeout", default=None, metavar="SECONDS",
                       help="how long a server may stay silent while we wait for its answer "
                            "(its answers to other requests count; at most 6x in all) before "
                            "asking the next server or GitHub "
                            "[env P2P_CACHE_PEER_TIMEOUT, default 5]")
    serve.add_argument("--max-bytes", default=None, metavar="BYTES",
                       help="store size bound, least recently used entries go first "
                            "[env P2P_CACHE_MAX_BYTES, default 512 MiB]")
    serve.add_argument("--unix-socket", default=None, metavar="PATH",
                       help="also serve the local API on this Unix socket (mode 0600); "
                            "`gh config set http_unix_socket PATH` then sends every gh REST "
                            "call through the node [env P2P_CACHE_UNIX_SOCKET]")
    serve.add_argument("--lend-token", action="store_true", default=None,
                       help="writes and GraphQL that arrive WITHOUT Authorization go out with "
                            "the node's token (off: they go out anonymous and GitHub answers "
                            "401) [env P2P_CACHE_LEND_TOKEN=1]")
    serve.add_argument("--refresh-ahead", action=argparse.BooleanOptionalAction, default=None,
                       help="revalidate entries asked for more than once shortly before they "
                            "go stale, in the background (free 304s) [env "
                            "P2P_CACHE_REFRESH_AHEAD=1|0, default: on for a server node "
                            "(no bootstrap peers), off for a runner]")
    serve.add_argument("--warm-start", default=None, metavar="BYTES",
                       help="on joining a server, take up to this many bytes of entries "
                            "(bodies and headers) that the fleet asked for recently and that "
                            "are fresh, in one answer, so later requests are local hits; 0: "
                            "off [env P2P_CACHE_WARM_START, default 16777216: 16 MiB]")
    serve.add_argument("--not-before", default=None, metavar="TIME",
                       help="Unix seconds on GitHub's clock: nothing GitHub vouched for "
                            "earlier is served without a revalidation (free when unchanged), "
                            "through the fleet; `actions start` sets it from the event "
                            "[env P2P_CACHE_NOT_BEFORE]")
    serve.add_argument("--upstream-concurrency", default=None, metavar="N",
                       help="requests in flight to GitHub per token (the node's, and each "
                            "client's it forwards), 1 to 100; more wait their turn, "
                            "round-robin across peers [env P2P_CACHE_UPSTREAM_CONCURRENCY, "
                            "default 25]")
    serve.add_argument("--webhook", default=None, metavar="HOST:PORT",
                       help="receive GitHub's webhook deliveries at POST /webhook on this "
                            "address (put a TLS terminator in front) and drop what each "
                            "verified delivery says changed; needs the hook's secret in "
                            "P2P_CACHE_WEBHOOK_SECRET [env P2P_CACHE_WEBHOOK, default off]")
    serve.add_argument("-v", "--verbose", action="store_true",
                       help="debug logs, including libp2p's")

    ident = sub.add_parser("id", help="print this machine's persistent peer ID",
                           description="Print the peer ID kept in the data dir (created, mode "
                                       "0600, on first use). It is stable across restarts.")
    _data_dir(ident)

    multi = sub.add_parser("multiaddr", help="print the running node's bootstrap multiaddr",
                           description="Ask the running node for the multiaddr to put into "
                                       "MCP_P2P_BOOTSTRAP_PEERS.")
    _http(multi)

    stats = sub.add_parser("stats", help="print the running node's counters",
                           description="Hit rate, API calls saved, peers and more, from the "
                                       "running node.")
    stats.add_argument("--json", action="store_true", help="the full JSON object")
    _http(stats)

    api = sub.add_parser("api", help="GET a GitHub API path through the node (like gh api)",
                         description="Like `gh api PATH` for GETs, answered through the running "
                                     "node's cache, as GitHub answers you: it sends your GH_TOKEN "
                                     "(else GITHUB_TOKEN), as gh does; without one, GitHub's "
                                     "anonymous answer (public data only). "
                                     "Example: p2pcache api repos/cli/cli")
    api.add_argument("path", help="API path, e.g. repos/OWNER/REPO or /users/octocat")
    api.add_argument("-i", "--include", action="store_true",
                     help="print the status line and headers first")
    api.add_argument("--paginate", action="store_true",
                     help="follow Link rel=next and print every page")
    api.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                     help="extra request header, e.g. 'Accept: application/vnd.github.raw'")
    _http(api)

    publish = sub.add_parser(
        "publish", formatter_class=_Formatter,
        help="publish the bootstrap multiaddr (stdout, a file, the repository secret)",
        description="Publish the running node's bootstrap multiaddr (or --multiaddr: one, "
                    "or a fleet's list). With --github-secret OWNER/REPO it sets the Actions "
                    "secret MCP_P2P_BOOTSTRAP_PEERS through the REST API (sealed with the "
                    "repository's public key), and only when the value changed.",
        epilog="The secret needs a token (GH_TOKEN) allowed to write Actions secrets: "
               "'Secrets: write' (fine-grained) or 'repo' (classic). A list is published "
               "comma-separated; every entry must be a multiaddr ending in /p2p/<peer id>.")
    publish.add_argument("--multiaddr", action="append", default=None, metavar="LIST",
                         help="publish this instead of asking the running node: a multiaddr, "
                              "or several, comma, space or newline separated (repeatable)")
    publish.add_argument("--stdout", action="store_true", help="print it (the default)")
    publish.add_argument("--file", default=None, metavar="PATH", help="write it to PATH")
    publish.add_argument("--github-secret", default=None, metavar="OWNER/REPO",
                         help="set MCP_P2P_BOOTSTRAP_PEERS on this repository")
    publish.add_argument("--force", action="store_true",
                         help="set the secret even if we set the same value before")
    publish.add_argument("--upstream", default=None, metavar="URL",
                         help="GitHub API base URL [env GITHUB_API_URL]")
    _data_dir(publish)
    _http(publish)

    upnp = sub.add_parser(
        "upnp", formatter_class=_Formatter, help="map, unmap or show the port on the router",
        description="Talk to the LAN's UPnP Internet Gateway Device. `map` makes a lasting "
                    "mapping (lease 0 by default, since nothing renews it; `serve --upnp` "
                    "instead keeps a leased mapping alive and removes it at exit).")
    upnp.add_argument("action", choices=("map", "unmap", "status"))
    upnp.add_argument("--port", type=int, default=None,
                      help="the node's TCP port [env P2P_CACHE_PORT, default 9100]")
    upnp.add_argument("--external-port", type=int, default=None,
                      help="external port wanted (map: others are tried if taken) or to "
                           "remove (unmap) [default: the node's port]")
    upnp.add_argument("--lease", type=int, default=0,
                      help="lease in seconds for map; 0 = until removed")

    doctor = sub.add_parser(
        "doctor", formatter_class=_Formatter, help="check the setup and say what to fix",
        description="Runs the setup guide's troubleshooting as checks: bootstrap peers "
                    "configured and parseable, each one dialable (and answering a ping "
                    "sealed with our fleet key), the local node running and reachable from "
                    "outside (a connected peer dials it back), UPnP, and the host firewall.")
    doctor.add_argument("--upnp", action="store_true", help="also look for a UPnP gateway")
    doctor.add_argument("--port", default=None, help="the node's port [env P2P_CACHE_PORT]")
    _http(doctor)

    actions = sub.add_parser(
        "actions", formatter_class=_Formatter, help="GitHub Actions: start a runner node, "
        "report its counters",
        description="Used by the composite action (action.yml). `start` launches a runner "
                    "node in the background, prints the setup guide's lines, waits (bounded) "
                    "for the bootstrap connection and exports P2P_CACHE_API_URL through "
                    "GITHUB_ENV and GITHUB_OUTPUT. With --transparent (root, or passwordless "
                    "sudo) every call of the job to https://HOST goes through the node: a "
                    "per-job CA name-constrained to HOST, the system trust store, /etc/hosts "
                    "and a guardian that undoes it if the node dies. `summary` writes hit "
                    "rate, API calls saved and peer hits to GITHUB_STEP_SUMMARY, stops the "
                    "node and undoes transparent mode.")
    actions.add_argument("step", choices=("start", "summary"))
    actions.add_argument("--port", type=int, default=9000,
                         help="the runner node's libp2p port (default 9000)")
    actions.add_argument("--http", default="127.0.0.1:9180", metavar="HOST:PORT",
                         help="the runner node's local API (default 127.0.0.1:9180)")
    actions.add_argument("--wait", type=_wait_seconds, default=3.0,
                         help="seconds to wait for the bootstrap connection before the job "
                              "goes on (the node keeps trying meanwhile; default 3)")
    actions.add_argument("--keep-running", action="store_true",
                         help="summary: leave the node running (and transparent mode on)")
    actions.add_argument("--transparent", action="store_true",
                         help="start: capture every call to https://HOST (needs root or "
                              "passwordless sudo; without, base-URL mode)")
    actions.add_argument("--intercept", default=None, metavar="HOST",
                         help="start: the host transparent mode captures (default "
                              "api.github.com; a GitHub Enterprise Server user passes theirs)")
    _data_dir(actions)
    actions.add_argument("--upstream", default=None, metavar="URL",
                         help="GitHub API base URL [env GITHUB_API_URL]")
    actions.add_argument("--bootstrap", action="append", default=None, metavar="MULTIADDR",
                         help="server node to join [env MCP_P2P_BOOTSTRAP_PEERS]")
    actions.add_argument("--listen-host", default=None,
                         help="address to listen on for peers [env P2P_CACHE_LISTEN_HOST]")
    actions.add_argument("--announce", default=None, metavar="ADDR",
                         help="public IP or multiaddr to publish [env P2P_CACHE_ANNOUNCE]")
    actions.add_argument("--ttl", default=None, metavar="SECONDS",
                         help="freshness before revalidation [env P2P_CACHE_TTL]")
    mcp = sub.add_parser(
        "mcp", formatter_class=_Formatter, help="an MCP server (stdio) whose tools read GitHub "
        "through the node",
        description="A Model Context Protocol server on stdin/stdout for coding agents. Tools: "
                    "github_get (any GitHub REST GET through the cache, with paging), "
                    "cache_stats, fleet_status, doctor; no write tools. It talks to the node "
                    "running at --http. If none answers there, it starts one of its own "
                    "(`p2pcache serve --http` at that address, configured by the same "
                    "environment) and stops it when the session ends; --no-start turns that "
                    "off. Only protocol goes to stdout; logs go to stderr. --listen serves "
                    "the same tools over streamable HTTP on loopback instead.",
        epilog='MCP client configuration: {"mcpServers": {"p2pcache": {"command": "p2pcache", '
               '"args": ["mcp"]}}}')
    mcp.add_argument("--no-start", action="store_true",
                     help="never start a node; tools report that none runs")
    mcp.add_argument("--listen", default=None, metavar="HOST:PORT",
                     help="serve the tools over streamable HTTP at http://HOST:PORT/mcp "
                          "instead of stdio (loopback only; foreign Host or any Origin refused)")
    _http(mcp)
    return parser


def _wait_seconds(text: str) -> float:
    """A start waits a bounded time: 0 to 600 seconds (nan and inf would never end)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 600")
    return value


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="identity key, cache store and multiaddr file "
                             "[env P2P_CACHE_DATA_DIR, default: per-user cache dir]")


def _http(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http", default=None, metavar="HOST:PORT",
                        help="the node's local API [env P2P_CACHE_HTTP, default 127.0.0.1:9180]")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .client import NodeUnavailable
    from .config import ConfigError

    if args.command != "serve":
        _quiet_libraries(load_libp2p=args.command not in CLIENT_COMMANDS)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"p2pcache: {exc}", file=sys.stderr)
        return 2
    except NodeUnavailable as exc:  # a client command found no running node
        print(f"p2pcache: {exc}", file=sys.stderr)
        return 1


def _settings(args: argparse.Namespace, need_data_dir: bool = True) -> Any:
    from . import config

    return config.load(vars(args), need_data_dir=need_data_dir)


def cmd_serve(args: argparse.Namespace) -> int:
    import trio

    from .identity import IdentityError
    from .node import Node, StartupError

    settings = _settings(args)
    _setup_logging(args.verbose)
    try:
        node = Node(settings)
        trio.run(node.run)
    except IdentityError as exc:
        print(f"p2pcache: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        startup = _find(exc, StartupError)
        if startup is None:
            raise
        logging.getLogger("p2pcache").error("✗ %s", startup)
        return 1
    return 0


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose or os.environ.get("P2P_CACHE_LOG_LEVEL", "").lower() \
        == "debug" else logging.INFO
    logging.basicConfig(level=level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)-7s %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S")
    if not verbose:
        _quiet_libraries()


def _quiet_libraries(load_libp2p: bool = True) -> None:
    """py-libp2p logs expected failures (a refused dial) as errors; ours say what matters.
    It sets its own level when imported, so import it first (unless the command never
    loads it)."""
    if load_libp2p:
        import libp2p  # noqa: F401

    for noisy in ("libp2p", "multiaddr", "httpx", "httpcore", "async_service"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def cmd_id(args: argparse.Namespace) -> int:
    from . import identity

    settings = _settings(args)
    try:
        pair = identity.load_or_create(settings.data_dir)
    except identity.IdentityError as exc:
        print(f"p2pcache: {exc}", file=sys.stderr)
        return 2
    print(identity.peer_id(pair))
    return 0


def _client(args: argparse.Namespace) -> Any:
    from .client import NodeClient

    settings = _settings(args, need_data_dir=False)
    return NodeClient(settings.http_base, settings.token)


def _node_multiaddr(args: argparse.Namespace) -> str:
    """The running node's bootstrap multiaddr ('' if it has none yet)."""
    text = _client(args).get_text("/-/multiaddr")
    return text.splitlines()[0] if text.strip() else ""


def cmd_multiaddr(args: argparse.Namespace) -> int:
    first = _node_multiaddr(args)
    if not first:
        print("p2pcache: the node has no address to publish yet (set --announce)",
              file=sys.stderr)
        return 1
    print(first)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _client(args).stats()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0
    print(f"Peer ID:            {stats['peer_id']}")
    print(f"P2P enabled:        {stats['p2p_enabled']}")
    print(f"Connected peers:    {stats['connected_peers']}")
    print(f"Hit rate:           {stats['hit_rate']:.1%}")
    print(f"API calls saved:    {stats['api_calls_saved']}")
    print(f"Peer hits:          {stats['peer_hits']}")
    print(f"Local hits:         {stats['local_hits']}")
    print(f"Misses:             {stats['misses']}")
    print(f"Upstream requests:  {stats['upstream_requests']} "
          f"({stats['not_modified']} were free 304s)")
    print(f"Entries:            {stats['entries']} ({stats['bytes']:,} bytes)")
    remaining = stats.get("rate_limit_remaining")
    print(f"Rate limit left:    {'unknown' if remaining is None else remaining}")
    if stats.get("webhook"):
        print(f"Webhooks:           {stats['webhook_applied']} applied, "
              f"{stats['webhook_duplicate']} duplicate, {stats['webhook_ignored']} ignored, "
              f"{stats['webhook_bad_signature']} bad signature "
              f"({stats['webhook_dropped']} entries dropped)")
    print(f"Bootstrap Multiaddr: {stats.get('bootstrap_multiaddr') or '(none)'}")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from .client import LinkError

    headers = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"p2pcache: invalid header {item!r}: expected 'Name: value'", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    client = _client(args)
    target = "/" + args.path.lstrip("/")
    while target:
        response = client.get(target, headers)
        if args.include:
            print(f"HTTP/1.1 {response.status_code} {response.reason_phrase}")
            for name, value in response.headers.items():
                print(f"{name}: {value}")
            print()
        sys.stdout.write(response.text)
        if not response.text.endswith("\n"):
            sys.stdout.write("\n")
        if response.status_code >= 400:
            return 1
        try:
            target = client.next_page(response) if args.paginate else None
        except LinkError as exc:
            print(f"p2pcache: paging stopped: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .client import NodeUnavailable
    from .config import ConfigError, parse_peer_list
    from .publish import PublishError, publish_secret, write_file

    settings = _settings(args)
    given = ",".join(args.multiaddr) if args.multiaddr else None
    if given is None:
        try:
            given = _node_multiaddr(args)
        except NodeUnavailable as exc:
            print(f"p2pcache: {exc} (or pass --multiaddr)", file=sys.stderr)
            return 1
        if not given:
            print("p2pcache: the node has no address to publish (set --announce)",
                  file=sys.stderr)
            return 1
    try:
        entries = parse_peer_list(given)
    except ValueError as exc:
        shown = given if len(given) <= 120 else given[:120] + "..."
        raise ConfigError("--multiaddr", shown, str(exc)) from None
    value = ",".join(entries)
    if args.file:
        write_file(Path(args.file), value)
        print(f"✓ Wrote {args.file}", file=sys.stderr)
    if args.github_secret:
        try:
            result = publish_secret(settings.upstream, settings.token, args.github_secret,
                                    settings.data_dir, value, force=args.force)
        except PublishError as exc:
            print(f"p2pcache: {exc}", file=sys.stderr)
            return 1
        count = "1 address" if len(entries) == 1 else f"{len(entries)} addresses"
        if result == "unchanged":
            what = "this address" if len(entries) == 1 else f"these {count}"
            print(f"✓ MCP_P2P_BOOTSTRAP_PEERS on {args.github_secret} already holds {what} "
                  "(use --force to set it anyway)", file=sys.stderr)
        else:
            print(f"✓ MCP_P2P_BOOTSTRAP_PEERS {result} on {args.github_secret} ({count})",
                  file=sys.stderr)
    if args.stdout or not (args.file or args.github_secret):
        print(value)
    return 0


def cmd_upnp(args: argparse.Namespace) -> int:
    import trio

    from .nat import Gateway, UpnpError, UpnpMapper

    settings = _settings(args, need_data_dir=False)
    port = args.port or settings.port

    async def act() -> int:
        if args.action == "map":
            mapper = UpnpMapper(port, args.external_port, lease=args.lease)
            m = await mapper.map()
            print(f"✓ UPnP: mapped {m.external_ip}:{m.external_port} → "
                  f"{m.internal_ip}:{m.internal_port} "
                  f"({'lease ' + str(m.lease) + ' s' if m.lease else 'until removed'})")
            print(f"Announce address: /ip4/{m.external_ip}/tcp/{m.external_port}")
            return 0
        gateway = Gateway()
        lan_ip, external_ip = await trio.to_thread.run_sync(gateway.discover)
        if args.action == "unmap":
            external = args.external_port or port
            await trio.to_thread.run_sync(gateway.delete, external)
            print(f"✓ UPnP: removed the mapping of external port {external}")
            return 0
        mappings = await trio.to_thread.run_sync(gateway.mappings)
        print(f"Gateway external IP: {external_ip}")
        print(f"Our LAN address:     {lan_ip}")
        ours = [m for m in mappings if m[1] == lan_ip]
        for ext, ip, internal, desc in ours:
            print(f"Mapped: {external_ip}:{ext} → {ip}:{internal} ({desc})")
        if not ours:
            print("No mapping to this host")
        return 0

    try:
        return trio.run(act)
    except UpnpError as exc:
        print(f"p2pcache: UPnP: {exc}", file=sys.stderr)
        return 1


def cmd_doctor(args: argparse.Namespace) -> int:
    import trio

    from .config import ConfigError
    from .doctor import FAIL, Check, run_checks

    try:
        settings = _settings(args, need_data_dir=False)
    except ConfigError as exc:
        print(Check(FAIL, "configuration", str(exc)).render())
        return 1
    checks = trio.run(run_checks, settings, args.upnp)
    for check in checks:
        print(check.render())
    failed = sum(c.mark == FAIL for c in checks)
    print(f"\n{failed} problem(s) found" if failed else "\nNo problems found")
    return 1 if failed else 0


def cmd_mcp(args: argparse.Namespace) -> int:
    try:
        from .mcp import listen_address, serve
    except ImportError as exc:  # the SDK is an extra: runners do not carry it
        print(f"p2pcache mcp needs the MCP SDK ({exc.name or exc}): "
              "pip install 'p2pcache[mcp]' (the container image has it)", file=sys.stderr)
        return 2

    listen = listen_address(args.listen) if args.listen else None
    return serve(_settings(args, need_data_dir=False), not args.no_start, listen)


def cmd_actions(args: argparse.Namespace) -> int:
    from . import actions

    from .intercept import InterceptError, check_host

    if args.step == "start":
        if args.intercept is not None:
            try:
                check_host(args.intercept)
            except InterceptError as exc:
                print(f"p2pcache: {exc}", file=sys.stderr)
                return 2
        return actions.start(args.port, args.http, args.wait, transparent=args.transparent,
                             intercept_host=args.intercept, flags=vars(args))
    return actions.summary(args.port, args.http, stop=not args.keep_running, flags=vars(args))


# Commands that only talk to a running node over HTTP: they never load py-libp2p, whose
# import alone costs about 2 s of CPU (bench/runner_deps.py), on every `actions start`.
CLIENT_COMMANDS = ("actions", "multiaddr", "stats", "api")
COMMANDS = {"actions": cmd_actions, "serve": cmd_serve, "id": cmd_id, "multiaddr": cmd_multiaddr, "stats": cmd_stats,
            "api": cmd_api, "publish": cmd_publish, "upnp": cmd_upnp, "doctor": cmd_doctor,
            "mcp": cmd_mcp}

if __name__ == "__main__":
    sys.exit(main())
