"""Association negotiation for the lean SCP: pynetdicom decodes the A-ASSOCIATE-RQ, negotiates the
presentation contexts (``negotiate_as_acceptor``) and encodes the A-ASSOCIATE-AC; the outcome is remembered
per request.

Why remember it: a sender proposes the same contexts on every association (DCMTK ``storescu -xy`` offers
128), and pynetdicom's decode, negotiation and encode of those cost ~8 ms of CPU per association, as much as
four photos' whole receive. The outcome depends only on the RQ's bytes and the listener's supported contexts,
so the cache key is the RQ without its two AE-title fields (those go to the admission gate and are echoed in
the AC); the AE titles of every RQ are still validated by pynetdicom's own setters.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

AE_TITLES = slice(10, 42)  # called + calling AE title in an A-ASSOCIATE-RQ and -AC PDU (PS3.8 §9.3.2, §9.3.3)


def ae_titles(request: bytes) -> tuple[str, str]:
    """(calling, called) AE title of an A-ASSOCIATE-RQ PDU; ValueError/TypeError when pynetdicom refuses
    one."""
    probe = A_ASSOCIATE_RQ()
    probe.called_ae_title = bytes(request[10:26])
    probe.calling_ae_title = bytes(request[26:42])
    return str(probe.calling_ae_title), str(probe.called_ae_title)


@dataclass(frozen=True)
class Negotiated:
    """The accepted contexts (by context ID; shared, read only) and the A-ASSOCIATE-AC for one RQ."""

    contexts: dict[int, PresentationContext]
    accept_template: bytes

    def accept(self, request: bytes) -> bytes:
        """The A-ASSOCIATE-AC for ``request``: its AE-title fields returned as received (PS3.8 §9.3.3)."""
        return (
            self.accept_template[: AE_TITLES.start]
            + bytes(request[AE_TITLES])
            + self.accept_template[AE_TITLES.stop :]
        )


def negotiate(request: bytes, supported: list[PresentationContext], max_pdu: int) -> Negotiated:
    """Decode the RQ, negotiate, encode the AC (pynetdicom throughout); raises on a value it refuses."""
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(bytes(request))
    rq = pdu.to_primitive()
    roles = {
        item.sop_class_uid: (item.scu_role, item.scp_role)
        for item in rq.user_information
        if isinstance(item, SCP_SCU_RoleSelectionNegotiation)
    }
    results, ac_roles = negotiate_as_acceptor(rq.presentation_context_definition_list, supported, roles)
    contexts = {cx.context_id: cx for cx in results if cx.result == 0x00}
    return Negotiated(contexts, accept_pdu(rq, results, ac_roles, max_pdu))


def accept_pdu(rq: A_ASSOCIATE, results: list[PresentationContext], roles: list[Any], max_pdu: int) -> bytes:
    ac = A_ASSOCIATE()
    ac.application_context_name = rq.application_context_name
    ac.calling_ae_title, ac.called_ae_title = rq.calling_ae_title, rq.called_ae_title
    ac.result, ac.result_source = 0x00, 0x01
    ac.presentation_context_definition_results_list = results
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = max_pdu
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    ac.user_information = [max_length, class_uid, version, *roles]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(ac)
    return bytes(pdu.encode())


class Negotiations:
    """The last ``size`` negotiation outcomes of one listener, keyed by the RQ without its AE titles."""

    def __init__(self, supported: list[PresentationContext], max_pdu: int, size: int = 32) -> None:
        self.supported, self.max_pdu, self.size = supported, max_pdu, size
        self._known: OrderedDict[bytes, Negotiated] = OrderedDict()
        self._lock = threading.Lock()

    def for_request(self, request: bytes) -> Negotiated:
        key = bytes(request[: AE_TITLES.start]) + bytes(request[AE_TITLES.stop :])
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
                return known
        negotiated = negotiate(request, self.supported, self.max_pdu)
        with self._lock:
            self._known[key] = negotiated
            while len(self._known) > self.size:
                self._known.popitem(last=False)
        return negotiated
