"""The package installs with pip, offline, and brings its generated code and type
information with it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1]


def test_pip_install_offline(tmp_path: Path) -> None:
    # Build from a copy: setuptools builds in the source tree and would leave build/ and
    # *.egg-info behind.
    src = tmp_path / "src"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests", "bench"))
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"venv: {r.stderr}")
    py = venv / "bin" / "python"
    # pip from the system interpreter installs into the venv's site-packages: no index,
    # no build isolation (the build backend, setuptools, is Debian's).
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-index",
                        "--no-build-isolation", "--no-deps", str(src)], capture_output=True, text=True)
    if r.returncode != 0 and "no such option: --python" in r.stderr:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
                            "--no-deps", "--prefix", str(venv), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    probe = (
        "import featurestore, pathlib, featurestore._proto.featurestore.v1.featurestore_pb2_grpc as g;"
        "d = pathlib.Path(featurestore.__file__).parent;"
        "print(d); print((d / 'py.typed').exists(), (d / '_proto/featurestore/v1/featurestore_pb2.pyi').exists());"
        "print(g.FeatureStoreServiceStub.__name__, featurestore.__version__)"
    )
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, files, names = out.stdout.splitlines()
    assert where.startswith(str(venv)), f"imported from {where}, not the venv"
    assert files == "True True"
    assert names.startswith("FeatureStoreServiceStub ")
