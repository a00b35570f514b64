"""The README's Python quick starts run as written, against the test stack."""

from __future__ import annotations

import datetime as dt
import re

import pytest

import featurestore as fs
from conftest import Env
from stack import REPO


def python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Python SDK\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_readme_quick_starts_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    serving, pipeline = python_blocks()
    with fs.Client(env.address) as c:  # deploy/examples/driver_stats.yaml
        c.apply_feature_set(fs.FeatureSet("driver_stats", "driver", [
            fs.FeatureSpec("trips_today", "int64"), fs.FeatureSpec("rating", "double"),
            fs.FeatureSpec("last_city", "string"), fs.FeatureSpec("embedding", "float_list")],
            ttl=dt.timedelta(hours=24), owner="marketplace-ml",
            description="Per-driver activity, refreshed by the trips stream."))
    assert "featurestore:50051" in serving and "featurestore:50051" in pipeline
    exec(compile(pipeline.replace("featurestore:50051", env.address), "README pipeline", "exec"), {})
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "3 0 0", out.out
    assert "3/3 rows" in out.err
    ns: dict[str, object] = {}
    exec(compile(serving.replace("featurestore:50051", env.address), "README serving", "exec"), ns)
    assert capsys.readouterr().out.startswith("Cell(value=4.9, status=<FeatureStatus.PRESENT: 1>")
    assert ns["rating"].tolist() == [4.9, 0.0]  # type: ignore[attr-defined]
    assert ns["frame"].shape == (2, 3)  # type: ignore[attr-defined]
