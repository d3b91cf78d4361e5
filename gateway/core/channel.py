"""Messages between the gateway's main process and its receiver processes (gateway/core/receivers.py).

One AF_UNIX stream socket pair per receiver. A message is a 4-byte length and a pickled tuple; a socket the
main process hands over travels with the message (SCM_RIGHTS), attached to its first bytes. Both ends are
our own processes (started by the main process with the pair's other end), so pickle is safe here.
"""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from typing import Any

LENGTH = struct.Struct(">I")


class Channel:
    """One end of a receiver's socket pair; ``send`` may be called from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: tuple[Any, ...], fds: tuple[int, ...] = ()) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        frame = LENGTH.pack(len(data)) + data
        with self._send_lock:
            sent = socket.send_fds(self.sock, [frame], list(fds)) if fds else 0
            self.sock.sendall(memoryview(frame)[sent:])

    def receive(self) -> tuple[tuple[Any, ...], list[int]] | None:
        """The next message and the descriptors that came with it; None when the other end closed."""
        head, fds, _, _ = socket.recv_fds(self.sock, LENGTH.size, 4)
        if not head:
            return None
        head += self._exact(LENGTH.size - len(head))
        return pickle.loads(self._exact(LENGTH.unpack(head)[0])), fds

    def _exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            chunk = self.sock.recv(min(n - got, 1 << 20))
            if not chunk:
                raise ConnectionResetError("channel closed mid-message")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        self.sock.close()


def pair() -> tuple[Channel, socket.socket]:
    """The main process's channel and the socket to pass to the receiver process (inheritable)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.set_inheritable(True)
    return Channel(ours), theirs
