"""A TCP relay the tests can cut: stopping it makes a server unreachable without losing its state.

moto's S3 server keeps everything in memory, so restarting it would also lose the bucket; an
outage test needs "unreachable", not "wiped".
"""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.listen_port, self.target = listen_port, target
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.listen_port))
        server.listen(64)
        server.settimeout(0.2)
        self._server = server
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads = [thread]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self._server:
            self._server.close()
            self._server = None
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (a, b):
                with self._lock:
                    self._conns.discard(sock)
                sock.close()
