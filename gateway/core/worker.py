"""Process-pool entry points: the scheduler (parent) submits these; each imports the pipeline (and with it
the pixel stage and torch) only inside the worker, so the service process stays light."""

from __future__ import annotations

from gateway.core.jobs import JobResult, JobSpec


def run_job(spec: JobSpec) -> JobResult:
    """Pool entry point: imports the pipeline (and the pixel stage) only inside the worker."""
    from gateway.core.pipeline import process_job

    return process_job(spec)


def init_worker(
    secret: bytes, donor_bank: str | None = None, log_level: str | None = None, main_pid: int | None = None
) -> None:
    """Pool initializer. With ``main_pid`` (a pool worker) the worker ends when that process ends."""
    if main_pid is not None:
        from gateway.core.lifeline import die_with_parent, exit_with

        die_with_parent()
        exit_with(main_pid)
    from gateway.core.pipeline import init_worker as init

    init(secret, donor_bank, log_level)


def warm_up() -> bool:
    """Import the pipeline in a fresh worker before the first job arrives."""
    import gateway.core.pipeline  # noqa: F401

    return True
