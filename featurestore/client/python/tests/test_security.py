"""TLS, mutual TLS, bearer tokens and the access policy, against a real server replica
started with -tls-cert, -tls-client-ca and -auth-policy (see stack.POLICY)."""

from __future__ import annotations

import grpc
import pytest

import featurestore as fs
from conftest import Env, now_minus, unique


def tls_client(env: Env, **kw: object) -> fs.Client:
    return fs.Client(env.tls_address, tls=True, ca_file=env.certs.ca, **kw)  # type: ignore[arg-type]


def admin(env: Env) -> fs.Client:
    return tls_client(env, cert_file=env.certs.client_cert, key_file=env.certs.client_key)


@pytest.fixture
def secured_set(env: Env) -> fs.FeatureSet:
    with admin(env) as c:
        assert c.uses_tls
        return c.apply_feature_set(fs.FeatureSet(unique("sec"), "driver", [fs.FeatureSpec("n", "int64")]))


def test_mutual_tls_identity_may_do_everything(env: Env, secured_set: fs.FeatureSet) -> None:
    with admin(env) as c:
        [r] = c.write(secured_set.name, [fs.Row("e", {"n": 5}, now_minus(5))])
        assert r.status == fs.WriteStatus.WRITTEN
        assert c.get_features([f"{secured_set.name}:n"], ["e"])[0].values == [5]
        with pytest.raises(fs.NotFoundError):  # the GdprService is allowed: past the policy
            c.get_deletion("del-0000000000000000")


def test_tokens_map_to_identities(env: Env, secured_set: fs.FeatureSet) -> None:
    ref = f"{secured_set.name}:n"
    with tls_client(env, token="writer-token") as w:
        [r] = w.write(secured_set.name, [fs.Row("t", {"n": 1}, now_minus(3))])
        assert r.status == fs.WriteStatus.WRITTEN
        with pytest.raises(fs.PermissionDeniedError) as ei:
            w.apply_feature_set(fs.FeatureSet(unique("nope"), "driver", [fs.FeatureSpec("n", "int64")]))
        assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED and ei.value.reason == "PERMISSION_DENIED"
        with pytest.raises(fs.PermissionDeniedError):
            w.delete_subject("someone", wait=False)
    with tls_client(env, token="reader-token") as r:
        assert r.get_features([ref], ["t"])[0].values == [1]
        assert r.get_feature_set(secured_set.name).name == secured_set.name
        with pytest.raises(fs.PermissionDeniedError):
            r.write(secured_set.name, [fs.Row("t", {"n": 2}, now_minus(1))])
        with pytest.raises(fs.PermissionDeniedError):
            r.batch_write(secured_set.name, [fs.Row("t", {"n": 2}, now_minus(1))], progress=False)
        w2 = r.stream_writer()
        w2.send(secured_set.name, [fs.Row("t", {"n": 2}, now_minus(1))])
        with pytest.raises(fs.PermissionDeniedError):
            w2.close(timeout=20)
        assert w2.reconnects == 0  # not retried: only UNAVAILABLE is


def test_missing_or_wrong_credentials_are_unauthenticated(env: Env, secured_set: fs.FeatureSet) -> None:
    for kw in ({}, {"token": "not-a-token"}):
        with tls_client(env, **kw) as c:
            with pytest.raises(fs.UnauthenticatedError) as ei:
                c.get_features([f"{secured_set.name}:n"], ["e"])
            assert ei.value.code == grpc.StatusCode.UNAUTHENTICATED and ei.value.reason == "UNAUTHENTICATED"
            assert ei.value.attempts == 1


def test_rate_limit_is_resource_exhausted_with_retry_info(env: Env, secured_set: fs.FeatureSet) -> None:
    with tls_client(env, token="limited-token") as c:
        c.get_feature_set(secured_set.name)  # the burst of one
        with pytest.raises(fs.ResourceExhaustedError) as ei:
            c.get_feature_set(secured_set.name)
    e = ei.value
    assert e.code == grpc.StatusCode.RESOURCE_EXHAUSTED and e.reason == "RATE_LIMITED"
    assert e.retry_delay == pytest.approx(1.0) and e.attempts == 1


def test_plaintext_to_a_tls_server_fails(env: Env) -> None:
    with fs.Client(env.tls_address, retries=1, backoff=0.01) as c:  # loopback: plaintext by default
        assert not c.uses_tls
        with pytest.raises(fs.UnavailableError) as ei:
            c.get_feature_set("x")
    assert ei.value.attempts == 2


def test_untrusted_server_certificate_fails(env: Env) -> None:
    with fs.Client(env.tls_address, tls=True, ca_file=env.certs.other_ca, retries=0) as c:
        with pytest.raises(fs.UnavailableError):
            c.get_feature_set("x")
    with tls_client(env, server_name="not-the-server.example", retries=0) as c:
        with pytest.raises(fs.UnavailableError):
            c.get_feature_set("x")


def test_dns_name_uses_round_robin_target(env: Env, secured_set: fs.FeatureSet) -> None:
    port = env.address.rsplit(":", 1)[1]
    with fs.Client(f"localhost:{port}") as c:
        assert c.target == f"dns:///localhost:{port}" and not c.uses_tls
        assert c.get_feature_set(secured_set.name).version == secured_set.version
    with fs.Client(f"dns:///127.0.0.1:{port}") as c:
        assert c.get_feature_set(secured_set.name).name == secured_set.name
