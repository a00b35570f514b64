"""Fixtures: one real stack per session (DynamoDB Local, valkey-server, the server, and a
TLS replica with an access policy), clients, and feature sets with unique names."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

import featurestore as fs
from stack import POLICY, Certs, Stack, make_certs
from proxy import Proxy

#: Every value type, for sets that exercise all of them.
ALL_TYPES = {
    "n": fs.ValueType.INT64, "x": fs.ValueType.DOUBLE, "s": fs.ValueType.STRING,
    "b": fs.ValueType.BYTES, "ok": fs.ValueType.BOOL, "emb": fs.ValueType.FLOAT_LIST,
    "ids": fs.ValueType.INT64_LIST, "tags": fs.ValueType.STRING_LIST,
}


@dataclass
class Env:
    """The running stack: the plaintext server's address, the TLS replica's, and the
    certificates."""

    stack: Stack
    address: str
    tls_address: str
    certs: Certs


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("stack")
    certs = make_certs(work)
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    stack = Stack(work, build=not os.environ.get("FS_PYTEST_NO_BUILD"))
    try:
        tls = stack.start_replica("-tls-cert", certs.server_cert, "-tls-key", certs.server_key,
                                  "-tls-client-ca", certs.ca, "-auth-policy", str(policy))
        yield Env(stack=stack, address=stack.address, tls_address=tls.address, certs=certs)
    finally:
        stack.close()


@pytest.fixture(scope="session")
def client(env: Env) -> Iterator[fs.Client]:
    """One plaintext client for the session (closing one takes up to 0.2 s)."""
    with fs.Client(env.address) as c:
        yield c


@pytest.fixture
def proxy(env: Env) -> Iterator[Proxy]:
    p = Proxy(env.address)
    try:
        yield p
    finally:
        p.close()


def unique(prefix: str) -> str:
    """A feature set name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def make_set(client: fs.Client) -> Callable[..., fs.FeatureSet]:
    """Applies a feature set with a unique name: make_set(prefix, {name: type}, **fields)."""
    def make(prefix: str = "t", features: "dict[str, fs.ValueType] | None" = None, **kw: object) -> fs.FeatureSet:
        feats = features if features is not None else ALL_TYPES
        fset = fs.FeatureSet(name=unique(prefix), entity_type=str(kw.pop("entity_type", "driver")),
                             features=[fs.FeatureSpec(n, t) for n, t in feats.items()], **kw)  # type: ignore[arg-type]
        return client.apply_feature_set(fset)
    return make


def now_minus(seconds: float) -> dt.datetime:
    """An aware UTC datetime, seconds ago, truncated to microseconds."""
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)).replace(microsecond=0)


def pytest_report_header(config: pytest.Config) -> str:
    return f"featurestore SDK {fs.__version__} from {Path(fs.__file__).parent}"
