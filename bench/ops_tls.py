"""Cost of DICOM TLS on the gateway's receive path: the same objects sent by DCMTK storescu over one
association to the gateway's plain port and to its TLS port (BCP 195, mutual certificates), in one run.

    .venv/bin/python bench/ops_tls.py [--count 200] [--side 128]

Prints instances/s and MB/s per port, the TLS/plain ratio, and the median time of a TLS association set-up
(handshake + A-ASSOCIATE + C-ECHO + release) against a plain one. The pipeline is held back (long quiet
period) so only receive -> spool -> ledger is measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

from dicom_rules.decision import FolderDestination, TlsSettings  # noqa: E402
from gateway.core.service import Service  # noqa: E402
from gateway.ops.tls import TlsListenerConfig, client_context  # noqa: E402
from tests.conftest import make_small_sc, write_study  # noqa: E402
from tests.gateway.conftest import gateway_config, rules_to  # noqa: E402
from tests.ops.peers import free_port, storescu  # noqa: E402
from tests.ops.pki import make_pki  # noqa: E402


def _send(port: int, files: list[Path], tls: list[str]) -> float:
    started = time.perf_counter()
    result = storescu(port, files, tls, aec="VERA_GW", timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"storescu failed: {result.stderr[-500:]}")
    return time.perf_counter() - started


def _echo_ms(port: int, tls_args: object, rounds: int = 15) -> float:
    times = []
    for _ in range(rounds):
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(Verification)
        started = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title="VERA_GW", tls_args=tls_args)  # type: ignore[arg-type]
        assert assoc.is_established
        assoc.send_c_echo()
        assoc.release()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--side", type=int, default=128, help="SC side in px (128 -> ~50 kB)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pki = make_pki(tmp / "pki")
        files = write_study(
            tmp / "in", [make_small_sc(side=args.side, number=i + 1) for i in range(args.count)]
        )
        mb = sum(f.stat().st_size for f in files) / 1e6
        listener = TlsListenerConfig(
            port=free_port(),
            certificate=pki.server.certificate,
            private_key=pki.server.private_key,
            ca_bundle=pki.ca,
        )
        config = gateway_config(tmp / "gw", tls=listener, quiet_period_s=3600, metrics_port=None)
        service = Service(config, rules=rules_to(FolderDestination("out", Path("out")))).start()
        client = ["+tls", str(pki.client.private_key), str(pki.client.certificate), "+cf", str(pki.ca)]
        tls_args = (client_context(TlsSettings(pki.client.certificate, pki.client.private_key, pki.ca)), None)
        try:
            plain_s = _send(service.port, files, [])
            files2 = write_study(
                tmp / "in2", [make_small_sc(side=args.side, number=i + 1) for i in range(args.count)]
            )
            tls_s = _send(listener.port, files2, client)
            echo_plain, echo_tls = _echo_ms(service.port, None), _echo_ms(listener.port, tls_args)
        finally:
            service.stop()
    print(f"{args.count} objects, {mb:.1f} MB, one storescu association each")
    print(f"plain : {args.count / plain_s:8.1f} inst/s  {mb / plain_s:7.1f} MB/s")
    print(f"TLS   : {args.count / tls_s:8.1f} inst/s  {mb / tls_s:7.1f} MB/s")
    print(f"TLS/plain throughput ratio: {plain_s / tls_s:.2f}")
    print(f"association set-up + C-ECHO + release, median: plain {echo_plain:.1f} ms, TLS {echo_tls:.1f} ms")


if __name__ == "__main__":
    main()
