"""Configuration: every variable is validated with a message naming it; flags override env."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from realtime_app import Config, ConfigError, load_config
from realtime_app.__main__ import main

from .conftest import SECRET

pytestmark = pytest.mark.timeout(30)

ALL_VARS = (
    "HOST", "PORT", "FRONTEND_URL", "JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "JWT_ALGORITHMS",
    "JWT_AUDIENCE", "JWT_ISSUER", "API_KEY", "REDIS_URL", "REDIS_PREFIX", "PING_INTERVAL",
    "PING_TIMEOUT", "UPGRADE_TIMEOUT", "MAX_HTTP_BUFFER_SIZE", "LOG_LEVEL", "LOG_FORMAT",
    "DEBUG_EVENTS", "RATE_LIMIT_PRIVATE_MESSAGE", "RATE_LIMIT_MUSIC_SYNC",
    "RATE_LIMIT_JOIN_ROOM", "RATE_LIMIT_DEFAULT", "MAX_ROOMS_PER_SOCKET", "BANNED_WORDS",
    "MAX_STORED_MESSAGES", "ANOMALY_CONNECTIONS_PER_MINUTE", "ANOMALY_MESSAGES_PER_MINUTE",
    "WEB_DIR", "DEV_MODE", "JWT_LEEWAY", "MAX_SOCKETS_PER_USER", "METRICS_TOKEN",
)


def public_pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_pem() -> bytes:
    return public_pem(ec.generate_private_key(ec.SECP256R1()))


def load(env: dict[str, str], argv: list[str] | None = None) -> Config:
    return load_config(argv or [], env)


# ---------------------------------------------------------------------- good values


def test_defaults_are_documented_values() -> None:
    config = load({"DEV_MODE": "1"})
    assert config.dev_mode
    assert config.host == "127.0.0.1"
    assert config.jwt_leeway == 30.0
    assert config.max_sockets_per_user == 10
    assert config.metrics_token is None
    assert config.port == 3000
    assert config.jwt_algorithms == ("HS256",)
    assert config.frontend_urls == ("http://localhost:5188",)
    assert config.ping_interval == 25.0 and config.ping_timeout == 60.0  # the seed's
    assert config.rate_limit("private-message") == 30
    assert config.rate_limit("music-sync") == 60
    assert config.rate_limit("join-room") == 10
    assert config.rate_limit("leave-room") == 100
    assert config.max_rooms_per_socket == 50
    assert config.banned_words == ("spam", "abuse")
    assert config.redis_url is None


def test_every_variable_is_read(tmp_path: Path) -> None:
    web = tmp_path / "web"
    env = {
        "HOST": "0.0.0.0", "PORT": "0", "FRONTEND_URL": "https://a.example/, http://b.example:81",
        "JWT_SECRET": SECRET, "JWT_ALGORITHMS": "HS256,HS512", "JWT_AUDIENCE": "aud-1",
        "JWT_ISSUER": "iss-1", "API_KEY": "k" * 16, "REDIS_URL": "redis://127.0.0.1:6379/2",
        "REDIS_PREFIX": "x:", "PING_INTERVAL": "1500", "PING_TIMEOUT": "2500",
        "UPGRADE_TIMEOUT": "3500", "MAX_HTTP_BUFFER_SIZE": "2048", "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json", "DEBUG_EVENTS": "yes", "RATE_LIMIT_PRIVATE_MESSAGE": "1",
        "RATE_LIMIT_MUSIC_SYNC": "2", "RATE_LIMIT_JOIN_ROOM": "3", "RATE_LIMIT_DEFAULT": "4",
        "MAX_ROOMS_PER_SOCKET": "5", "BANNED_WORDS": " Foo , BAR,, ", "MAX_STORED_MESSAGES": "6",
        "ANOMALY_CONNECTIONS_PER_MINUTE": "7", "ANOMALY_MESSAGES_PER_MINUTE": "8",
        "WEB_DIR": str(web), "JWT_LEEWAY": "5", "MAX_SOCKETS_PER_USER": "3",
        "METRICS_TOKEN": "m" * 16, "DEV_MODE": "0",
    }
    config = load(env)
    assert config.host == "0.0.0.0" and config.port == 0
    assert config.frontend_urls == ("https://a.example", "http://b.example:81")
    assert config.jwt_secret == SECRET and not config.dev_mode
    assert config.jwt_algorithms == ("HS256", "HS512")
    assert (config.jwt_audience, config.jwt_issuer) == ("aud-1", "iss-1")
    assert config.api_key == "k" * 16
    assert (config.redis_url, config.redis_prefix) == ("redis://127.0.0.1:6379/2", "x:")
    # milliseconds in, seconds in the Config
    assert (config.ping_interval, config.ping_timeout, config.upgrade_timeout) == (1.5, 2.5, 3.5)
    assert config.max_http_buffer_size == 2048
    assert (config.log_level, config.log_format, config.debug_events) == ("DEBUG", "json", True)
    assert [config.rate_limit(e) for e in
            ("private-message", "music-sync", "join-room", "leave-room")] == [1, 2, 3, 4]
    assert config.max_rooms_per_socket == 5
    assert config.banned_words == ("foo", "bar")
    assert config.max_stored_messages == 6
    assert config.anomaly_connections_per_minute == 7
    assert config.anomaly_messages_per_minute == 8
    assert config.web_dir == str(web)
    assert config.jwt_leeway == 5.0
    assert config.max_sockets_per_user == 3
    assert config.metrics_token == "m" * 16


def test_flags_override_environment() -> None:
    env = {"PORT": "1111", "RATE_LIMIT_JOIN_ROOM": "2", "JWT_SECRET": SECRET,
           "BANNED_WORDS": "a", "DEBUG_EVENTS": "false"}
    config = load(env, ["--port", "2222", "--rate-limit-join-room", "9",
                        "--banned-words", "x,y", "--debug-events", "true"])
    assert config.port == 2222
    assert config.rate_limit("join-room") == 9
    assert config.banned_words == ("x", "y")
    assert config.debug_events is True
    assert config.jwt_secret == SECRET  # not overridden: the env value stays


def test_bad_flag_value_is_validated_like_env() -> None:
    with pytest.raises(ConfigError, match="PORT"):
        load({"PORT": "80"}, ["--port", "eighty"])


def test_empty_values_mean_unset() -> None:
    config = load({"PORT": "", "JWT_SECRET": "", "REDIS_URL": "", "DEV_MODE": "1"})
    assert config.port == 3000 and config.dev_mode and config.redis_url is None


@pytest.mark.parametrize("value", ["true", "1", "YES", "on"])
def test_bool_true_spellings(value: str) -> None:
    assert load({"DEBUG_EVENTS": value, "JWT_SECRET": SECRET}).debug_events is True


@pytest.mark.parametrize("value", ["false", "0", "No", "off"])
def test_bool_false_spellings(value: str) -> None:
    assert load({"DEBUG_EVENTS": value, "JWT_SECRET": SECRET}).debug_events is False


def test_rs256_and_es256_key_files(tmp_path: Path, rsa_pem: bytes, ec_pem: bytes) -> None:
    rsa_file, ec_file = tmp_path / "rsa.pem", tmp_path / "ec.pem"
    rsa_file.write_bytes(rsa_pem)
    ec_file.write_bytes(ec_pem)
    config = load({"JWT_PUBLIC_KEY_FILE": str(rsa_file), "JWT_ALGORITHMS": "RS256"})
    assert config.jwt_public_key == rsa_pem.decode() and not config.dev_mode
    assert config.jwt_algorithms == ("RS256",)
    config = load({"JWT_PUBLIC_KEY_FILE": str(ec_file), "JWT_ALGORITHMS": "ES256"})
    assert config.jwt_algorithms == ("ES256",)


# ---------------------------------------------------------------------- bad values

BAD_VALUES = [
    ("PORT", "abc"), ("PORT", "-1"), ("PORT", "65536"), ("PORT", "1.5"),
    ("FRONTEND_URL", "*"), ("FRONTEND_URL", "ftp://x.example"),
    ("FRONTEND_URL", "localhost:3000"), ("FRONTEND_URL", "http://"),
    ("FRONTEND_URL", "http://a.example,*"),
    ("JWT_SECRET", "too-short-secret"),
    ("JWT_ALGORITHMS", "XX256"), ("JWT_ALGORITHMS", "none"), ("JWT_ALGORITHMS", "HS256,nope"),
    ("API_KEY", "short"),
    ("REDIS_URL", "http://127.0.0.1:6379"), ("REDIS_URL", "127.0.0.1:6379"),
    ("PING_INTERVAL", "abc"), ("PING_INTERVAL", "0"), ("PING_INTERVAL", "-5"),
    ("PING_TIMEOUT", "abc"), ("PING_TIMEOUT", "0"), ("PING_TIMEOUT", "2.5"),
    ("UPGRADE_TIMEOUT", "abc"), ("UPGRADE_TIMEOUT", "0"),
    ("MAX_HTTP_BUFFER_SIZE", "abc"), ("MAX_HTTP_BUFFER_SIZE", "1023"),
    ("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "xml"),
    ("DEBUG_EVENTS", "maybe"), ("DEBUG_EVENTS", "2"),
    ("RATE_LIMIT_PRIVATE_MESSAGE", "abc"), ("RATE_LIMIT_PRIVATE_MESSAGE", "0"),
    ("RATE_LIMIT_MUSIC_SYNC", "-1"), ("RATE_LIMIT_MUSIC_SYNC", "x"),
    ("RATE_LIMIT_JOIN_ROOM", "0"), ("RATE_LIMIT_JOIN_ROOM", "1e3"),
    ("RATE_LIMIT_DEFAULT", "0"), ("RATE_LIMIT_DEFAULT", "many"),
    ("MAX_ROOMS_PER_SOCKET", "0"), ("MAX_ROOMS_PER_SOCKET", "10001"),
    ("MAX_ROOMS_PER_SOCKET", "x"),
    ("MAX_STORED_MESSAGES", "0"), ("MAX_STORED_MESSAGES", "1000001"),
    ("MAX_STORED_MESSAGES", "lots"),
    ("ANOMALY_CONNECTIONS_PER_MINUTE", "0"), ("ANOMALY_CONNECTIONS_PER_MINUTE", "x"),
    ("ANOMALY_MESSAGES_PER_MINUTE", "0"), ("ANOMALY_MESSAGES_PER_MINUTE", "x"),
    ("DEV_MODE", "maybe"), ("JWT_LEEWAY", "-1"), ("JWT_LEEWAY", "soon"),
    ("MAX_SOCKETS_PER_USER", "-1"), ("MAX_SOCKETS_PER_USER", "x"),
    ("METRICS_TOKEN", "short"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_value_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({name: value})
    assert name in str(info.value)


def test_redis_url_with_bad_port_is_refused_at_start() -> None:
    # "every env var validated at start": a port that is not a number is only found when
    # redis-py parses the URL, so the gateway would crash later with a ValueError.
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load({"REDIS_URL": "redis://127.0.0.1:notaport/0"})


# ---------------------------------------------------------------------- JWT settings


def test_secret_and_key_file_together(tmp_path: Path, rsa_pem: bytes) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(rsa_pem)
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load({"JWT_SECRET": SECRET, "JWT_PUBLIC_KEY_FILE": str(key),
              "JWT_ALGORITHMS": "RS256"})


def test_secret_with_asymmetric_algorithm() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "RS256"})
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load({"JWT_SECRET": SECRET, "JWT_ALGORITHMS": "HS256,ES256"})


def test_key_file_with_hmac_algorithm(tmp_path: Path, rsa_pem: bytes) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(rsa_pem)
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY_FILE"):
        load({"JWT_PUBLIC_KEY_FILE": str(key)})  # default algorithms: HS256
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY_FILE"):
        load({"JWT_PUBLIC_KEY_FILE": str(key), "JWT_ALGORITHMS": "RS256,HS256"})


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY_FILE"):
        load({"JWT_PUBLIC_KEY_FILE": str(tmp_path / "nope.pem"), "JWT_ALGORITHMS": "RS256"})


def test_key_file_that_is_not_a_public_key(tmp_path: Path) -> None:
    # Accepted today: every token is then refused at handshake time ("Could not parse the
    # provided public key"), instead of a clear error at start.
    key = tmp_path / "garbage.pem"
    key.write_text("this is not a PEM key\n")
    with pytest.raises(ConfigError, match="JWT_PUBLIC_KEY_FILE"):
        load({"JWT_PUBLIC_KEY_FILE": str(key), "JWT_ALGORITHMS": "RS256"})


def test_key_file_of_the_wrong_key_type(tmp_path: Path, ec_pem: bytes) -> None:
    # An EC key with JWT_ALGORITHMS=RS256 can verify nothing: refuse it at start.
    key = tmp_path / "ec.pem"
    key.write_bytes(ec_pem)
    with pytest.raises(ConfigError, match=r"JWT_PUBLIC_KEY_FILE|JWT_ALGORITHMS"):
        load({"JWT_PUBLIC_KEY_FILE": str(key), "JWT_ALGORITHMS": "RS256"})


# ---------------------------------------------------------------------- command line


def test_main_reports_config_errors_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAX_ROOMS_PER_SOCKET", "zero")
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "MAX_ROOMS_PER_SOCKET" in capsys.readouterr().err
    monkeypatch.delenv("MAX_ROOMS_PER_SOCKET")
    with pytest.raises(SystemExit) as info:
        main(["--port", "99999"])
    assert info.value.code == 2
    assert "PORT" in capsys.readouterr().err


# ---------------------------------------------------------------------- fleet (issue 10)

FLEET_BASE = {"JWT_SECRET": SECRET}


def test_fleet_defaults() -> None:
    alone = load_config([], FLEET_BASE)
    assert (alone.socket_adapter, alone.connection_recovery, alone.shutdown_timeout,
            alone.node_id) == ("memory", 120.0, 10.0, "")
    fleet = load_config([], {**FLEET_BASE, "REDIS_URL": "redis://r:6379/0"})
    assert fleet.socket_adapter == "redis-streams"  # the one that recovers across nodes


@pytest.mark.parametrize(("env", "url"), [
    ({"REDIS_HOST": "cache"}, "redis://cache:6379"),
    ({"REDIS_HOST": "cache", "REDIS_PORT": "6380"}, "redis://cache:6380"),
    ({"REDIS_HOST": "::1", "REDIS_PASSWORD": "p@ss:/w"}, "redis://:p%40ss%3A%2Fw@[::1]:6379"),
    # REDIS_URL wins over the seed's names
    ({"REDIS_URL": "redis://u:6379/2", "REDIS_HOST": "cache"}, "redis://u:6379/2"),
])
def test_the_seeds_redis_names(env: dict[str, str], url: str) -> None:
    config = load_config([], {**FLEET_BASE, **env})
    assert config.redis_url == url and config.socket_adapter == "redis-streams"


@pytest.mark.parametrize(("env", "error"), [
    ({"SOCKET_ADAPTER": "kafka"}, "SOCKET_ADAPTER must be one of memory, redis, redis-sharded"),
    ({"SOCKET_ADAPTER": "redis"}, "SOCKET_ADAPTER=redis needs Redis"),
    ({"CONNECTION_RECOVERY_MS": "-1"}, "CONNECTION_RECOVERY_MS must be between"),
    ({"SHUTDOWN_TIMEOUT_MS": "soon"}, "SHUTDOWN_TIMEOUT_MS must be an integer"),
    ({"NODE_ID": "a\nb"}, "NODE_ID must be at most 128 printable characters"),
    ({"REDIS_HOST": "cache", "REDIS_PORT": "0"}, "REDIS_PORT must be between"),
])
def test_fleet_settings_are_validated(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config([], {**FLEET_BASE, **env})


def test_fleet_settings_in_units() -> None:
    config = load_config(["--connection-recovery-ms", "0", "--node-id", "eu-1"],
                         {**FLEET_BASE, "REDIS_HOST": "cache", "SOCKET_ADAPTER": "redis-sharded",
                          "SHUTDOWN_TIMEOUT_MS": "2500"})
    assert (config.connection_recovery, config.node_id, config.socket_adapter,
            config.shutdown_timeout) == (0.0, "eu-1", "redis-sharded", 2.5)
