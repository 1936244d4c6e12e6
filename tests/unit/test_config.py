"""Unit tests for p2pcache.config.load: flags, environment, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pcache.config import (
    DEFAULT_HTTP,
    DEFAULT_PORT,
    DEFAULT_TTL,
    DEFAULT_UPSTREAM,
    BootstrapPeer,
    ConfigError,
    Settings,
    default_data_dir,
    load,
    parse_bootstrap,
    parse_peer_list,
    split_peers,
)


def new_peer_id() -> str:
    return str(ID.from_pubkey(create_new_key_pair().public_key))


PID1, PID2, PID3 = new_peer_id(), new_peer_id(), new_peer_id()
ADDR1 = f"/ip4/203.0.113.7/tcp/9100/p2p/{PID1}"
ADDR2 = f"/ip6/2001:db8::1/tcp/4001/p2p/{PID2}"
ADDR3 = f"/dns4/cache.example.com/tcp/9100/p2p/{PID3}"


def cfg(flags=None, env=None, **kw) -> Settings:
    return load(flags or {}, env or {}, need_data_dir=kw.pop("need_data_dir", False))


def test_defaults():
    s = cfg()
    assert s.port == DEFAULT_PORT == 9100
    assert s.listen_host == "0.0.0.0"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 9180)
    assert DEFAULT_HTTP == "127.0.0.1:9180"
    assert s.bootstrap == () and s.bootstrap_rejected == ()
    assert s.data_dir == default_data_dir()
    assert s.upstream == DEFAULT_UPSTREAM == "https://api.github.com"
    assert s.announce is None
    assert s.upnp is False
    assert s.ttl == DEFAULT_TTL == 60.0
    assert s.token is None and s.secret is None
    assert s.namespace == "default"
    assert s.peer_timeout == 5.0
    assert s.peer_silence == 20.0
    assert s.max_bytes == 512 * 1024 * 1024
    assert s.upstream_concurrency == 25
    assert s.http_base == "http://127.0.0.1:9180"


def test_flags_none_mean_not_given():
    flags = dict.fromkeys(["port", "listen_host", "http", "bootstrap", "data_dir", "upstream",
                           "announce", "upnp", "ttl", "peer_timeout", "max_bytes"])
    assert cfg(flags) == cfg()


# (flag name, env var, flag value, env value, attribute, expected from flag, from env)
PAIRS = [
    ("port", "P2P_CACHE_PORT", "9200", "9300", "port", 9200, 9300),
    ("listen_host", "P2P_CACHE_LISTEN_HOST", "10.0.0.1", "10.0.0.2", "listen_host",
     "10.0.0.1", "10.0.0.2"),
    ("http", "P2P_CACHE_HTTP", "0.0.0.0:8001", "127.0.0.1:8002", "http_port", 8001, 8002),
    ("upstream", "GITHUB_API_URL", "https://ghe.example/api/v3/", "http://127.0.0.1:1",
     "upstream", "https://ghe.example/api/v3", "http://127.0.0.1:1"),
    ("announce", "P2P_CACHE_ANNOUNCE", "198.51.100.1", "/ip4/198.51.100.2/tcp/9100",
     "announce", "198.51.100.1", "/ip4/198.51.100.2/tcp/9100"),
    ("ttl", "P2P_CACHE_TTL", "30", "90.5", "ttl", 30.0, 90.5),
    ("peer_timeout", "P2P_CACHE_PEER_TIMEOUT", "1.5", "7", "peer_timeout", 1.5, 7.0),
    ("max_bytes", "P2P_CACHE_MAX_BYTES", "1000", "2000", "max_bytes", 1000, 2000),
    ("upstream_concurrency", "P2P_CACHE_UPSTREAM_CONCURRENCY", "1", "100",
     "upstream_concurrency", 1, 100),
    ("data_dir", "P2P_CACHE_DATA_DIR", "/tmp/flagdir", "/tmp/envdir", "data_dir",
     Path("/tmp/flagdir"), Path("/tmp/envdir")),
    ("bootstrap", "MCP_P2P_BOOTSTRAP_PEERS", [ADDR1], ADDR2, "bootstrap",
     (BootstrapPeer(ADDR1, PID1),), (BootstrapPeer(ADDR2, PID2),)),
    ("not_before", "P2P_CACHE_NOT_BEFORE", "1714564800", "1714564801.5", "not_before",
     1714564800.0, 1714564801.5),
]


@pytest.mark.parametrize("value", ["yesterday", "-3", "nan", "9999999999999"])
def test_a_bad_not_before_is_one_line(value):
    with pytest.raises(ConfigError, match="P2P_CACHE_NOT_BEFORE"):
        cfg({}, {"P2P_CACHE_NOT_BEFORE": value})


@pytest.mark.parametrize("flag,var,fval,evalue,attr,from_flag,from_env", PAIRS,
                         ids=[p[0] for p in PAIRS])
def test_env_var_is_read(flag, var, fval, evalue, attr, from_flag, from_env):
    assert getattr(cfg({}, {var: evalue}), attr) == from_env


@pytest.mark.parametrize("flag,var,fval,evalue,attr,from_flag,from_env", PAIRS,
                         ids=[p[0] for p in PAIRS])
def test_flag_beats_env(flag, var, fval, evalue, attr, from_flag, from_env):
    assert getattr(cfg({flag: fval}, {var: evalue}), attr) == from_flag


def test_http_sets_host_too():
    s = cfg({"http": "0.0.0.0:8001"})
    assert (s.http_host, s.http_port) == ("0.0.0.0", 8001)
    assert s.http_base == "http://127.0.0.1:8001"
    s = cfg({}, {"P2P_CACHE_HTTP": "[::1]:8003"})
    assert (s.http_host, s.http_port) == ("::1", 8003)
    assert s.http_base == "http://[::1]:8003"


def test_flag_beats_invalid_env():
    assert cfg({"port": 9200}, {"P2P_CACHE_PORT": "junk"}).port == 9200


def test_upnp():
    assert cfg({"upnp": True}, {"P2P_CACHE_UPNP": "0"}).upnp is True
    for value in ("1", "true", "YES", " on "):
        assert cfg({}, {"P2P_CACHE_UPNP": value}).upnp is True
    for value in ("0", "false", "no", "", "maybe"):
        assert cfg({}, {"P2P_CACHE_UPNP": value}).upnp is False


def test_empty_env_values_mean_default():
    env = {"P2P_CACHE_PORT": "", "P2P_CACHE_TTL": "", "P2P_CACHE_HTTP": "",
           "P2P_CACHE_MAX_BYTES": "", "P2P_CACHE_PEER_TIMEOUT": "", "GITHUB_API_URL": "",
           "P2P_CACHE_ANNOUNCE": "", "P2P_CACHE_LISTEN_HOST": "", "GH_TOKEN": ""}
    assert cfg({}, env) == cfg()


# -- bootstrap peers ----------------------------------------------------------------------

@pytest.mark.parametrize("sep", [",", " ", "\n", ", ", " ,\n\t", "\r\n"])
def test_bootstrap_separators(sep):
    s = cfg({}, {"MCP_P2P_BOOTSTRAP_PEERS": f"  {ADDR1}{sep}{ADDR2}{sep}{ADDR3}{sep} "})
    assert s.bootstrap == (BootstrapPeer(ADDR1, PID1), BootstrapPeer(ADDR2, PID2),
                           BootstrapPeer(ADDR3, PID3))
    assert s.bootstrap_rejected == ()


def test_split_peers():
    assert split_peers(" a, b\nc  d,,\n") == ["a", "b", "c", "d"]
    assert split_peers("") == [] and split_peers(" ,\n ") == []


def test_bootstrap_flags_may_hold_several_each():
    s = cfg({"bootstrap": [f"{ADDR1},{ADDR2}", ADDR3]}, {"MCP_P2P_BOOTSTRAP_PEERS": ADDR1})
    assert [p.peer_id for p in s.bootstrap] == [PID1, PID2, PID3]


def test_bootstrap_duplicates_dropped():
    s = cfg({}, {"MCP_P2P_BOOTSTRAP_PEERS": f"{ADDR1},{ADDR1} {ADDR2}"})
    assert s.bootstrap == (BootstrapPeer(ADDR1, PID1), BootstrapPeer(ADDR2, PID2))


def test_one_bad_entry_rejected_good_ones_kept():
    bad = "/ip4/203.0.113.9/tcp/notaport/p2p/" + PID3
    s = cfg({}, {"MCP_P2P_BOOTSTRAP_PEERS": f"{ADDR1}, {bad}, {ADDR2}"})
    assert s.bootstrap == (BootstrapPeer(ADDR1, PID1), BootstrapPeer(ADDR2, PID2))
    assert len(s.bootstrap_rejected) == 1
    assert repr(bad) in s.bootstrap_rejected[0]
    assert "not a multiaddr" in s.bootstrap_rejected[0]


@pytest.mark.parametrize("entry,reason", [
    ("/ip4/203.0.113.9/tcp/9100", "no /p2p/"),
    (f"/ip4/203.0.113.9/udp/9100/p2p/{PID1}", "no /tcp/"),
    (f"/tcp/9100/p2p/{PID1}", "no /ip4, /ip6 or /dns"),
    ("garbage", "not a multiaddr"),
    ("/ip4/203.0.113.9/tcp/9100/p2p/notapeerid", "not a multiaddr"),
    (f"/ip4/999.0.0.1/tcp/9100/p2p/{PID1}", "not a multiaddr"),
])
def test_rejected_entries(entry, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_bootstrap(entry)
    s = cfg({}, {"MCP_P2P_BOOTSTRAP_PEERS": f"{entry} {ADDR1}"})
    assert s.bootstrap == (BootstrapPeer(ADDR1, PID1),)
    assert len(s.bootstrap_rejected) == 1
    assert s.bootstrap_rejected[0].startswith(repr(entry) + ": ")
    assert reason in s.bootstrap_rejected[0]


def test_parse_bootstrap_peer_id():
    assert parse_bootstrap(ADDR3) == BootstrapPeer(ADDR3, PID3)


# -- a list to publish (p2pcache publish --multiaddr LIST) ---------------------------------

@pytest.mark.parametrize("sep", [",", ", ", " , ", "\n", " ", "\r\n", ",\n", "\n\n"])
def test_a_list_to_publish_keeps_its_order_and_drops_duplicates(sep):
    value = f"\n {ADDR2}{sep}{ADDR1}{sep}{ADDR2}{sep}{ADDR3}\n"
    assert parse_peer_list(value) == [ADDR2, ADDR1, ADDR3]
    assert parse_peer_list(ADDR1) == [ADDR1]
    # ... and what is published reads back as the same peers on a node.
    node = cfg({}, {"MCP_P2P_BOOTSTRAP_PEERS": ",".join(parse_peer_list(value))})
    assert [p.peer_id for p in node.bootstrap] == [PID2, PID1, PID3]


@pytest.mark.parametrize("value,reason", [
    ("", "no multiaddr in it"),
    (" \n, ", "entry 1 is empty"),
    (f"{ADDR1},,{ADDR2}", "entry 2 is empty"),
    (f"{ADDR1} , , {ADDR2}", "entry 2 is empty"),
    (f",{ADDR1}", "entry 1 is empty"),
    (f"{ADDR1},", "entry 2 is empty"),
    (f"{ADDR1},garbage", "entry 2 'garbage': not a multiaddr"),
    (f"{ADDR1}\n/ip4/203.0.113.9/tcp/9100", "entry 2 '/ip4/203.0.113.9/tcp/9100': no /p2p/"),
    (f"{ADDR1} /ip4/203.0.113.9/udp/9100/p2p/{PID2}", "entry 2 "),
    (f"{ADDR1},/dns4/a\x1b[31mb/tcp/9100/p2p/{PID2}", "entry 2 is no multiaddr (control"),
    (f"{ADDR1}\x00,{ADDR2}", "entry 1 is no multiaddr (control"),
    (f"/dns4/{'a' * 600}.example/tcp/9100/p2p/{PID1}", "over 512 characters"),
    (",".join([ADDR1] * 1000), "over GitHub's limit of 49152"),
    ("x" * 10_000_000, "10000000 bytes, over GitHub's limit"),
])
def test_a_list_to_publish_with_any_bad_entry_is_refused(value, reason):
    """Where the node skips a bad entry, publishing one is refused, naming it."""
    with pytest.raises(ValueError, match=re.escape(reason)) as raised:
        parse_peer_list(value)
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)


def test_a_list_up_to_githubs_limit_is_accepted():
    many = [f"/ip4/203.0.{n // 256}.{n % 256}/tcp/9100/p2p/{PID1}" for n in range(1000)]
    while len(",".join(many)) > 48 * 1024:
        many.pop()
    assert len(",".join(many)) > 48 * 1024 - 100
    assert parse_peer_list(",".join(many)) == many
    with pytest.raises(ValueError, match="over GitHub's limit"):
        parse_peer_list(",".join([*many, ADDR1]))


# -- bad values ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "70000", "abc", "-1", "65536", "1.5", " "])
def test_bad_port_env(value):
    with pytest.raises(ConfigError) as info:
        cfg({}, {"P2P_CACHE_PORT": value})
    message = str(info.value)
    assert "P2P_CACHE_PORT" in message
    assert repr(value) in message


@pytest.mark.parametrize("value", [0, 70000, "abc"])
def test_bad_port_flag(value):
    with pytest.raises(ConfigError) as info:
        cfg({"port": value}, {"P2P_CACHE_PORT": "9100"})
    message = str(info.value)
    assert "--port" in message and "P2P_CACHE_PORT" not in message
    assert str(value) in message


@pytest.mark.parametrize("value", ["1", "65535"])
def test_port_bounds_ok(value):
    assert cfg({}, {"P2P_CACHE_PORT": value}).port == int(value)


@pytest.mark.parametrize("value", ["nocolon", ":9180"])
def test_bad_http(value):
    with pytest.raises(ConfigError) as info:
        cfg({"http": value})
    assert str(info.value).startswith(f"invalid --http={value!r}: ")
    with pytest.raises(ConfigError) as info:
        cfg({}, {"P2P_CACHE_HTTP": value})
    assert str(info.value).startswith(f"invalid P2P_CACHE_HTTP={value!r}: ")


@pytest.mark.parametrize("value", ["127.0.0.1:", "127.0.0.1:0", "127.0.0.1:99999", "host:abc", "[::1]", "[::1]:"])
def test_bad_http_port_is_a_config_error(value):
    with pytest.raises(ConfigError, match="--http"):
        cfg({"http": value})
    with pytest.raises(ConfigError, match="P2P_CACHE_HTTP"):
        cfg({}, {"P2P_CACHE_HTTP": value})


@pytest.mark.parametrize("value", ["127.0.0.1:", "127.0.0.1:0", "127.0.0.1:99999", "host:abc", "[::1]", "[::1]:"])
def test_bad_http_port_message_shows_the_whole_value(value):
    with pytest.raises(ConfigError) as info:
        cfg({}, {"P2P_CACHE_HTTP": value})
    assert f"P2P_CACHE_HTTP={value!r}" in str(info.value)


@pytest.mark.parametrize("value", ["ftp://api.github.com", "api.github.com", "https://",
                                   "file:///etc/passwd", "//api.github.com"])
def test_bad_upstream(value):
    with pytest.raises(ConfigError) as info:
        cfg({"upstream": value})
    assert "--upstream" in str(info.value)
    with pytest.raises(ConfigError, match="GITHUB_API_URL"):
        cfg({}, {"GITHUB_API_URL": value})


@pytest.mark.parametrize("flag,var", [("ttl", "P2P_CACHE_TTL"),
                                      ("peer_timeout", "P2P_CACHE_PEER_TIMEOUT"),
                                      ("max_bytes", "P2P_CACHE_MAX_BYTES")])
@pytest.mark.parametrize("value", ["0", "-5", "abc"])
def test_bad_positive_numbers(flag, var, value):
    with pytest.raises(ConfigError) as info:
        cfg({}, {var: value})
    assert var in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["0", "101", "-1", "2.5", "lots", "²", " ", "1e2"])
def test_bad_upstream_concurrency(value):
    for flags, env, name in (({"upstream_concurrency": value}, {}, "--upstream-concurrency"),
                             ({}, {"P2P_CACHE_UPSTREAM_CONCURRENCY": value},
                              "P2P_CACHE_UPSTREAM_CONCURRENCY")):
        if not value.strip() and not flags:
            continue  # an empty variable means the default
        with pytest.raises(ConfigError) as info:
            cfg(flags, env)
        assert name in str(info.value) and repr(value) in str(info.value)
        assert "1 to 100" in str(info.value)


def test_peer_silence_from_the_environment():
    assert cfg({}, {"P2P_CACHE_PEER_SILENCE": "4.5"}).peer_silence == 4.5
    for value in ("0", "-1", "abc", "nan", "inf"):
        with pytest.raises(ConfigError) as info:
            cfg({}, {"P2P_CACHE_PEER_SILENCE": value})
        assert str(info.value).startswith(f"invalid P2P_CACHE_PEER_SILENCE={value!r}: ")


@pytest.mark.parametrize("var,value", [("P2P_CACHE_TTL", "nan"),
                                       ("P2P_CACHE_PEER_TIMEOUT", "nan"),
                                       ("P2P_CACHE_MAX_BYTES", "nan"),
                                       ("P2P_CACHE_MAX_BYTES", "inf")])
def test_non_finite_numbers_rejected(var, value):
    with pytest.raises(ConfigError, match=var):
        cfg({}, {var: value})


@pytest.mark.parametrize("value", ["not-an-ip", "1.2.3.4.5", "/nope/1"])
def test_bad_announce(value):
    with pytest.raises(ConfigError, match="P2P_CACHE_ANNOUNCE"):
        cfg({}, {"P2P_CACHE_ANNOUNCE": value})


@pytest.mark.parametrize("value", ["2001:db8::5", "/dns4/node.example/tcp/9100"])
def test_good_announce(value):
    assert cfg({"announce": value}).announce == value


# -- secrets and namespace ----------------------------------------------------------------

def test_gh_token_wins_over_github_token():
    s = cfg({}, {"GH_TOKEN": "gh-tok", "GITHUB_TOKEN": "github-tok"})
    assert s.token == "gh-tok"
    assert cfg({}, {"GITHUB_TOKEN": "github-tok"}).token == "github-tok"
    assert cfg({}, {"GH_TOKEN": "", "GITHUB_TOKEN": "github-tok"}).token == "github-tok"


def test_secret_from_env_else_token():
    assert cfg({}, {"P2P_CACHE_SECRET": "fleet", "GH_TOKEN": "tok"}).secret == "fleet"
    assert cfg({}, {"GH_TOKEN": "tok"}).secret == "tok"
    assert cfg({}, {"GITHUB_TOKEN": "tok2"}).secret == "tok2"
    assert cfg({}, {"P2P_CACHE_SECRET": "fleet"}).token is None


def test_namespace():
    assert cfg({}, {"IPFS_ACCELERATE_GITHUB_REPO": "a/b", "GITHUB_REPOSITORY": "c/d"}) \
        .namespace == "a/b"
    assert cfg({}, {"GITHUB_REPOSITORY": "c/d"}).namespace == "c/d"
    assert cfg({}, {"IPFS_ACCELERATE_GITHUB_REPO": "", "GITHUB_REPOSITORY": "c/d"}) \
        .namespace == "c/d"


def test_repr_never_shows_token_or_secret():
    s = cfg({}, {"GH_TOKEN": "ghp_SUPERsecretTOKEN123", "P2P_CACHE_SECRET": "fleet-SECRET-42"})
    assert s.token == "ghp_SUPERsecretTOKEN123"
    for text in (repr(s), str(s), f"{s}", f"{s!r}"):
        assert "ghp_SUPERsecretTOKEN123" not in text
        assert "fleet-SECRET-42" not in text
        assert "namespace=" in text  # it is the real dataclass repr
    s2 = cfg({}, {"GITHUB_TOKEN": "ghp_ONLYtoken"})
    assert "ghp_ONLYtoken" not in repr(s2)


# -- data dir -----------------------------------------------------------------------------

def test_data_dir_created(tmp_path):
    target = tmp_path / "a" / "b"
    s = load({"data_dir": str(target)}, {}, need_data_dir=True)
    assert s.data_dir == target and target.is_dir()


def test_data_dir_not_checked_when_not_needed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = load({"data_dir": str(blocker / "sub")}, {}, need_data_dir=False)
    assert s.data_dir == blocker / "sub"


def test_data_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load({}, {"P2P_CACHE_DATA_DIR": "~/cache"}, need_data_dir=True)
    assert s.data_dir == tmp_path / "cache"
    assert s.data_dir.is_dir()


def test_unwritable_data_dir_flag(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as info:
        load({"data_dir": str(blocker / "sub")}, {}, need_data_dir=True)
    assert "--data-dir" in str(info.value)
    assert str(blocker / "sub") in str(info.value)
    assert "cannot create it" in str(info.value)


def test_unwritable_data_dir_env(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="P2P_CACHE_DATA_DIR"):
        load({}, {"P2P_CACHE_DATA_DIR": str(blocker / "sub")}, need_data_dir=True)


def test_data_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="--data-dir"):
        load({"data_dir": str(blocker)}, {}, need_data_dir=True)


def test_refresh_ahead_on_for_servers_off_for_runners_by_default():
    assert cfg().refresh_ahead is True
    assert cfg(env={"MCP_P2P_BOOTSTRAP_PEERS": ADDR1}).refresh_ahead is False


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True),
                                             ("0", False), ("no", False), ("off", False)])
def test_refresh_ahead_from_env(value, expected):
    assert cfg(env={"P2P_CACHE_REFRESH_AHEAD": value}).refresh_ahead is expected
    runner = {"P2P_CACHE_REFRESH_AHEAD": value, "MCP_P2P_BOOTSTRAP_PEERS": ADDR1}
    assert cfg(env=runner).refresh_ahead is expected


def test_refresh_ahead_flag_beats_env():
    assert cfg({"refresh_ahead": False}, {"P2P_CACHE_REFRESH_AHEAD": "1"}).refresh_ahead is False
    assert cfg({"refresh_ahead": True}, {"P2P_CACHE_REFRESH_AHEAD": "0"}).refresh_ahead is True


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_bad_refresh_ahead_is_a_config_error(value):
    with pytest.raises(ConfigError, match=f"P2P_CACHE_REFRESH_AHEAD={value!r}"):
        cfg(env={"P2P_CACHE_REFRESH_AHEAD": value})


def test_webhooks_are_off_by_default():
    settings = cfg()
    assert settings.webhook is None and settings.webhook_secret is None


def test_webhook_from_flag_or_env_with_its_secret():
    env = {"P2P_CACHE_WEBHOOK_SECRET": "s3cret"}
    assert cfg({"webhook": "127.0.0.1:9300"}, env).webhook == ("127.0.0.1", 9300)
    settings = cfg(env={**env, "P2P_CACHE_WEBHOOK": "[::1]:9300"})
    assert settings.webhook == ("::1", 9300) and settings.webhook_secret == b"s3cret"
    assert cfg({"webhook": "0.0.0.0:1"}, {**env, "P2P_CACHE_WEBHOOK": "x:2"}).webhook == \
        ("0.0.0.0", 1)


@pytest.mark.parametrize("flags,env", [
    ({"webhook": "127.0.0.1:9300"}, {}),
    ({}, {"P2P_CACHE_WEBHOOK": "127.0.0.1:9300"}),
    ({}, {"P2P_CACHE_WEBHOOK": "127.0.0.1:9300", "P2P_CACHE_WEBHOOK_SECRET": ""}),
])
def test_a_webhook_without_its_secret_is_a_config_error_naming_the_variable(flags, env):
    with pytest.raises(ConfigError, match="P2P_CACHE_WEBHOOK_SECRET"):
        cfg(flags, env)


@pytest.mark.parametrize("value", ["9300", "host", ":9300", "h:0", "h:65536", "h:x"])
def test_a_bad_webhook_address_is_a_config_error(value):
    with pytest.raises(ConfigError, match="P2P_CACHE_WEBHOOK"):
        cfg(env={"P2P_CACHE_WEBHOOK": value, "P2P_CACHE_WEBHOOK_SECRET": "s"})


def test_the_webhook_secret_is_never_in_the_settings_repr():
    settings = cfg(env={"P2P_CACHE_WEBHOOK": "127.0.0.1:9300",
                        "P2P_CACHE_WEBHOOK_SECRET": "do-not-print-me"})
    assert "do-not-print-me" not in repr(settings)
