"""A real UPnP router (miniupnpd 2.3.9) with LAN and WAN hosts, in network namespaces.

    with NatLab() as lab:                          # ~0.15 s once tests/nat/setup.sh ran
        server = lab.add_lan_host("server")        # 192.0.2.10, default route via 192.0.2.1
        outside = lab.add_wan_host("outside")      # 203.0.113.10, no route to the LAN
        node = lab.popen(server, [sys.executable, "-m", "p2pcache", "serve"], env=...)
        api = lab.forward(server, 8080)            # 127.0.0.1:api here → 127.0.0.1:8080 there
        lab.upnp(server, "return u.getspecificportmapping(9100, 'TCP')")
        lab.mappings()                             # what the router forwards right now
        lab.connect(outside, "203.0.113.42", 9100) # bytes the server sent, None if no way in
        lab.restart_miniupnpd()                    # a router reboot: every mapping gone

Topology. The namespaces are `p2pc<6 hex>-<role>` (at most 15 characters, unique per lab);
every interface name is local to its namespace (both veth ends are created in place), so
parallel labs never collide and nothing appears in the machine's own namespace:

    LAN host ns -l10       switch ns -s (two bridges, no rules)      router ns -r
    eth0 192.0.2.10 ---- l10 --+
                               brlan --- rlan ========================= lan0 192.0.2.1/24
    eth0 192.0.2.11 ---- l11 --+                                             (forwarding, nft)
                                                                             wan0 203.0.113.42/24
    eth0 203.0.113.10 -- w10 --+                                              ||
                               brwan --- rwan ============================== (veth)
    WAN host ns -w10

The router forwards, masquerades LAN traffic leaving wan0, accepts `ct state
established,related` and LAN-to-WAN traffic, and drops every other forwarded packet unless
miniupnpd's own chain accepts it (it adds one accept rule per mapping). Bridging happens in a
separate switch namespace that has no firewall rules, so the router's rules see routed
traffic only, whatever br_netfilter does on the machine.

miniupnpd runs from the trixie chroot that tests/nat/setup.sh builds. It is started as
`ip netns exec ROUTER sh -c 'mount proc; bind-mount the lab dir; exec chroot ... miniupnpd -d'`:
`ip netns exec` gives the process a private mount namespace, so the proc and bind mounts exist
only for miniupnpd and vanish with it. The machine's own mount table never shows them, and
the cached chroot is never copied or deleted with anything mounted in it.

Nothing outlives the lab: close() (also run by __exit__, by atexit, and by the next lab for a
lab whose Python process died, see sweep_stale()) kills every process in the lab's
namespaces and deletes the namespaces, which takes their veths and nft rules with them.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

CHROOT = Path(os.environ.get("P2PCACHE_NAT_CHROOT", "/var/cache/p2pcache-test/trixie-miniupnpd"))
CHROOT_MARKER = ".p2pcache-complete"
#: mount point inside the chroot where each miniupnpd sees its own lab directory
CHROOT_LABDIR = "run/p2pcache-lab"
#: one JSON record per live lab: owner pid and namespaces, for sweep_stale()
STATE_DIR = Path("/run/p2pcache-nat-lab")
NS_PREFIX = "p2pc"

WAN_IP = "203.0.113.42"
WAN_PREFIX = "203.0.113"
LAN_GATEWAY = "192.0.2.1"
LAN_PREFIX = "192.0.2"
LAN_NET = "192.0.2.0/24"
WAN_NET = "203.0.113.0/24"
HTTP_PORT = 5000          # miniupnpd's SOAP/description port on 192.0.2.1
IGD_URL = f"http://{LAN_GATEWAY}:{HTTP_PORT}/rootDesc.xml"
# miniupnpc's discover() waits this long for SSDP answers; below 1000 it waits 1000 anyway
# (MX is at least 1 s), so every discovery costs ~1.05 s even though answers take ~1 ms here.
DISCOVER_DELAY_MS = 1000
FIRST_HOST = 10           # hosts get .10, .11, ... on either side

# nft_init.sh's layout (table inet filter, chains miniupnpd / prerouting_miniupnpd /
# postrouting_miniupnpd, which are miniupnpd 2.3.9's defaults), plus what a home router
# adds: established/related and LAN-to-WAN forwarding, and masquerade on the WAN side.
RULESET = """\
table inet filter {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        jump miniupnpd
        iifname "lan0" oifname "wan0" accept
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
        oifname "wan0" masquerade
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
"""

# ext_ip: needed, or GetExternalIPAddress answers "" for a reserved WAN address. miniupnpd
# still logs "IGNORED : option ext_ip contains reserved / private address" while parsing it;
# with ext_allow_private_ipv4=yes it uses it all the same.
MINIUPNPD_CONF = """\
# written by tests/nat/lab.py
ext_ifname=wan0
ext_allow_private_ipv4=yes
ext_ip={wan_ip}
listening_ip=lan0
http_port={http_port}
ipv6_disable=yes
enable_upnp=yes
enable_pcp_pmp={natpmp}
secure_mode={secure_mode}
system_uptime=no
notify_interval=60
clean_ruleset_interval={clean_ruleset_interval}
min_lifetime={min_lifetime}
max_lifetime={max_lifetime}
uuid={uuid}
friendly_name=p2pcache NAT lab
model_number=1
serial=00000000
{extra}
allow 1024-65535 {lan_net} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


class LabError(RuntimeError):
    """Setting up or driving the lab failed; the message carries the command and its output."""


@dataclass(frozen=True)
class Host:
    """A namespace in the lab. `ns` is what `ip netns exec` takes; `ip` is its address."""
    name: str
    ns: str
    ip: str
    side: str             # "lan", "wan" or "router"

    def __str__(self) -> str:
        return f"{self.name}({self.ip} in {self.ns})"


@dataclass(frozen=True)
class Mapping:
    """One port forward as the router's nftables DNAT chain holds it (no description or
    lease there: see NatLab.upnp_mappings())."""
    protocol: str          # "TCP" or "UDP"
    external_port: int
    internal_ip: str
    internal_port: int
    remote_host: str = ""  # "" when any remote host may use it


def prerequisites(chroot: Path = CHROOT) -> list[str]:
    """What the lab lacks on this machine, as human-readable reasons (empty when ready)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("the NAT lab needs root (network namespaces, nftables, chroot)")
    for tool in ("ip", "nft", "chroot", "mount"):
        if shutil.which(tool) is None:
            missing.append(f"no `{tool}` on PATH (run `bash tests/nat/setup.sh` as root)")
    if not (chroot / CHROOT_MARKER).is_file():
        missing.append(f"no miniupnpd chroot at {chroot} (run `bash tests/nat/setup.sh` as root)")
    return missing


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def _netns_list() -> set[str]:
    out = _run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    try:
        return {entry["name"] for entry in json.loads(out or "[]")}
    except (ValueError, KeyError, TypeError):
        return {line.split()[0] for line in out.splitlines() if line.strip()}


def _process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_netns_processes(ns: str, grace: float = 2.0) -> None:
    """SIGTERM every process in namespace `ns`, then SIGKILL whatever is still there."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = [int(p) for p in _run(["ip", "netns", "pids", ns], check=False).stdout.split()
                if p.isdigit() and int(p) != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not any(_alive(pid) for pid in pids):
                break
            time.sleep(0.02)


def _destroy_namespaces(namespaces: Sequence[str]) -> list[str]:
    """Kill processes in and delete each namespace that still exists; returns the errors."""
    errors = []
    present = _netns_list()
    for ns in namespaces:
        if ns not in present:
            continue
        try:
            _kill_netns_processes(ns)
            _run(["ip", "netns", "delete", ns])
        except (LabError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
    return errors


def sweep_stale() -> list[str]:
    """Tear down labs whose owning Python process is gone (killed before its teardown ran).

    Each lab records its namespaces in STATE_DIR; a record whose owner pid (and start time)
    no longer exists is cleaned up here. Returns the namespaces that were removed.
    """
    removed: list[str] = []
    if not STATE_DIR.is_dir():
        return removed
    for record in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if _process_start_time(state.get("pid", -1)) == state.get("start_time"):
            continue   # its owner is alive: another lab, possibly in a parallel run
        namespaces = state.get("namespaces", [])
        _destroy_namespaces(namespaces)
        removed += namespaces
        if state.get("own_workdir") and state.get("workdir"):
            shutil.rmtree(state["workdir"], ignore_errors=True)
        record.unlink(missing_ok=True)
    return removed


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(ns: str, family: int = socket.AF_INET,
                    type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in network namespace `ns`, usable from this process.

    A socket belongs to the namespace it was created in, whichever thread then uses it; so a
    short-lived thread enters `ns` (setns affects only the calling thread), creates it, and
    ends. The caller's own threads never change namespace."""
    result: dict[str, Any] = {}

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(family, type)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=make, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


class _Forwarder:
    """127.0.0.1:<port> in this process's namespace → ip:port inside a lab namespace."""

    def __init__(self, ns: str, ip: str, port: int) -> None:
        self.ns, self.ip, self.port = ns, ip, port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = self.listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True,
                         name=f"forward-{ns}-{port}").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket_in_netns(self.ns)
                upstream.settimeout(5)
                upstream.connect((self.ip, self.port))
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for sock in [self.listener, *conns]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


_LIVE_LABS: set["NatLab"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _close_live_labs() -> None:
    with _LIVE_LOCK:
        labs = list(_LIVE_LABS)
    for lab in labs:
        try:
            lab.close()
        except Exception as exc:  # noqa: BLE001 - last resort, report and go on
            print(f"NatLab atexit cleanup of {lab.id}: {exc}", file=sys.stderr)


class NatLab:
    """A UPnP router between a LAN and a WAN, built from namespaces; see the module docstring.

    Options: `secure_mode` (a LAN host may only map ports to itself; miniupnpd's default),
    `natpmp` (also answer NAT-PMP/PCP on UDP 5351), `min_lifetime`/`max_lifetime` (PCP and
    NAT-PMP lease bounds, seconds), `clean_ruleset_interval` (seconds between miniupnpd's
    sweeps of unused rules; 0 = never), `extra_conf` (more miniupnpd.conf lines), `workdir`
    (kept after close; by default a temporary directory that close() deletes).
    """

    def __init__(self, *, chroot: Path | str = CHROOT, secure_mode: bool = True,
                 natpmp: bool = True, min_lifetime: int = 120, max_lifetime: int = 86400,
                 clean_ruleset_interval: int = 0, extra_conf: str = "",
                 workdir: Path | str | None = None) -> None:
        self.chroot = Path(chroot)
        self.id = secrets.token_hex(3)
        self.secure_mode = secure_mode
        self.natpmp = natpmp
        self.min_lifetime = min_lifetime
        self.max_lifetime = max_lifetime
        self.clean_ruleset_interval = clean_ruleset_interval
        self.extra_conf = extra_conf
        self._own_workdir = workdir is None
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self.router = Host("router", self._ns("r"), LAN_GATEWAY, "router")
        self.switch = Host("switch", self._ns("s"), "", "switch")
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._forwarders: list[_Forwarder] = []
        self._miniupnpd: subprocess.Popen[bytes] | None = None
        self._miniupnpd_starts = 0
        self._next = {"lan": FIRST_HOST, "wan": FIRST_HOST}
        self._closed = False
        self._started = False

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> "NatLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ns(self, role: str) -> str:
        name = f"{NS_PREFIX}{self.id}-{role}"
        assert len(name) <= 15, name
        return name

    def start(self) -> "NatLab":
        """Build router and switch, load the firewall, start miniupnpd. Cleans up on failure."""
        if self._started:
            return self
        missing = prerequisites(self.chroot)
        if missing:
            raise LabError("; ".join(missing))
        self._started = True
        sweep_stale()
        with _LIVE_LOCK:
            _LIVE_LABS.add(self)
        try:
            if self._workdir_arg is None:
                self.workdir = Path(tempfile.mkdtemp(prefix=f"p2pcache-nat-{self.id}-"))
            else:
                self.workdir = self._workdir_arg
                self.workdir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.workdir, 0o755)
            self._add_namespace(self.switch.ns)
            self._add_namespace(self.router.ns)
            sw, rt = self.switch.ns, self.router.ns
            for br in ("brlan", "brwan"):
                self._ip(sw, "link", "add", br, "type", "bridge")
                self._ip(sw, "link", "set", br, "up")
            self._veth(rt, "lan0", sw, "rlan", "brlan")
            self._veth(rt, "wan0", sw, "rwan", "brwan")
            self._ip(rt, "addr", "add", f"{LAN_GATEWAY}/24", "dev", "lan0")
            self._ip(rt, "addr", "add", f"{WAN_IP}/24", "dev", "wan0")
            self._sysctl(rt, "net.ipv4.ip_forward", "1")
            _run(["ip", "netns", "exec", rt, "nft", "-f", "-"], input=RULESET)
            self._write_conf()
            self.start_miniupnpd()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill every process and delete every namespace of the lab. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for forwarder in self._forwarders:
            forwarder.close()
        for proc in self._procs:
            self._stop_proc(proc)
        try:
            self.stop_miniupnpd()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"stopping miniupnpd: {exc}")
        errors += _destroy_namespaces(list(reversed(self._namespaces)))
        left = set(self._namespaces) & _netns_list()
        if left:
            errors.append(f"namespaces left behind: {sorted(left)}")
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        (STATE_DIR / f"{self.id}.json").unlink(missing_ok=True)
        with _LIVE_LOCK:
            _LIVE_LABS.discard(self)
        if errors:
            raise LabError("NatLab teardown: " + "; ".join(errors))

    # -- building blocks --------------------------------------------------------------------

    def _record_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {"pid": os.getpid(), "start_time": _process_start_time(os.getpid()),
                 "namespaces": self._namespaces, "workdir": str(self.workdir or ""),
                 "own_workdir": self._own_workdir}
        tmp = STATE_DIR / f".{self.id}.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(STATE_DIR / f"{self.id}.json")

    def _add_namespace(self, ns: str) -> None:
        self._namespaces.append(ns)
        self._record_state()      # before creating it, so a crash right after is swept
        _run(["ip", "netns", "add", ns])
        self._ip(ns, "link", "set", "lo", "up")
        # No IPv6 in the lab: no router solicitations, no DAD, nothing but the documented
        # IPv4 ranges.
        self._sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1", required=False)
        self._sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1", required=False)

    @staticmethod
    def _ip(ns: str, *args: str) -> None:
        _run(["ip", "-n", ns, *args])

    @staticmethod
    def _sysctl(ns: str, key: str, value: str, required: bool = True) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        _run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"], check=required)

    def _veth(self, ns: str, ifname: str, sw: str, port: str, bridge: str) -> None:
        """A veth from `ifname` in `ns` to `port` on `bridge` in the switch namespace. Both
        ends are created inside their namespaces, so no name ever exists in the host's."""
        self._ip(ns, "link", "add", ifname, "type", "veth", "peer", "name", port, "netns", sw)
        self._ip(sw, "link", "set", port, "master", bridge)
        self._ip(sw, "link", "set", port, "up")
        self._ip(ns, "link", "set", ifname, "up")

    def _add_host(self, name: str, side: str) -> Host:
        if self._closed or not self._started:
            raise LabError("the lab is not running")
        if name in self.hosts or name in ("router", "switch"):
            raise LabError(f"host name {name!r} is taken")
        n = self._next[side]
        if side == "wan" and n == int(WAN_IP.rsplit(".", 1)[1]):
            n += 1
        if n > 254:
            raise LabError(f"no addresses left on the {side}")
        self._next[side] = n + 1
        ns = self._ns(f"{side[0]}{n}")
        ip = f"{LAN_PREFIX if side == 'lan' else WAN_PREFIX}.{n}"
        self._add_namespace(ns)
        self._veth(ns, "eth0", self.switch.ns, f"{side[0]}{n}", f"br{side}")
        self._ip(ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        if side == "lan":
            self._ip(ns, "route", "add", "default", "via", LAN_GATEWAY)
        host = Host(name, ns, ip, side)
        self.hosts[name] = host
        return host

    def add_lan_host(self, name: str) -> Host:
        """A host behind the router: 192.0.2.N/24 (N = 10, 11, ...), default route via
        192.0.2.1, so it reaches the WAN through the masquerade and the IGD at 192.0.2.1."""
        return self._add_host(name, "lan")

    def add_wan_host(self, name: str) -> Host:
        """A host on the internet side: 203.0.113.N/24 (N = 10, 11, ..., never 42), on-link
        with the router's WAN address and with no route to 192.0.2.0/24: it reaches the LAN
        only through ports mapped on 203.0.113.42."""
        return self._add_host(name, "wan")

    def host(self, host: Host | str) -> Host:
        if isinstance(host, Host):
            return host
        if host == "router":
            return self.router
        try:
            return self.hosts[host]
        except KeyError:
            raise LabError(f"no host {host!r} in the lab (have {sorted(self.hosts)})") from None

    # -- running things in namespaces -------------------------------------------------------

    def command(self, host: Host | str, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside `host`'s namespace."""
        return [shutil.which("ip") or "ip", "netns", "exec", self.host(host).ns, *argv]

    def run(self, host: Host | str, argv: Sequence[str], *, check: bool = False,
            timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run `argv` in `host`'s namespace to completion (text output captured unless
        `stdout`/`stderr` are given). `check=True` raises LabError on a non-zero exit."""
        kw.setdefault("text", True)
        if "stdout" not in kw and "stderr" not in kw:
            kw["capture_output"] = True
        proc = subprocess.run(self.command(host, argv), timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise LabError(f"{argv} in {self.host(host)} exited {proc.returncode}:\n"
                           f"{proc.stdout or ''}{proc.stderr or ''}")
        return proc

    def popen(self, host: Host | str, argv: Sequence[str], *,
              env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[Any]:
        """Start `argv` in `host`'s namespace (the Popen's pid is the program itself, as
        `ip netns exec` execs it). close() stops it (SIGTERM, then SIGKILL) if still running."""
        proc = subprocess.Popen(self.command(host, argv), env=env, **kw)
        self._procs.append(proc)
        return proc

    def socket(self, host: Host | str, family: int = socket.AF_INET,
               type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket inside `host`'s namespace, for this process to use directly (connect to
        a LAN server, bind a UDP port as a WAN host, ...). The caller closes it."""
        return socket_in_netns(self.host(host).ns, family, type)

    def forward(self, host: Host | str, port: int, ip: str = "127.0.0.1") -> int:
        """Make ip:port as seen from inside `host` (by default its loopback, where a node's
        HTTP API listens) reachable from this process at 127.0.0.1:<returned port>, e.g.
        httpx.get(f"http://127.0.0.1:{lab.forward(server, 8080)}/-/healthz"). TCP only;
        close() stops it. Each connection is relayed by two threads in this process."""
        forwarder = _Forwarder(self.host(host).ns, ip, port)
        self._forwarders.append(forwarder)
        return forwarder.local_port

    def python(self, host: Host | str, code: str, *args: str, timeout: float = 30,
               check: bool = True, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet (dedented) with this interpreter in `host`'s namespace."""
        return self.run(host, [sys.executable, "-c", textwrap.dedent(code), *args],
                        timeout=timeout, check=check, env=env)

    def upnp(self, host: Host | str, code: str, *, discover: bool = False,
             timeout: float = 30) -> Any:
        """Run miniupnpc calls in `host` and return their result, decoded from JSON.

        `code` is the body of a function of `u`, a miniupnpc.UPnP with the router's IGD
        selected, that returns something JSON-serialisable. By default `u` goes straight to
        IGD_URL (~25 ms a call); with `discover=True` it finds the IGD by SSDP as a real
        client does (~1.05 s: miniupnpc waits at least a second). A UPnP error inside `code`
        becomes {"error": "<message>"} rather than an exception, e.g.
        lab.upnp(h, "return u.addportmapping(9100, 'TCP', u.lanaddr, 9100, 'x', '')")
        → True, or {"error": "ConflictInMappingEntry"}.
        """
        target = self.host(host)
        if target.side == "router":
            discover = False
        body = textwrap.indent(textwrap.dedent(code).strip(), " " * 8)
        select = (f"u.discoverdelay = {DISCOVER_DELAY_MS}\n"
                  "if not u.discover():\n"
                  "    raise SystemExit('no UPnP device found by SSDP')\n"
                  "u.selectigd()\n") if discover else f"u.selectigd({IGD_URL!r})\n"
        script = (
            "import json, miniupnpc\n"
            "u = miniupnpc.UPnP()\n"
            f"{select}"
            "def body(u):\n"
            "    try:\n"
            f"{body}\n"
            "    except Exception as exc:\n"
            "        return {'error': str(exc)}\n"
            "print(json.dumps(body(u)))\n"
        )
        proc = self.run(target, [sys.executable, "-c", script], timeout=timeout)
        if proc.returncode != 0:
            raise LabError(f"miniupnpc in {target} failed ({proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}\n--- miniupnpd log ---\n{self.logs()}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def upnp_mappings(self) -> list[dict[str, Any]]:
        """miniupnpd's own list (GetGenericPortMappingEntry from index 0 until it fails),
        asked from the router itself: dicts with protocol, external_port, internal_ip,
        internal_port, description, enabled, remote_host and lease (seconds left; 0 means
        no expiry, which only happens to rules miniupnpd did not add this run)."""
        rows = self.upnp(self.router, """
            out, i = [], 0
            while True:
                try:
                    r = u.getgenericportmapping(i)
                except Exception:
                    break
                if r is None:
                    break
                out.append(r)
                i += 1
            return out
        """)
        if isinstance(rows, dict):
            raise LabError(f"GetGenericPortMappingEntry failed: {rows}")
        return [{"protocol": proto, "external_port": eport, "internal_ip": ihost,
                 "internal_port": iport, "description": desc, "enabled": str(enabled) == "1",
                 "remote_host": rhost, "lease": lease}
                for eport, proto, (ihost, iport), desc, enabled, rhost, lease in rows]

    def connect(self, host: Host | str, ip: str, port: int, send: bytes = b"",
                timeout: float = 1.0) -> bytes | None:
        """Open a TCP connection from `host` to ip:port, send `send`, half-close, and return
        everything the peer sent until it closed (or until `timeout` of silence). None when
        the connection cannot be made (refused, unreachable, or no answer in `timeout`)."""
        code = """
            import socket, sys
            ip, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
            try:
                s = socket.create_connection((ip, port), timeout=timeout)
            except OSError as exc:
                sys.stderr.write(repr(exc))
                sys.exit(3)
            s.sendall(bytes.fromhex(sys.argv[4]))
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            s.close()
            sys.stdout.write(b"".join(chunks).hex())
        """
        proc = self.python(host, code, ip, str(port), str(timeout), send.hex(), check=False,
                           timeout=timeout + 20)
        if proc.returncode == 3:
            return None
        if proc.returncode != 0:
            raise LabError(f"connect probe from {self.host(host)} failed:\n{proc.stderr}")
        return bytes.fromhex(proc.stdout.strip())

    def can_connect(self, host: Host | str, ip: str, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from `host` to ip:port completes within `timeout`."""
        return self.connect(host, ip, port, timeout=timeout) is not None

    def listening(self, host: Host | str, port: int, proto: str = "tcp") -> bool:
        """Whether something in `host` listens on `port` (TCP) or has it bound (UDP)."""
        flag = "-Hltn" if proto.lower() == "tcp" else "-Hlun"
        return bool(self.run(host, ["ss", flag, f"sport = :{port}"]).stdout.strip())

    def tcp_server(self, host: Host | str, port: int, timeout: float = 10,
                   ) -> subprocess.Popen[Any]:
        """A TCP server in `host` on 0.0.0.0:`port` that answers every connection with the
        address it came from ("203.0.113.10\\n") and closes it. Returns once it listens;
        close() stops it."""
        code = """
            import socket, sys
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("0.0.0.0", int(sys.argv[1])))
            srv.listen(16)
            while True:
                conn, peer = srv.accept()
                with conn:
                    conn.sendall(peer[0].encode() + b"\\n")
        """
        proc = self.popen(host, [sys.executable, "-c", textwrap.dedent(code), str(port)],
                          stdin=subprocess.DEVNULL)

        def up() -> bool:
            if proc.poll() is not None:
                raise LabError(f"TCP server on {self.host(host)}:{port} exited "
                               f"{proc.returncode}")
            return self.listening(host, port)
        self.wait_until(up, timeout, what=f"TCP server on {self.host(host)}:{port}")
        return proc

    def wait_until(self, predicate: Any, timeout: float = 10, interval: float = 0.05,
                   what: str = "condition") -> Any:
        """Poll `predicate()` until it returns something truthy; LabError with logs if not."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise LabError(f"{what} not reached in {timeout} s\n--- miniupnpd log ---\n"
                               f"{self.logs()}")
            time.sleep(interval)

    @staticmethod
    def _stop_proc(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    # -- miniupnpd --------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "miniupnpd.conf"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "miniupnpd.log"

    def _write_conf(self) -> None:
        self.conf_path.write_text(MINIUPNPD_CONF.format(
            wan_ip=WAN_IP, http_port=HTTP_PORT, lan_net=LAN_NET,
            natpmp="yes" if self.natpmp else "no",
            secure_mode="yes" if self.secure_mode else "no",
            clean_ruleset_interval=self.clean_ruleset_interval,
            min_lifetime=self.min_lifetime, max_lifetime=self.max_lifetime,
            uuid=uuid.uuid4(), extra=self.extra_conf))

    @property
    def miniupnpd_pid(self) -> int | None:
        if self._miniupnpd is None or self._miniupnpd.poll() is not None:
            return None
        return self._miniupnpd.pid

    def start_miniupnpd(self, timeout: float = 10) -> None:
        """Start miniupnpd in the router and wait until its HTTP (SOAP) port listens."""
        if self.miniupnpd_pid is not None:
            raise LabError("miniupnpd is already running")
        assert self.workdir is not None
        mountpoint = self.chroot / CHROOT_LABDIR
        mountpoint.mkdir(parents=True, exist_ok=True)
        self._miniupnpd_starts += 1
        log = self.log_path.open("ab")
        log.write(f"==== lab {self.id}: miniupnpd start #{self._miniupnpd_starts} "
                  f"at {time.strftime('%H:%M:%S')} ====\n".encode())
        log.flush()
        # Runs in the private mount namespace `ip netns exec` creates: the mounts are
        # invisible outside it and disappear when miniupnpd exits. /dev/console becomes
        # /dev/null: miniupnpd opens syslog with LOG_CONS and the chroot has no /dev/log, so
        # every message would also go to the machine's console (-d copies them to stderr).
        script = ('set -e; mount -t proc proc "$1/proc"; mount --bind "$2" "$1/$3"; '
                  'mount --bind /dev/null "$1/dev/console"; '
                  'exec chroot "$1" /usr/sbin/miniupnpd -d -f "/$3/miniupnpd.conf" '
                  '-P "/$3/miniupnpd.pid"')
        self._miniupnpd = subprocess.Popen(
            ["ip", "netns", "exec", self.router.ns, "sh", "-c", script, "sh",
             str(self.chroot), str(self.workdir), CHROOT_LABDIR],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

        def listening() -> bool:
            if self._miniupnpd is not None and self._miniupnpd.poll() is not None:
                raise LabError(f"miniupnpd exited {self._miniupnpd.returncode}:\n{self.logs()}")
            out = self.run(self.router, ["ss", "-Hltn", f"sport = :{HTTP_PORT}"]).stdout
            return bool(out.strip())
        self.wait_until(listening, timeout, what="miniupnpd listening on port "
                        f"{HTTP_PORT}")

    def stop_miniupnpd(self, timeout: float = 5) -> None:
        """SIGTERM miniupnpd and wait for it (SIGKILL after `timeout`).

        The SIGTERM is repeated every 0.1 s: miniupnpd 2.3.9 sometimes misses one (it sets a
        flag that its select() loop checks only when something wakes it, and a signal that
        lands between the check and the select() is lost until the next timer, up to a
        minute away). It removes none of its nft rules when it exits.
        """
        proc = self._miniupnpd
        if proc is None or proc.poll() is not None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc.terminate()
            try:
                proc.wait(0.1)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        proc.wait(5)
        with self.log_path.open("a") as log:
            log.write(f"==== lab {self.id}: miniupnpd ignored SIGTERM for {timeout} s; "
                      "killed ====\n")

    def flush_mappings(self) -> None:
        """Empty miniupnpd's three chains, as a router reboot would (nft_flush.sh)."""
        for chain in ("miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"):
            self.run(self.router, ["nft", "flush", "chain", "inet", "filter", chain],
                     check=True)

    def restart_miniupnpd(self, flush: bool = True) -> None:
        """A router reboot: stop miniupnpd, empty its chains, start it again (new pid, new
        BOOTID, no mappings; clients must map again).

        The flush is what makes it a reboot: miniupnpd 2.3.9 (nftables backend) leaves its
        rules in place when it exits, and at start-up serves whatever rules it finds in its
        chains as mappings again, with the lease forgotten (reported as 0, never expiring;
        there is no lease file here). `flush=False` gives that daemon-only restart.
        """
        self.stop_miniupnpd()
        if flush:
            self.flush_mappings()
        self.start_miniupnpd()

    def logs(self) -> str:
        """Everything miniupnpd wrote so far (all starts), for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    # -- inspecting the router --------------------------------------------------------------

    def nft_ruleset(self) -> str:
        """The router's whole nftables ruleset, as text (for failure messages)."""
        return self.run(self.router, ["nft", "list", "ruleset"], check=True).stdout

    def mappings(self) -> list[Mapping]:
        """The router's current port forwards, read from miniupnpd's DNAT chain
        (`inet filter prerouting_miniupnpd`): what the data plane forwards right now."""
        out = self.run(self.router, ["nft", "-j", "list", "chain", "inet", "filter",
                                     "prerouting_miniupnpd"], check=True).stdout
        found = []
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if rule is not None:
                mapping = _parse_dnat_rule(rule)
                if mapping is not None:
                    found.append(mapping)
        return sorted(found, key=lambda m: (m.protocol, m.external_port))


_PROTO_NUMBERS = {6: "TCP", 17: "UDP"}


def _parse_dnat_rule(rule: dict[str, Any]) -> Mapping | None:
    """One of miniupnpd's DNAT rules in `nft -j` form → Mapping (None for anything else).

    miniupnpd 2.3.9 writes `iif "wan0" @nh,72,8 0x6 th dport 9100 dnat ip to 192.0.2.10:9100`
    (the IPv4 protocol byte read raw, then the transport dport), plus `@nh,96,32 ADDR` when
    the mapping has a remote host. Its description lives in rule userdata that nft does not
    show; upnp_mappings() has it.
    """
    proto = ""
    eport = iport = 0
    iaddr = rhost = ""
    for expr in rule.get("expr", []):
        match = expr.get("match")
        if match is not None:
            left, right = match.get("left"), match.get("right")
            payload = left.get("payload", {}) if isinstance(left, dict) else {}
            meta = left.get("meta", {}) if isinstance(left, dict) else {}
            if payload.get("field") == "dport":                      # th/tcp/udp dport
                eport = int(right)
                if payload.get("protocol") in ("tcp", "udp"):
                    proto = payload["protocol"].upper()
            elif payload.get("base") == "nh" and payload.get("offset") == 72:   # ip protocol
                proto = _PROTO_NUMBERS.get(int(right), str(right))
            elif payload.get("protocol") == "ip" and payload.get("field") == "protocol":
                proto = str(right).upper()
            elif meta.get("key") == "l4proto":
                proto = _PROTO_NUMBERS.get(right, str(right).upper()) if isinstance(
                    right, int) else str(right).upper()
            elif payload.get("base") == "nh" and payload.get("offset") == 96:   # ip saddr
                rhost = str(_int_to_ip(right)) if isinstance(right, int) else str(right)
            elif payload.get("protocol") == "ip" and payload.get("field") == "saddr":
                rhost = str(right)
        dnat = expr.get("dnat")
        if dnat is not None:
            iaddr = str(dnat.get("addr", ""))
            iport = int(dnat.get("port", eport or 0))
    if not iaddr or not eport:
        return None
    return Mapping(proto or "?", eport, iaddr, iport, rhost)


def _int_to_ip(value: int) -> str:
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


__all__ = ["NatLab", "Host", "Mapping", "LabError", "prerequisites", "sweep_stale",
           "socket_in_netns", "CHROOT",
           "WAN_IP", "LAN_GATEWAY", "LAN_NET", "WAN_NET", "HTTP_PORT", "IGD_URL"]


if __name__ == "__main__":   # python tests/nat/lab.py: build a lab, print its state, tear down
    with NatLab() as lab:
        a = lab.add_lan_host("a")
        print(lab.upnp(a, "return [u.lanaddr, u.externalipaddress()]"))
        print(lab.mappings())
        print(re.sub(r"\n\s*\n", "\n", lab.logs()))
