"""A local TCP port forwarded over an SSH connection to a port on the remote's loopback.

``LocalForward(transport, remote_port)`` listens on 127.0.0.1 (a free port,
``.port``); each connection to it opens a ``direct-tcpip`` channel to
``127.0.0.1:remote_port`` on the far side, and two threads copy bytes until
either side closes. Used to reach a service that listens only on a remote
host's loopback (a drill's scratch PostgreSQL) with local clients (libpq),
without opening it to the network.
"""
from __future__ import annotations

import socket
import threading

BUF = 1 << 16


class LocalForward:
    """Forwarding until ``close()``; also a context manager."""

    def __init__(self, transport, remote_port: int, *, what: str = ""):
        self.transport = transport
        self.remote_port = remote_port
        self.what = what
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._open: list = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="opskit-forward", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return                                  # closed
            try:
                chan = self.transport.open_channel("direct-tcpip",
                                                   ("127.0.0.1", self.remote_port), peer)
            except Exception:                           # the client sees a closed connection
                conn.close()
                continue
            with self._lock:
                self._open += [conn, chan]
            for src, dst in ((conn, chan), (chan, conn)):
                threading.Thread(target=_copy, args=(src, dst), daemon=True,
                                 name="opskit-forward-copy").start()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            things, self._open = self._open, []
        for thing in things:
            try:
                thing.close()
            except Exception:
                pass

    def __enter__(self) -> "LocalForward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _copy(src, dst) -> None:
    """Bytes from ``src`` to ``dst`` until ``src`` ends; then half-close ``dst``."""
    try:
        while True:
            data = src.recv(BUF)
            if not data:
                break
            dst.sendall(data)
    except Exception:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR) if isinstance(dst, socket.socket) else dst.shutdown_write()
        except Exception:
            pass


class Direct:
    """The "forward" of a local host: the port itself, nothing to close."""

    def __init__(self, port: int):
        self.port = port

    def close(self) -> None:
        pass

    def __enter__(self) -> "Direct":
        return self

    def __exit__(self, *exc) -> None:
        pass
