"""A TCP forwarder on a free loopback port with fault switches, to break connections
between the SDK and a real server at chosen moments."""

from __future__ import annotations

import socket
import struct
import threading


class Proxy:
    """Forwards 127.0.0.1:<free port> to upstream ("host:port").

    ``hold_responses()`` stops forwarding server-to-client bytes (requests still reach the
    server; responses wait), ``release()`` lets them flow again, ``cut()`` resets every
    open connection (held bytes are dropped), ``refuse(True)`` resets new connections as
    they arrive. ``accepted`` counts connections accepted, ``refused`` those of them reset
at once.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._refuse = False
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    _reset(client)
                    return
                refuse = self._refuse
                self.accepted += 1
            if refuse:
                with self._lock:
                    self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                _reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.append((client, upstream))
            for src, dst, down in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, down), daemon=True)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if down:
                    while not self._flowing.wait(0.02):
                        if src.fileno() < 0 or dst.fileno() < 0:
                            return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def hold_responses(self) -> None:
        """Stops forwarding server-to-client bytes."""
        self._flowing.clear()

    def release(self) -> None:
        """Forwards server-to-client bytes again."""
        self._flowing.set()

    def refuse(self, on: bool) -> None:
        """Resets new connections while on."""
        with self._lock:
            self._refuse = on

    def cut(self) -> int:
        """Resets every open connection; returns how many."""
        with self._lock:
            conns, self._conns = self._conns, []
        for client, upstream in conns:
            _reset(client)
            _reset(upstream)
        return len(conns)

    def close(self) -> None:
        """Stops accepting and resets every connection."""
        with self._lock:
            self._closed = True
        for op in (lambda: self._listener.shutdown(socket.SHUT_RDWR), self._listener.close):
            try:
                op()
            except OSError:
                pass
        self.cut()
        self._flowing.set()


def _reset(s: socket.socket) -> None:
    """Closes abruptly (SO_LINGER 0: an RST once the last reference goes). shutdown()
    first, because close() alone does not end a connection while a pump thread is
    blocked in recv() on it."""
    for op in (lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
               lambda: s.shutdown(socket.SHUT_RDWR), s.close):
        try:
            op()
        except OSError:
            pass

