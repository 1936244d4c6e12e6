"""Transparent mode: make one HTTPS host (api.github.com) resolve to the node for one job.

A per-job CA, name-constrained to that host, signs a leaf for it; the CA goes into the
system trust store and the host into /etc/hosts, pointing at the node's TLS listener. A
guardian process (root, its own session) watches the node and takes the redirection away
as soon as the node is gone, however it died. Teardown undoes what a record says was done,
under a lock, so it is idempotent, safe after a half-done start, and safe to run from the
guardian and from `actions summary` at once.

Every root-side file (records, the guardian's log, the lock) lives in RECORDS (/run), owned by
root and mode 0700; the job's user never writes anything root later reads. /run is gone after
a reboot while /etc keeps the changes, so each record also goes to LEDGER (/var/lib, root,
0700) before the first change: the next start or summary undoes what a lost record did
(recover()), and finds our hosts lines and CA files even when the ledger is gone too.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOST = "api.github.com"
# A loopback address of its own, so a job's own server on 127.0.0.1:443 is not in the way.
LISTEN_ADDRESS = "127.0.0.43"
MARKER = "# p2pcache-intercept"
VALIDITY = datetime.timedelta(days=7)  # longer than any job; the key dies with the job
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


class InterceptError(Exception):
    """Interception cannot be set up; one line for the user."""


def check_host(host: str) -> str:
    """HOST must be a DNS name (the CA is constrained to it), not an IP or a wildcard."""
    host = host.strip().lower().rstrip(".")
    if not _HOSTNAME.match(host) or host.rsplit(".", 1)[-1].isdigit():
        raise InterceptError(f"--intercept {host!r}: expected a DNS name like api.github.com")
    return host


# -- the per-job CA ------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    ca_pem: bytes
    leaf_pem: bytes
    leaf_key_pem: bytes = field(repr=False)


def make_credentials(host: str, now: datetime.datetime | None = None) -> Credentials:
    """A CA that can vouch for HOST (and its subdomains) only, and a leaf for HOST.

    The CA key exists only in memory here and is dropped on return: once the leaf is signed
    nothing needs it, so nothing can steal it.
    """
    ca, ca_key = make_ca(host, now)
    leaf, leaf_key = make_leaf(host, ca, ca_key, now)
    pem = serialization.Encoding.PEM
    return Credentials(
        ca.public_bytes(pem), leaf.public_bytes(pem),
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()))


def make_ca(host: str, now: datetime.datetime | None = None
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Extensions follow what strict verifiers (Python 3.13, urllib3 >= 2.4, Go) demand; IP
    subtrees are excluded because a DNS-only constraint still lets a CA vouch for IP
    addresses in several of them."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p2pcache"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"p2pcache per-job CA for {host} "
                                                f"{os.urandom(4).hex()}")])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(host)],
                excluded_subtrees=[x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
                                   x509.IPAddress(ipaddress.ip_network("::/0"))]),
                critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(name: str | ipaddress.IPv4Address | ipaddress.IPv6Address,
              ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
              now: datetime.datetime | None = None
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for a DNS name (or, to prove the CA cannot, an IP address)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    san: x509.GeneralName = x509.DNSName(name) if isinstance(name, str) else x509.IPAddress(name)
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(name))]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_private(path: Path, data: bytes, uid: int = -1, gid: int = -1) -> None:
    """A new 0600 file (never through a symlink, never over an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        if uid >= 0:
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


# -- the system files --------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    """Where this machine keeps what interception changes (tests point it elsewhere)."""
    hosts: Path = Path("/etc/hosts")
    ca_dir: Path = Path("/usr/local/share/ca-certificates")
    bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt")
    certs_dir: Path = Path("/etc/ssl/certs")  # where update-ca-certificates links each CA
    update_command: tuple[str, ...] = ("update-ca-certificates",)
    records: Path = Path("/run/p2pcache-intercept")  # this boot's: the processes of a start
    ledger: Path = Path("/var/lib/p2pcache/intercept")  # survives a reboot, as /etc does
    # update-ca-certificates' hooks (Java's, Mono's keystores); None: the machine's, for
    # the machine's store only, so a System pointed elsewhere never runs them.
    hooks_dir: Path | None = None

    @property
    def hooks(self) -> Path | None:
        if self.hooks_dir is not None:
            return self.hooks_dir
        return HOOKS_DIR if self.certs_dir == System.certs_dir else None


HOOKS_DIR = Path("/etc/ca-certificates/update.d")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def redirect_hosts(text: str, host: str, address: str, tag: str) -> str:
    """/etc/hosts with HOST resolving to ADDRESS only: lines that named HOST are commented
    out (they would add addresses; glibc and Go return every match), our line goes last.
    Each change carries the tag, so unredirect_hosts can undo it line by line."""
    out = []
    for line in text.splitlines(keepends=True):
        names = line.split("#", 1)[0].split()[1:]
        if host in (n.lower() for n in names):
            out.append(f"#{tag}#{line}")
        else:
            out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    out.append(f"{address} {host} {MARKER} {tag}\n")
    return "".join(out)


def unredirect_hosts(text: str, tag: str) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n").endswith(f"{MARKER} {tag}"):
            continue
        if line.startswith(f"#{tag}#"):
            line = line[len(tag) + 2:]
        out.append(line)
    return "".join(out)


def read_hosts(path: Path) -> str:
    """Any bytes survive the round trip (surrogateescape), so teardown restores them exactly."""
    return path.read_bytes().decode("utf-8", "surrogateescape")


def hosts_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def write_in_place(path: Path, data: bytes) -> None:
    """In containers /etc/hosts is a bind mount: a rename over it fails (EBUSY)."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Record:
    """What one start changed, written (root only) before the first change."""
    tag: str
    host: str
    address: str
    hosts_before: str
    hosts_after_sha256: str
    ca_file: str
    node_pid: int = 0
    node_start: str = ""
    guardian_pid: int = 0
    guardian_start: str = ""
    uid: int = -1  # whose job: only that user's summary stops the node,
    http: str = ""  # the one given the node's local API (two jobs on one machine differ)
    node_exe: str = ""
    boot_id: str = ""

    def save(self, system: System) -> Path:
        self.boot_id = self.boot_id or boot_id()
        data = json.dumps(self.__dict__, indent=1).encode()
        for directory in (ledger_dir(system), records_dir(system)):
            path = directory / f"{self.tag}.json"
            tmp = path.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            write_private(tmp, data)
            os.replace(tmp, path)
        return record_path(system, self.tag)

    def forget(self, system: System) -> None:
        record_path(system, self.tag).unlink(missing_ok=True)
        (system.ledger / f"{self.tag}.json").unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Record:
        fields = json.loads(path.read_text())
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def node_alive(self) -> bool:
        """The node this start launched still runs: the PID, its start time and its
        executable, all as root recorded them (never a PID the job wrote)."""
        return is_process(self.node_pid, self.node_start, self.node_exe)


def record_path(system: System, tag: str) -> Path:
    return system.records / f"{tag}.json"


def records_dir(system: System) -> Path:
    """The root-only directory of records; refuse one that others could have prepared."""
    return _private_dir(system.records)


def ledger_dir(system: System) -> Path:
    return _private_dir(system.ledger)


def _private_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise InterceptError(f"{path} is not a private directory of this user")
    return path


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class _Lock:
    """One teardown or install at a time (guardian and summary may race)."""

    def __init__(self, system: System) -> None:
        self._path = records_dir(system) / "lock"

    def __enter__(self) -> _Lock:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def trust(record: Record, ca_pem: bytes, system: System) -> float:
    """Put the CA into the system trust store; returns the seconds it took. The record is
    on disk first, so a start that dies half-way can be undone."""
    with _Lock(system):
        record.save(system)
        ca_file = Path(record.ca_file)
        ca_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(ca_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(ca_pem)
        os.chmod(ca_file, 0o644)  # NODE_EXTRA_CA_CERTS is read by the job's user
        start = time.monotonic()
        try:
            _add_to_trust_store(ca_file, record.tag, system)
        except (OSError, subprocess.SubprocessError, InterceptError) as exc:
            print(f"⚠️  Adding the CA to the trust store directly failed ({exc}); running "
                  f"{' '.join(system.update_command)}", file=sys.stderr, flush=True)
            _update_trust_store(system)
        return time.monotonic() - start


def redirect(record: Record, system: System) -> None:
    """Make HOST resolve to the node (after trust(): a client never meets the leaf before
    the CA is trusted)."""
    with _Lock(system):
        # The guardian tears down under this lock: once it has, or the node is gone,
        # redirecting would send the job to a dead node.
        if not record_path(system, record.tag).exists() or (
                record.node_pid and start_time(record.node_pid) != record.node_start):
            raise InterceptError("the node ended before the redirection")
        current = read_hosts(system.hosts)
        record.hosts_before = current
        after = hosts_bytes(redirect_hosts(current, record.host, record.address, record.tag))
        record.hosts_after_sha256 = sha256(after)
        record.save(system)
        write_in_place(system.hosts, after)


def install(record: Record, ca_pem: bytes, system: System) -> float:
    """trust() then redirect()."""
    took = trust(record, ca_pem, system)
    redirect(record, system)
    return took


def _add_to_trust_store(ca_file: Path, tag: str, system: System) -> None:
    """What update-ca-certificates does for one new local CA, without redoing every other
    one (its shell loop over the ~140 system CAs is most of its 1-2.5 s): the link
    certs_dir/TAG.pem to the CA file, the CA appended to the bundle (a new file renamed over
    it, as update-ca-certificates does), OpenSSL's subject-hash link for CApath users, and
    each hook told '+certs_dir/TAG.pem' as update-ca-certificates tells it. Teardown still
    rebuilds the whole store (_undo), so what is left after a job is what
    update-ca-certificates makes."""
    pem = ca_file.read_bytes()
    bundle = system.bundle.read_bytes()  # none: not a store this knows; the slow way
    subject_hash = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(ca_file)],
        capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    if not re.fullmatch(r"[0-9a-f]{8}", subject_hash):
        raise InterceptError(f"openssl gave no subject hash ({subject_hash[:40]!r})")
    link = system.certs_dir / f"{tag}.pem"
    link.unlink(missing_ok=True)
    link.symlink_to(ca_file)
    for n in range(16):  # rehash numbers certificates whose subjects share a hash
        hashed = system.certs_dir / f"{subject_hash}.{n}"
        if not hashed.is_symlink() and not hashed.exists():
            hashed.symlink_to(link.name)
            break
    new = system.bundle.with_name(system.bundle.name + ".new")
    new.unlink(missing_ok=True)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(bundle + (b"\n" if bundle and not bundle.endswith(b"\n") else b"") + pem
                + (b"" if pem.endswith(b"\n") else b"\n"))
    os.chmod(new, 0o644)
    os.replace(new, system.bundle)
    hooks = system.hooks
    for hook in sorted(hooks.iterdir()) if hooks is not None and hooks.is_dir() else ():
        # run-parts' rules: executable regular files with plain names
        if re.fullmatch(r"[A-Za-z0-9_-]+", hook.name) and hook.is_file() \
                and os.access(hook, os.X_OK):
            done = subprocess.run([str(hook)], input=f"+{link}\n", capture_output=True,
                                  text=True, timeout=120)
            if done.returncode != 0:
                print(f"⚠️  {hook} exited with code {done.returncode}", file=sys.stderr)


def _update_trust_store(system: System) -> None:
    result = subprocess.run(list(system.update_command), capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise InterceptError(f"{' '.join(system.update_command)} failed: "
                             f"{(result.stderr or result.stdout).strip()[-300:]}")


def teardown(system: System, only: Callable[[Record], bool] | None = None) -> list[str]:
    """Undo the changes of every record (or of those ONLY selects); returns one line per
    thing undone. Idempotent."""
    done: list[str] = []
    if not system.records.is_dir():
        return done
    with _Lock(system):
        for path in sorted(system.records.glob("*.json")):
            try:
                record = Record.load(path)
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if only is not None and not only(record):
                continue
            done += _undo(record, system)
            record.forget(system)
    return done


_TAG = r"p2pcache-[0-9a-f]{12}"


def leftovers_visible(system: System) -> bool:
    """Something of ours is in /etc (a hosts line, a CA file): readable by anyone, so the
    job's side can tell that root's summary has work even without a state of its own."""
    try:
        hosts = system.hosts.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        hosts = ""
    return MARKER in hosts or any(re.fullmatch(_TAG, p.stem) for p in _our_ca_files(system))


def recover(system: System) -> list[str]:
    """Undo what starts of earlier boots (or whose records /run lost) left in /etc: from
    the ledger first (byte for byte where nothing changed since), then whatever hosts line
    or CA file of ours no live record explains. One line per thing undone."""
    ledger = sorted(system.ledger.glob("*.json")) if system.ledger.is_dir() else []
    if not ledger and not leftovers_visible(system) and not system.records.is_dir():
        return []
    done: list[str] = []
    with _Lock(system):
        this_boot = boot_id()
        live = set()
        for path in sorted(system.records.glob("*.json")):
            try:
                record = Record.load(path)
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if record.boot_id and this_boot and record.boot_id != this_boot:
                done += _undo(record, system)  # a /run that outlived its boot
                record.forget(system)
            else:
                live.add(record.tag)
        for path in ledger:
            try:
                record = Record.load(path)
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if record.tag not in live:
                done += _undo(record, system)
                record.forget(system)
        for record in _unexplained(system, live):
            done += _undo(record, system)
    return done


def _our_ca_files(system: System) -> list[Path]:
    try:
        return [p for p in system.ca_dir.glob("p2pcache-*.crt") if re.fullmatch(_TAG, p.stem)]
    except OSError:
        return []


def _unexplained(system: System, live: set[str]) -> list[Record]:
    """Records rebuilt from /etc alone: our hosts lines carry the tag (and the host), our
    CA files are named by it."""
    try:
        hosts = read_hosts(system.hosts)
    except OSError:
        hosts = ""
    found: dict[str, str] = {}
    for line in hosts.splitlines():
        match = re.search(rf"^\S+\s+(\S+)\s+{re.escape(MARKER)} ({_TAG})$", line) \
            or re.match(rf"^#({_TAG})#", line)
        if match:
            tag = match.group(match.lastindex or 1)
            host = match.group(1) if match.lastindex == 2 else ""
            found[tag] = found.get(tag) or host
    for path in _our_ca_files(system):
        found.setdefault(path.stem, "")
    return [Record(tag=tag, host=host or "the intercepted host", address=LISTEN_ADDRESS,
                   hosts_before="", hosts_after_sha256="",
                   ca_file=str(system.ca_dir / f"{tag}.crt"))
            for tag, host in sorted(found.items()) if tag not in live]


def _undo(record: Record, system: System) -> list[str]:
    done = []
    try:
        current = system.hosts.read_bytes()
    except OSError:
        current = None
    if current is not None:
        if sha256(current) == record.hosts_after_sha256:
            restored = hosts_bytes(record.hosts_before)  # untouched since: byte for byte
        else:
            restored = hosts_bytes(unredirect_hosts(current.decode("utf-8", "surrogateescape"),
                                                    record.tag))
        if restored != current:
            write_in_place(system.hosts, restored)
            done.append(f"{system.hosts}: {record.host} no longer redirected")
    ca_file = Path(record.ca_file)
    if ca_file.exists() or ca_file.is_symlink():
        ca_file.unlink()
        # update-ca-certificates rebuilds the bundle but keeps the links it made for a
        # removed local CA (only --fresh, which redoes every link, drops them): ours go here.
        ours = (str(ca_file), f"{record.tag}.pem")
        for link in system.certs_dir.iterdir() if system.certs_dir.is_dir() else ():
            if link.is_symlink() and os.readlink(link) in ours:
                link.unlink()
        _update_trust_store(system)
        done.append(f"trust store: per-job CA for {record.host} removed")
    return done


# -- processes ---------------------------------------------------------------------------


def start_time(pid: int) -> str:
    """The kernel's start time of PID (field 22 of /proc/PID/stat), '' if it is gone.
    A PID and its start time name one process, even after the PID is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def is_process(pid: int, started: str, exe: str) -> bool:
    """PID is still the process recorded: same start time (which alone names one process
    per boot) and, where root may read it (not in a container without CAP_SYS_PTRACE, for
    another user's process), the same executable."""
    return pid > 1 and bool(started) and start_time(pid) == started \
        and exe_of(pid) in ("", exe)


def is_ours(pid: int, started: str, word: str = "p2pcache") -> bool:
    """PID is still the process we started: same start time, and it runs p2pcache."""
    if pid <= 1 or not started or start_time(pid) != started:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return word.encode() in cmdline


def wait_gone(pid: int, started: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if start_time(pid) != started:
            return True
        time.sleep(0.05)
    return start_time(pid) != started


ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def start_guardian(tag: str, system: System) -> tuple[int, str]:
    """The guardian: `python -I -m p2pcache.intercept guard TAG`, in a session of its own so
    it outlives the step, the node and a kill of the node's process group. Isolated (-I:
    no PYTHON* variables, no user site-packages, not the working directory on sys.path),
    started in /, with an environment of its own."""
    log = os.open(records_dir(system) / f"{tag}.guardian.log",
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "p2pcache.intercept", "guard", tag,
             str(system.records), str(system.ledger)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            cwd="/", env={"PATH": ROOT_PATH, "LANG": "C.UTF-8"})
    finally:
        os.close(log)
    return proc.pid, start_time(proc.pid)


def guard(tag: str, system: System, poll: float = 0.5) -> int:
    """Wait for the node of record TAG to end, then tear the redirection down."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(_finish(system, f"signal {signal.Signals(signum).name}"))

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    path = record_path(system, tag)
    deadline = time.monotonic() + 120  # start writes the node's PID before it needs us
    while True:
        try:
            record = Record.load(path)
        except (OSError, ValueError, TypeError):
            return 0  # torn down already (summary)
        if record.node_pid:
            break
        if time.monotonic() > deadline:
            return _finish(system, "no node was recorded")
        time.sleep(0.1)
    try:
        pidfd = os.pidfd_open(record.node_pid)
    except OSError:
        pidfd = -1
    if start_time(record.node_pid) == record.node_start:
        while path.exists():
            if pidfd >= 0:
                ready = select.select([pidfd], [], [], poll)[0]  # readable when it exits
                if ready:
                    break
            elif start_time(record.node_pid) != record.node_start:
                break
            else:
                time.sleep(poll)
    if not path.exists():
        return 0
    return _finish(system, f"node {record.node_pid} ended", tag)


def _finish(system: System, why: str, tag: str | None = None) -> int:
    """Tear down TAG's record (every record without one), and any whose node is gone."""
    def chosen(record: Record) -> bool:
        return tag is None or record.tag == tag or not record.node_alive()

    for line in teardown(system, chosen):
        print(f"guardian ({why}): {line}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "guard":
        return guard(argv[1], System(records=Path(argv[2]), ledger=Path(argv[3])))
    if len(argv) == 1 and argv[0] == "teardown":
        system = System()
        for line in recover(system):
            print(f"repaired: {line}")
        return _finish(system, "teardown")
    print("usage: python -I -m p2pcache.intercept guard TAG RECORDS_DIR LEDGER_DIR\n"
          "       python -I -m p2pcache.intercept teardown", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
