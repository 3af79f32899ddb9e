"""JWT handshake authentication: every bad token kind is refused with the same answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from realtime_app.auth import Authenticator, AuthError, extract_token
from realtime_app.config import load_config

from .conftest import SECRET, GatewayFactory, Harness, make_token

pytestmark = pytest.mark.timeout(30)

REFUSED = {"message": "Authentication failed", "data": {"code": "UNAUTHORIZED"}}
OTHER_SECRET = "another-secret-0123456789abcdefghijklmnop"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token MACed with ``key`` (PyJWT refuses to do it with a PEM key)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def claims(sub: Any = "alice", exp_in: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + exp_in, **extra}


class Keys:
    def __init__(self, tmp: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_pub = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.ec_pub = self.ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.rsa_file = tmp / "rsa.pem"
        self.ec_file = tmp / "ec.pem"
        self.rsa_file.write_bytes(self.rsa_pub)
        self.ec_file.write_bytes(self.ec_pub)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


def hs_env(**extra: str) -> dict[str, str]:
    return {"JWT_SECRET": SECRET, **extra}


def rs_env(keys: Keys) -> dict[str, str]:
    return {"JWT_PUBLIC_KEY_FILE": str(keys.rsa_file), "JWT_ALGORITHMS": "RS256"}


def es_env(keys: Keys) -> dict[str, str]:
    return {"JWT_PUBLIC_KEY_FILE": str(keys.ec_file), "JWT_ALGORITHMS": "ES256"}


# ---------------------------------------------------------------------- bad tokens
# (id, config env builder, token builder); every one must be refused.

BadCase = tuple[str, Callable[[Keys], dict[str, str]], Callable[[Keys], str]]

BAD_TOKENS: list[BadCase] = [
    ("expired", lambda k: hs_env(), lambda k: make_token("alice", exp_in=-300)),
    ("wrong-signature", lambda k: hs_env(),
     lambda k: make_token("alice", secret=OTHER_SECRET)),
    ("tampered-payload", lambda k: hs_env(), lambda k: (
        lambda t: ".".join([t.split(".")[0],
                            b64(json.dumps(claims("mallory")).encode()), t.split(".")[2]])
    )(make_token("alice"))),
    ("alg-none", lambda k: hs_env(),
     lambda k: jwt.encode(claims(), None, algorithm="none")),
    ("alg-none-unsigned-with-dot", lambda k: hs_env(),
     lambda k: jwt.encode(claims(), None, algorithm="none").rstrip(".") + "."),
    ("hs256-signed-with-rsa-public-pem", rs_env,
     lambda k: forge_hs256(claims(), k.rsa_pub)),
    ("rs256-token-on-hs256-config", lambda k: hs_env(),
     lambda k: jwt.encode(claims(), k.rsa, algorithm="RS256")),
    ("es256-token-on-rs256-config", rs_env,
     lambda k: jwt.encode(claims(), k.ec, algorithm="ES256")),
    ("rs256-signed-by-other-key", rs_env, lambda k: jwt.encode(
        claims(), rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256")),
    ("hs512-when-only-hs256-allowed", lambda k: hs_env(),
     lambda k: make_token("alice", secret=SECRET * 2, algorithm="HS512")),
    ("malformed-garbage", lambda k: hs_env(), lambda k: "not-a-jwt"),
    ("malformed-three-parts", lambda k: hs_env(), lambda k: "a.b.c"),
    ("malformed-bad-json", lambda k: hs_env(),
     lambda k: f"{b64(b'{')}.{b64(b'{}')}.{b64(b'x')}"),
    ("too-long", lambda k: hs_env(),
     lambda k: make_token("alice", padding="x" * 9000)),
    ("nbf-in-future", lambda k: hs_env(),
     lambda k: make_token("alice", nbf=int(time.time()) + 600)),
    ("wrong-aud", lambda k: hs_env(JWT_AUDIENCE="gateway"),
     lambda k: make_token("alice", aud="someone-else")),
    ("missing-aud", lambda k: hs_env(JWT_AUDIENCE="gateway"), lambda k: make_token("alice")),
    ("wrong-iss", lambda k: hs_env(JWT_ISSUER="https://issuer.example"),
     lambda k: make_token("alice", iss="https://evil.example")),
    ("missing-iss", lambda k: hs_env(JWT_ISSUER="https://issuer.example"),
     lambda k: make_token("alice")),
    ("missing-sub", lambda k: hs_env(), lambda k: make_token(None)),
    ("empty-sub", lambda k: hs_env(), lambda k: make_token("")),
    ("non-string-sub", lambda k: hs_env(),
     lambda k: jwt.encode(claims(sub=12345), SECRET, algorithm="HS256")),
    ("sub-too-long", lambda k: hs_env(), lambda k: make_token("u" * 129)),
    ("missing-exp", lambda k: hs_env(), lambda k: make_token("alice", exp_in=None)),
    ("non-numeric-exp", lambda k: hs_env(), lambda k: make_token("alice", exp="tomorrow")),
]

# The real handshake (python-socketio client) for a representative subset; the rest go
# through Authenticator.verify directly (below, where every case runs).
HANDSHAKE_CASES = {
    "expired", "wrong-signature", "alg-none", "hs256-signed-with-rsa-public-pem",
    "rs256-token-on-hs256-config", "malformed-garbage", "nbf-in-future", "wrong-aud",
    "wrong-iss", "missing-sub", "missing-exp", "too-long", "es256-token-on-rs256-config",
}


def _env_for(case_env: dict[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    drop = () if "JWT_SECRET" in case_env else ("JWT_SECRET",)
    return case_env, drop


@pytest.mark.parametrize(
    "case", [c for c in BAD_TOKENS if c[0] in HANDSHAKE_CASES], ids=lambda c: c[0])
async def test_bad_token_refused_in_handshake(
    case: BadCase, keys: Keys, gateway_factory: GatewayFactory
) -> None:
    _, env_of, token_of = case
    env, drop = _env_for(env_of(keys))
    gw = await gateway_factory("memory", env, drop=drop)
    assert await gw.refused(auth={"token": token_of(keys)}) == REFUSED
    assert gw.app.io.sockets.sockets == {}
    assert gw.metric("realtime_rejections_total", reason="invalid_token") == 1


@pytest.mark.parametrize("case", BAD_TOKENS, ids=lambda c: c[0])
def test_bad_token_refused_by_verify(case: BadCase, keys: Keys) -> None:
    _, env_of, token_of = case
    auth = Authenticator(load_config([], env_of(keys)))
    with pytest.raises(AuthError):
        auth.verify(token_of(keys))


# ---------------------------------------------------------------------- missing tokens


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        (None, None),
        ({}, None),
        ({"token": ""}, None),
        ({"token": 12345}, None),
        ({"token": None}, None),
        (None, {"Authorization": "Basic YWxpY2U6cHc="}),
        (None, {"Authorization": "Bearer "}),
        (None, {"Authorization": "Bearer"}),
    ],
    ids=["no-auth", "empty-auth", "empty-token", "numeric-token", "null-token",
         "basic-header", "empty-bearer", "bare-bearer"],
)
async def test_missing_token_refused(
    auth: Any, headers: dict[str, str] | None, memory_gw: Harness
) -> None:
    assert await memory_gw.refused(auth=auth, headers=headers) == REFUSED
    assert memory_gw.metric("realtime_rejections_total", reason="missing_token") == 1


async def test_refused_client_does_not_disturb_connected_one(memory_gw: Harness) -> None:
    alice = await memory_gw.connect("alice")
    await memory_gw.refused(auth={"token": "garbage"})
    assert alice.connected
    assert (await alice.call("join-room", {"room": "r"}))["success"] is True


# ---------------------------------------------------------------------- good tokens


async def test_success_joins_user_room_and_emits_connected(memory_gw: Harness) -> None:
    alice = await memory_gw.connect("alice", username="Alice A.")
    connected = alice.all("connected")[0]
    assert connected == {"message": "Connected successfully", "userId": "alice",
                         "socketId": alice.sid, "recovered": False}
    socket = memory_gw.app.io.sockets.sockets[alice.sid]
    assert "user:alice" in socket.rooms
    assert socket.data["username"] == "Alice A."
    assert memory_gw.metric("realtime_connections_total") == 1


async def test_token_in_authorization_header(memory_gw: Harness) -> None:
    token = memory_gw.token("bob", username="Bobby")
    bob = await memory_gw.connect("bob", headers={"Authorization": f"Bearer {token}"})
    assert bob.all("connected")[0]["userId"] == "bob"
    assert memory_gw.app.io.sockets.sockets[bob.sid].data["username"] == "Bobby"


async def test_token_over_polling_transport(memory_gw: Harness) -> None:
    carol = await memory_gw.connect("carol", transport="polling")
    assert carol.all("connected")[0]["socketId"] == carol.sid


async def test_rs256_configuration(keys: Keys, gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", rs_env(keys), drop=("JWT_SECRET",))
    token = jwt.encode(claims("rsa-user", username="R"), keys.rsa, algorithm="RS256")
    client = await gw.connect("rsa-user", token=token)
    assert client.all("connected")[0]["userId"] == "rsa-user"
    # the HMAC-with-the-public-key confusion is refused on the same gateway
    assert await gw.refused(auth={"token": forge_hs256(claims(), keys.rsa_pub)}) == REFUSED


async def test_es256_configuration(keys: Keys, gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", es_env(keys), drop=("JWT_SECRET",))
    token = jwt.encode(claims("ec-user"), keys.ec, algorithm="ES256")
    client = await gw.connect("ec-user", token=token)
    assert client.all("connected")[0]["userId"] == "ec-user"
    rs_token = jwt.encode(claims(), keys.rsa, algorithm="RS256")
    assert await gw.refused(auth={"token": rs_token}) == REFUSED


async def test_audience_and_issuer_accepted_when_right(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        "memory", {"JWT_AUDIENCE": "gateway", "JWT_ISSUER": "https://issuer.example"})
    token = make_token("dora", aud="gateway", iss="https://issuer.example")
    client = await gw.connect("dora", token=token)
    assert client.all("connected")[0]["userId"] == "dora"
    token = make_token("dora", aud=["other", "gateway"], iss="https://issuer.example")
    await gw.connect("dora", token=token)


# ---------------------------------------------------------------------- Authenticator


def test_verify_returns_identity_with_username_fallback() -> None:
    auth = Authenticator(load_config([], hs_env()))
    assert auth.verify(make_token("u1", username="User One")).username == "User One"
    identity = auth.verify(make_token("u2"))
    assert (identity.user_id, identity.username) == ("u2", "u2")
    assert auth.verify(make_token("u3", username=42)).username == "u3"
    assert auth.verify(make_token("u4", username="x" * 500)).username == "x" * 128


def test_verify_nbf_in_the_past_is_fine() -> None:
    auth = Authenticator(load_config([], hs_env()))
    assert auth.verify(make_token("u", nbf=int(time.time()) - 60)).user_id == "u"


def test_extract_token_prefers_auth_then_bearer_header() -> None:
    assert extract_token({"token": "a"}, {"authorization": "Bearer b"}) == "a"
    assert extract_token({}, {"authorization": "Bearer b"}) == "b"
    assert extract_token({}, {"authorization": "bearer  c "}) == "c"
    assert extract_token(None, {"authorization": "Token d"}) is None
    assert extract_token(["token"], {}) is None


def test_dev_mode_mints_tokens_that_verify() -> None:
    auth = Authenticator(load_config([], {"DEV_MODE": "1"}))
    assert auth.dev_mode
    token = auth.mint_dev_token("dev-user", "Dev")
    identity = auth.verify(token)
    assert (identity.user_id, identity.username) == ("dev-user", "Dev")
    # each process generates its own secret: another dev gateway refuses the token
    with pytest.raises(AuthError):
        Authenticator(load_config([], {"DEV_MODE": "1"})).verify(token)
    # a token signed with any guessable secret is refused
    with pytest.raises(AuthError):
        auth.verify(make_token("dev-user", secret=SECRET))


def test_mint_outside_dev_mode_is_an_error() -> None:
    auth = Authenticator(load_config([], hs_env()))
    with pytest.raises(RuntimeError):
        auth.mint_dev_token("u", "u")
