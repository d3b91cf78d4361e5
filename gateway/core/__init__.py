"""Receive and processing path: SCP, intake, spool, ledger, scheduler, pipeline workers, forwarder."""
