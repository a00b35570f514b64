"""Starts the real stack for the tests and the benchmark: DynamoDB Local, valkey-server and
the server, with the project's own dev tool (.build/devstack), plus optionally a second
server replica over the same stores that serves TLS (mTLS) with an access policy."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

REPO = Path(__file__).resolve().parents[4]
BUILD = REPO / ".build"

# Short GDPR timings so a deletion finishes in about three seconds (write timeout + 1 s +
# settle); -write-timeout must stay below -lease.
SERVER_FLAGS = ["-metrics-listen", "", "-gdpr-index-settle", "1s", "-write-timeout", "1s", "-lease", "2s"]

# Every replica must key subject hashes alike (any replica's worker may run a deletion);
# a server with an access policy refuses to start without a key.
GDPR_HASH_KEY = "python-sdk-tests-only-gdpr-hash-key-0123456789"

POLICY = """\
tokens:
  - {identity: reader, token: reader-token}
  - {identity: writer, token: writer-token}
  - {identity: limited, token: limited-token}
certificates: [admin]
rules:
  reader: {read: ["*"]}
  writer: {read: ["*"], write: ["*"]}
  limited: {read: ["*"], rate: 0.2, burst: 1}
  admin: {read: ["*"], write: ["*"], delete: ["*"], apply: true, retire: true, gdpr: true}
"""


@dataclass
class Certs:
    """PEM files of a test CA, a server certificate for 127.0.0.1 / localhost, a client
    certificate with CN=admin, and a second CA that signed none of them."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str


def make_certs(d: Path) -> Certs:
    """Creates the certificates with openssl (EC P-256, valid for two days)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=featurestore test {ca}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "admin")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return Certs(ca=str(d / "ca.pem"), server_cert=str(d / "server.pem"), server_key=str(d / "server.key"),
                 client_cert=str(d / "client.pem"), client_key=str(d / "client.key"),
                 other_ca=str(d / "other-ca.pem"))


class _Lines:
    """Reads a process's stdout lines on a thread, so waiting for one can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._q: "queue.Queue[Optional[str]]" = queue.Queue()
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, prefix: str, deadline: float) -> str:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line starting with {prefix!r}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"process ended before printing {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Replica:
    """A server process started by the tests."""

    proc: subprocess.Popen
    address: str
    log: IO[str]

    def stop(self) -> None:
        _stop(self.proc, 15)
        self.log.close()


class Stack:
    """DynamoDB Local + valkey-server + the server (devstack), and optional replicas."""

    def __init__(self, workdir: Path, *, build: bool = True, startup_timeout: float = 120) -> None:
        self.workdir = workdir
        if build:
            subprocess.run(["go", "build", "-o", str(BUILD) + "/", "./cmd/..."], cwd=REPO, check=True)
        self._log = open(workdir / "devstack.log", "w")
        self._proc = subprocess.Popen(
            [str(BUILD / "devstack"), "-dynamodb-port", "0", "-valkey-port", "0", "--",
             str(BUILD / "featurestore"), "-listen", "127.0.0.1:0", *SERVER_FLAGS],
            cwd=REPO, env=dict(os.environ, FS_GDPR_HASH_KEY=GDPR_HASH_KEY),
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.replicas: list[Replica] = []
        try:
            assert self._proc.stdout is not None
            lines = _Lines(self._proc.stdout)
            deadline = time.monotonic() + startup_timeout
            self.dynamodb = lines.wait_for("DynamoDB Local:", deadline)
            self.valkey = lines.wait_for("valkey-server:", deadline)
            self.address = lines.wait_for("listening on", deadline)
        except BaseException:
            self.close()
            raise

    def start_replica(self, *args: str, startup_timeout: float = 60) -> Replica:
        """Starts another server process over the same DynamoDB Local and ValKey."""
        log = open(self.workdir / f"replica-{len(self.replicas)}.log", "w")
        env = dict(os.environ, FS_DYNAMODB_ENDPOINT=self.dynamodb, FS_VALKEY_ADDRS=self.valkey,
                   FS_GDPR_HASH_KEY=GDPR_HASH_KEY)
        proc = subprocess.Popen([str(BUILD / "featurestore"), "-listen", "127.0.0.1:0", *SERVER_FLAGS, *args],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None
        try:
            addr = _Lines(proc.stdout).wait_for("listening on", time.monotonic() + startup_timeout)
        except BaseException:
            _stop(proc, 5)
            log.close()
            raise
        r = Replica(proc, addr, log)
        self.replicas.append(r)
        return r

    def close(self) -> None:
        """Stops the replicas, then devstack (which stops the server, ValKey and
        DynamoDB Local)."""
        for r in self.replicas:
            r.stop()
        _stop(self._proc, 30)
        self._log.close()
