"""The registry calls against the real server."""

from __future__ import annotations

import datetime as dt
from typing import Callable

import grpc
import pytest

import featurestore as fs
from conftest import ALL_TYPES, unique


def test_apply_get_and_evolve(client: fs.Client) -> None:
    name = unique("reg")
    applied = client.apply_feature_set(fs.FeatureSet(
        name=name, entity_type="driver", features=[fs.FeatureSpec("trips", "int64"), ("rating", fs.ValueType.DOUBLE)],
        ttl=dt.timedelta(hours=24), description="driver stats", owner="team-a"))
    assert applied.version >= 1
    assert applied.ttl == dt.timedelta(hours=24)
    got = client.get_feature_set(name)
    assert got == applied
    assert got.feature_types() == {"trips": fs.ValueType.INT64, "rating": fs.ValueType.DOUBLE}
    # identical: a no-op, same version
    assert client.apply_feature_set(applied).version == applied.version
    # adding a feature bumps the version
    evolved = client.apply_feature_set(fs.FeatureSet(
        name=name, entity_type="driver", ttl=dt.timedelta(hours=24), description="driver stats", owner="team-a",
        features=[*applied.features, fs.FeatureSpec("emb", fs.ValueType.FLOAT_LIST)]))
    assert evolved.version > applied.version
    assert [f.name for f in evolved.features] == ["trips", "rating", "emb"]
    assert client.get_feature_set(name).ttl == dt.timedelta(hours=24)


def test_no_ttl_is_none(client: fs.Client) -> None:
    s = client.apply_feature_set(fs.FeatureSet(name=unique("nottl"), entity_type="e", features=[fs.FeatureSpec("a", "bool")]))
    assert s.ttl is None
    assert client.get_feature_set(s.name).personal_data is False


def test_changing_a_type_is_failed_precondition(make_set: Callable[..., fs.FeatureSet], client: fs.Client) -> None:
    s = make_set("chg", {"a": fs.ValueType.INT64})
    with pytest.raises(fs.FailedPreconditionError) as ei:
        client.apply_feature_set(fs.FeatureSet(name=s.name, entity_type=s.entity_type, features=[fs.FeatureSpec("a", "string")]))
    e = ei.value
    assert e.code == grpc.StatusCode.FAILED_PRECONDITION
    assert e.reason and e.domain == fs.ERROR_DOMAIN
    assert isinstance(e, fs.FeatureStoreError)


def test_invalid_set_names_the_field(client: fs.Client) -> None:
    with pytest.raises(fs.InvalidArgumentError) as ei:
        client.apply_feature_set(fs.FeatureSet(name="Not A Valid Name!", entity_type="e", features=[fs.FeatureSpec("a", "int64")]))
    e = ei.value
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.field.startswith("feature_set"), e.field
    assert e.reason
    assert e.violations and e.violations[0].field == e.field and e.violations[0].description
    assert e.field in str(e)


def test_get_unknown_set_is_not_found(client: fs.Client) -> None:
    with pytest.raises(fs.NotFoundError) as ei:
        client.get_feature_set(unique("missing"))
    assert ei.value.code == grpc.StatusCode.NOT_FOUND
    assert ei.value.reason == "UNKNOWN_FEATURE_SET"
    assert ei.value.domain == fs.ERROR_DOMAIN
    assert ei.value.attempts == 1


def test_list_feature_sets(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    made = {make_set("lst", {"a": fs.ValueType.INT64}).name for _ in range(3)}
    page = client.list_feature_sets()
    names = [s.name for s in page.feature_sets]
    assert made <= set(names) and len(names) == len(set(names))
    by_name = {s.name: s for s in page.feature_sets}
    assert all(by_name[n].feature_types() == {"a": fs.ValueType.INT64} for n in made)
    walked = [s.name for s in client.iter_feature_sets(page_size=2)]
    assert made <= set(walked)
    assert len(walked) == len(set(walked)), "iter_feature_sets yielded a set twice"


def test_list_pagination(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    """ListFeatureSets honours page_size and page_token: pages in a stable order (not
    sorted, by contract), no set twice, none missing."""
    for _ in range(3):
        make_set("page", {"a": fs.ValueType.INT64})
    everything = [s.name for s in client.list_feature_sets(page_size=1000).feature_sets]
    assert len(everything) >= 3
    first = client.list_feature_sets(page_size=2)
    assert len(first.feature_sets) <= 2, f"page_size=2 returned {len(first.feature_sets)} sets"
    assert first.next_page_token, "no next_page_token although more sets exist"
    second = client.list_feature_sets(page_size=2, page_token=first.next_page_token)
    assert second.feature_sets
    assert not {s.name for s in first.feature_sets} & {s.name for s in second.feature_sets}
    pages, token, seen = 0, "", []
    while True:
        p = client.list_feature_sets(page_size=2, page_token=token)
        pages += 1
        assert len(p.feature_sets) <= 2
        seen += [s.name for s in p.feature_sets]
        token = p.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) and set(seen) == set(everything)
    assert seen == [s.name for s in client.iter_feature_sets(page_size=2)], "the order is not stable"
    assert pages >= (len(everything) + 1) // 2


def test_delete_feature_set(client: fs.Client, make_set: Callable[..., fs.FeatureSet]) -> None:
    """Needs the DeleteFeatureSet RPC on the server (proto contract)."""
    s = make_set("del", {"a": fs.ValueType.INT64})
    client.write(s.name, [fs.Row("e1", {"a": 1})])
    retired = client.delete_feature_set(s.name)
    assert retired.name == s.name and retired.version == s.version
    with pytest.raises(fs.NotFoundError):
        client.delete_feature_set(s.name)
    with pytest.raises(fs.FailedPreconditionError):
        client.apply_feature_set(fs.FeatureSet(name=s.name, entity_type="driver", features=[fs.FeatureSpec("a", "int64")]))
    assert s.name not in {x.name for x in client.iter_feature_sets()}
    with pytest.raises(fs.FeatureStoreError):
        client.get_features([f"{s.name}:a"], ["e1"])


def test_value_type_parse() -> None:
    assert fs.ValueType.parse("float_list") is fs.ValueType.FLOAT_LIST
    assert fs.ValueType.parse("VALUE_TYPE_INT64") is fs.ValueType.INT64
    assert fs.ValueType.parse(2) is fs.ValueType.DOUBLE
    assert fs.ValueType.STRING_LIST.is_list and not fs.ValueType.BYTES.is_list
    with pytest.raises(ValueError):
        fs.ValueType.parse("decimal")
    with pytest.raises(ValueError):
        fs.ValueType.parse("unspecified")
    assert set(ALL_TYPES.values()) == {t for t in fs.ValueType if t is not fs.ValueType.UNSPECIFIED}
