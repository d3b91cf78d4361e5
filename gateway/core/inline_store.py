"""C-STORE requests served on the thread that read them: two thread hand-offs less per instance.

pynetdicom runs two threads per association. The DUL thread reads PDUs and assembles DIMSE messages; a
complete message goes through a queue to the association thread, which runs the service class (our C-STORE
handler) and queues the response back to the DUL thread, which encodes and sends it. On a busy 2-core machine
each of those hand-offs waits for the other thread to be scheduled and to take the GIL: measured 0.6-1.5 ms
each way per instance (``bench/receive_split.py``), as much as the handler's own Python work.

:class:`InlineStoreQueue` is the DIMSE provider's message queue with one change: a valid C-STORE request
that arrives while nothing else is queued is served at once, on the DUL thread, through pynetdicom's own
``Association._serve_request`` (service class, status validation, response encoding: the protocol stays
pynetdicom's). The response it queues is sent by the same thread on its next loop turn. Anything else
(C-ECHO, a release, a C-STORE behind a queued message, so answers keep their order) takes pynetdicom's usual
path. While the handler runs the DUL thread reads nothing more, which is what a sender waiting for its answer
expects anyway (the gateway negotiates no asynchronous operations window). Why not drive the DIMSE
primitives ourselves: the queue is the one narrow seam where pynetdicom hands a decoded message over; taking
it there keeps every encoder, status check and event of pynetdicom in use, and a pynetdicom upgrade that
changes the seam is caught by the tests that send real C-STOREs (``tests/gateway/test_scp.py``).
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from pynetdicom.dimse_primitives import C_STORE

from gateway.core.pdu_guard import PatientQueue

LOG = structlog.get_logger(__name__)


class InlineStoreQueue(PatientQueue):
    """The DIMSE message queue of one association; serves lone C-STORE requests in the caller's thread."""

    def __init__(self, assoc: Any, wait_s: float = 0.02) -> None:
        super().__init__(wait_s)
        self.assoc = assoc
        abort_without_waiting_on_the_dul(assoc)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        context_id, primitive = item
        if self._serves_inline(context_id, primitive):
            try:
                self.assoc._serve_request(primitive, context_id)
            except Exception as exc:  # pynetdicom logs handler errors itself; this is its own failure
                LOG.error("scp.inline_store_failed", error=type(exc).__name__)
                self.assoc.abort()
            return
        super().put(item, block, timeout)

    def _serves_inline(self, context_id: Any, primitive: Any) -> bool:
        """A valid C-STORE request on an accepted context with nothing queued before it; anything else
        (an unknown context ID, which pynetdicom answers with an A-ABORT, included) takes the usual path."""
        assoc = self.assoc
        return (
            isinstance(primitive, C_STORE)
            and primitive.is_valid_request
            and context_id in assoc._accepted_cx
            and assoc.is_established
            and self.empty()
        )


def abort_without_waiting_on_the_dul(assoc: Any) -> None:
    """pynetdicom's blocking abort waits for the DUL thread to stop; called *on* the DUL thread (an error in
    an inline C-STORE) it would wait for itself. There it queues the A-ABORT and returns, as pynetdicom's
    own event handlers do (its non-blocking abort); from any other thread it blocks as before."""
    blocking, dul = assoc._abort_blocking, assoc.dul

    def abort(block: bool = True) -> None:
        blocking(block and threading.current_thread() is not dul)

    assoc._abort_blocking = abort  # pynetdicom swaps ``abort`` between this and its non-blocking one
    assoc.abort = abort
