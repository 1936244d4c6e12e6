"""The per-job CA of transparent mode and the reversible edits it makes (intercept.py).

The CA must be unable to vouch for anything but HOST: a leaf it signs for another name or
for an IP address fails verification, with cryptography's verifier and with openssl.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from p2pcache import intercept

HOST = "api.github.com"
def now() -> datetime.datetime:
    """Read at each use: a suite runs for half an hour after this module is imported."""
    return datetime.datetime.now(datetime.timezone.utc)


def verify(ca: x509.Certificate, leaf: x509.Certificate, name: x509.GeneralName) -> None:
    verifier = PolicyBuilder().store(Store([ca])).time(now()).build_server_verifier(name)
    verifier.verify(leaf, [])


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, object]:
    return intercept.make_ca(HOST)


def test_the_leaf_for_host_verifies_and_carries_what_strict_clients_demand(ca):
    cert, key = ca
    leaf, _ = intercept.make_leaf(HOST, cert, key)
    verify(cert, leaf, x509.DNSName(HOST))
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.DNSName(HOST)]
    assert {str(s.value) for s in constraints.value.excluded_subtrees} == {"0.0.0.0/0", "::/0"}
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]


@pytest.mark.parametrize("name", ["github.com", "evil.example", "api.github.com.evil.example",
                                  "notapi.github.com"])
def test_a_leaf_for_another_name_fails_verification(ca, name):
    cert, key = ca
    leaf, _ = intercept.make_leaf(name, cert, key)
    with pytest.raises(VerificationError):
        verify(cert, leaf, x509.DNSName(name))


@pytest.mark.parametrize("address", ["140.82.112.6", "127.0.0.1", "::1"])
def test_a_leaf_for_an_ip_address_fails_verification(ca, address):
    cert, key = ca
    ip = ipaddress.ip_address(address)
    leaf, _ = intercept.make_leaf(ip, cert, key)
    with pytest.raises(VerificationError):
        verify(cert, leaf, x509.IPAddress(ip))


@pytest.mark.parametrize("name", [HOST, "evil.example", "10.0.0.1"])
def test_openssl_agrees(ca, tmp_path, name):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is a Debian base package; it must be here")
    cert, key = ca
    target = ipaddress.ip_address(name) if name[0].isdigit() else name
    leaf, _ = intercept.make_leaf(target, cert, key)
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    check = ["-verify_ip", name] if name[0].isdigit() else ["-verify_hostname", name]
    result = subprocess.run([openssl, "verify", "-CAfile", str(tmp_path / "ca.pem"), *check,
                             str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert (result.returncode == 0) == (name == HOST), result.stdout + result.stderr


def test_credentials_hold_no_ca_key():
    creds = intercept.make_credentials(HOST)
    assert b"PRIVATE KEY" not in creds.ca_pem + creds.leaf_pem
    assert b"PRIVATE KEY" in creds.leaf_key_pem
    assert "leaf_key_pem" not in repr(creds)


@pytest.mark.parametrize("bad", ["1.2.3.4", "*.github.com", "api github.com", "", "-a.com",
                                 "localhost", "a" * 300 + ".com", "api.github.com/x"])
def test_intercept_host_must_be_a_dns_name(bad):
    with pytest.raises(intercept.InterceptError):
        intercept.check_host(bad)


HOSTS = ("127.0.0.1\tlocalhost\n"
         "::1 localhost ip6-localhost\n"
         "# 1.2.3.4 api.github.com (a comment stays as it is)\n"
         "140.82.112.6 api.github.com\n"
         "140.82.112.3 github.com API.GITHUB.COM # two names\n"
         "10.0.0.1 myapi.github.com")  # no newline at the end


def test_the_hosts_edit_leaves_one_address_and_reverts_byte_for_byte():
    edited = intercept.redirect_hosts(HOSTS, HOST, "127.0.0.43", "p2pcache-t1")
    names = [line.split("#", 1)[0].split() for line in edited.splitlines()]
    matching = [n[0] for n in names if len(n) > 1 and HOST in (x.lower() for x in n[1:])]
    assert matching == ["127.0.0.43"]
    assert "10.0.0.1 myapi.github.com" in edited
    assert intercept.unredirect_hosts(edited, "p2pcache-t1").rstrip("\n") == HOSTS
    # another start's tag is left alone
    assert intercept.unredirect_hosts(edited, "p2pcache-t2") == edited


def _system(tmp_path: Path) -> intercept.System:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    (tmp_path / "certs").mkdir()
    return intercept.System(hosts=hosts, ca_dir=tmp_path / "ca", bundle=tmp_path / "bundle",
                            certs_dir=tmp_path / "certs", update_command=("true",),
                            records=tmp_path / "records", ledger=tmp_path / "ledger")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_install_then_teardown_restores_everything_and_is_idempotent(tmp_path):
    system = _system(tmp_path)
    before = _sha(system.hosts)
    record = intercept.Record(tag="p2pcache-t1", host=HOST, address="127.0.0.43",
                              hosts_before=system.hosts.read_text(), hosts_after_sha256="",
                              ca_file=str(system.ca_dir / "p2pcache-t1.crt"))
    intercept.install(record, b"CA PEM", system)
    assert "127.0.0.43 api.github.com" in system.hosts.read_text()
    assert (system.ca_dir / "p2pcache-t1.crt").stat().st_mode & 0o777 == 0o644
    assert (system.records / "p2pcache-t1.json").stat().st_mode & 0o777 == 0o600
    undone = intercept.teardown(system)
    assert len(undone) == 2
    assert _sha(system.hosts) == before
    assert not (system.ca_dir / "p2pcache-t1.crt").exists()
    assert intercept.teardown(system) == []
    assert _sha(system.hosts) == before


def test_teardown_after_others_edited_hosts_removes_only_our_lines(tmp_path):
    system = _system(tmp_path)
    record = intercept.Record(tag="p2pcache-t1", host=HOST, address="127.0.0.43",
                              hosts_before=system.hosts.read_text(), hosts_after_sha256="",
                              ca_file=str(system.ca_dir / "p2pcache-t1.crt"))
    intercept.install(record, b"CA PEM", system)
    with system.hosts.open("a") as f:
        f.write("192.0.2.7 added-by-the-job\n")
    intercept.teardown(system)
    assert system.hosts.read_text() == HOSTS + "\n192.0.2.7 added-by-the-job\n"


def test_teardown_after_a_half_done_start(tmp_path):
    """The record is on disk before the first change: a start that died right after it
    leaves nothing to undo, and teardown says so without touching the files."""
    system = _system(tmp_path)
    before = _sha(system.hosts)
    intercept.records_dir(system)
    intercept.Record(tag="p2pcache-t1", host=HOST, address="127.0.0.43",
                     hosts_before=HOSTS, hosts_after_sha256="",
                     ca_file=str(system.ca_dir / "p2pcache-t1.crt")).save(system)
    assert intercept.teardown(system) == []
    assert _sha(system.hosts) == before
    assert not list(system.records.glob("*.json"))


def test_a_records_dir_others_can_write_is_refused(tmp_path):
    system = _system(tmp_path)
    system.records.mkdir(mode=0o777)
    system.records.chmod(0o777)
    with pytest.raises(intercept.InterceptError):
        intercept.records_dir(system)
    system.records.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    system.records.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(intercept.InterceptError):
        intercept.records_dir(system)


def test_a_hosts_file_that_is_not_utf8_comes_back_byte_for_byte(tmp_path):
    system = _system(tmp_path)
    system.hosts.write_bytes(b"127.0.0.1 localhost\n10.0.0.9 caf\xe9-latin1\n")
    before = _sha(system.hosts)
    record = intercept.Record(tag="p2pcache-t1", host=HOST, address="127.0.0.43",
                              hosts_before="", hosts_after_sha256="",
                              ca_file=str(system.ca_dir / "p2pcache-t1.crt"))
    intercept.install(record, b"CA PEM", system)
    assert b"127.0.0.43 api.github.com" in system.hosts.read_bytes()
    intercept.teardown(system)
    assert _sha(system.hosts) == before


def test_the_ip_exclusion_is_what_stops_an_ip_leaf():
    """The control: a CA constrained to the DNS name alone still vouches for an address
    (RFC 5280 constrains only the name types listed), which is why IPs are excluded."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dns-only")])
    loose = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now() - datetime.timedelta(hours=1))
             .not_valid_after(now() + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
             .add_extension(x509.NameConstraints([x509.DNSName(HOST)], None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                            critical=False)
             .sign(key, hashes.SHA256()))
    ip = ipaddress.ip_address("140.82.112.6")
    leaf, _ = intercept.make_leaf(ip, loose, key)
    verify(loose, leaf, x509.IPAddress(ip))  # accepted: the hole the exclusion closes


def test_a_bad_intercept_host_is_one_line_and_exit_2(capsys):
    from p2pcache import cli

    assert cli.main(["actions", "start", "--transparent", "--intercept", "10.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--intercept" in err


# -- the trust store: one CA added without rebuilding the rest ----------------------------

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _store(tmp_path: Path, bundle: bytes) -> intercept.System:
    """A trust store like Debian's, in tmp_path, with a hook that writes down its stdin."""
    system = _system(tmp_path)
    system.bundle.write_bytes(bundle)
    hooks = tmp_path / "update.d"
    hooks.mkdir()
    hook = hooks / "record-stdin"
    hook.write_text(f"#!/bin/sh\ncat >> {tmp_path / 'hook-stdin'}\n")
    hook.chmod(0o755)
    skipped = hooks / "not.run"  # run-parts runs no name with a dot
    skipped.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    skipped.chmod(0o755)
    (tmp_path / "update-ran").unlink(missing_ok=True)
    return dataclasses.replace(system, update_command=("touch", str(tmp_path / "update-ran")),
                               hooks_dir=hooks)


def _record(system: intercept.System, tag: str = "p2pcache-t1") -> intercept.Record:
    return intercept.Record(tag=tag, host=HOST, address="127.0.0.43", hosts_before="",
                            hosts_after_sha256="", ca_file=str(system.ca_dir / f"{tag}.crt"))


def test_the_ca_is_added_as_update_ca_certificates_would_without_running_it(tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is a Debian base package; it must be here"
    before = SYSTEM_CA.read_bytes() if SYSTEM_CA.exists() else b""
    system = _store(tmp_path, before)
    creds = intercept.make_credentials(HOST)
    intercept.trust(_record(system), creds.ca_pem, system)
    assert not (tmp_path / "update-ran").exists(), "no full rebuild on the way in"
    assert system.bundle.read_bytes() == before + creds.ca_pem
    assert system.bundle.stat().st_mode & 0o777 == 0o644
    link = system.certs_dir / "p2pcache-t1.pem"
    assert link.is_symlink() and Path(os.readlink(link)) == system.ca_dir / "p2pcache-t1.crt"
    assert (tmp_path / "hook-stdin").read_text() == f"+{link}\n"
    assert not (tmp_path / "ran").exists()
    (tmp_path / "leaf.pem").write_bytes(creds.leaf_pem)
    for where in (["-CAfile", str(system.bundle)], ["-CApath", str(system.certs_dir)]):
        verified = subprocess.run([openssl, "verify", *where, "-verify_hostname", HOST,
                                   str(tmp_path / "leaf.pem")], capture_output=True, text=True)
        assert verified.returncode == 0, (where, verified.stdout + verified.stderr)
    # The subject-hash link is the one `openssl rehash` makes for it.
    ours = sorted(p.name for p in system.certs_dir.iterdir())
    for p in system.certs_dir.iterdir():
        if p.name != link.name:
            p.unlink()
    subprocess.run([openssl, "rehash", str(system.certs_dir)], check=True, capture_output=True)
    assert sorted(p.name for p in system.certs_dir.iterdir()) == ours


def test_a_planted_temporary_bundle_is_replaced_not_written_through(tmp_path):
    system = _store(tmp_path, b"-----BEGIN CERTIFICATE-----\nno newline at the end")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    system.bundle.with_name(system.bundle.name + ".new").symlink_to(victim)
    creds = intercept.make_credentials(HOST)
    intercept.trust(_record(system), creds.ca_pem, system)
    assert victim.read_text() == "untouched"
    assert system.bundle.read_bytes() == (b"-----BEGIN CERTIFICATE-----\nno newline at the end\n"
                                          + creds.ca_pem)


def test_a_store_it_does_not_know_gets_the_full_rebuild(tmp_path):
    system = _store(tmp_path, b"")
    system.bundle.unlink()  # no bundle where the store should have one
    intercept.trust(_record(system), intercept.make_credentials(HOST).ca_pem, system)
    assert (tmp_path / "update-ran").exists()


def test_the_machines_hooks_run_only_for_the_machines_store(tmp_path):
    assert intercept.System().hooks == Path("/etc/ca-certificates/update.d")
    assert _system(tmp_path).hooks is None


# -- after a reboot (issue 21, finding 3) and whose node a record names (finding 9) --------


def _installed(system: intercept.System, tag: str = "p2pcache-0123456789ab",
               **fields: object) -> intercept.Record:
    record = intercept.Record(tag=tag, host=HOST, address="127.0.0.43",
                              hosts_before=system.hosts.read_text(), hosts_after_sha256="",
                              ca_file=str(system.ca_dir / f"{tag}.crt"), **fields)
    intercept.install(record, b"CA PEM", system)
    return record


def test_a_lost_run_is_repaired_from_the_ledger_byte_for_byte(tmp_path):
    system = _system(tmp_path)
    before = _sha(system.hosts)
    _installed(system)
    assert (system.ledger / "p2pcache-0123456789ab.json").exists()
    for path in system.records.glob("*.json"):  # /run is gone (a reboot)
        path.unlink()
    undone = intercept.recover(system)
    assert undone == [f"{system.hosts}: {HOST} no longer redirected",
                      f"trust store: per-job CA for {HOST} removed"]
    assert _sha(system.hosts) == before
    assert not list(system.ca_dir.iterdir()) and not list(system.ledger.iterdir())
    assert intercept.recover(system) == []


def test_leftovers_no_record_explains_are_found_in_etc_itself(tmp_path):
    """The ledger lost too (or a start of a version before it): our tagged hosts lines and
    CA files are enough to undo what they did."""
    system = _system(tmp_path)
    _installed(system)
    shutil.rmtree(system.ledger)
    shutil.rmtree(system.records)
    with system.hosts.open("a") as f:
        f.write("192.0.2.7 added-later\n")
    assert intercept.leftovers_visible(system)
    undone = intercept.recover(system)
    assert undone == [f"{system.hosts}: {HOST} no longer redirected",
                      f"trust store: per-job CA for {HOST} removed"]
    assert system.hosts.read_text() == HOSTS + "\n192.0.2.7 added-later\n"
    assert not intercept.leftovers_visible(system)


def test_a_live_start_is_not_a_leftover(tmp_path):
    system = _system(tmp_path)
    _installed(system)
    assert intercept.recover(system) == []  # its record is in /run: a job still runs
    assert "127.0.0.43 api.github.com" in system.hosts.read_text()


def test_a_record_of_another_boot_is_a_leftover(tmp_path):
    system = _system(tmp_path)
    _installed(system, boot_id="another-boot")
    assert len(intercept.recover(system)) == 2
    assert "127.0.0.43" not in system.hosts.read_text()


def test_teardown_takes_only_the_records_chosen(tmp_path):
    system = _system(tmp_path)
    _installed(system, uid=1001)
    assert intercept.teardown(system, lambda record: record.uid == 1002) == []
    assert "127.0.0.43" in system.hosts.read_text()
    assert len(intercept.teardown(system, lambda record: record.uid == 1001)) == 2


def test_a_recorded_node_is_known_by_pid_start_time_and_executable():
    import os
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid, started = child.pid, intercept.start_time(child.pid)
        exe = intercept.exe_of(pid)
        assert exe == os.path.realpath(sys.executable)
        assert intercept.Record("t", HOST, "", "", "", "", node_pid=pid, node_start=started,
                                node_exe=exe).node_alive()
        for wrong in ({"node_exe": "/usr/bin/sleep"}, {"node_start": "1"}, {"node_pid": 1}):
            fields = {"node_pid": pid, "node_start": started, "node_exe": exe, **wrong}
            assert not intercept.Record("t", HOST, "", "", "", "", **fields).node_alive()
    finally:
        child.kill()
        child.wait()
