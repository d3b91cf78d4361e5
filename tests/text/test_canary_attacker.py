"""The bench's attacker OCR: what counts as a canary token read on an output."""

from __future__ import annotations

from anonymizer.evaluation.canary_text import tokens_in

TOKENS = ("KOWALSKI", "ANNA", "MRN", "24490843")


def test_a_token_read_whole_split_or_merged_counts() -> None:
    assert tokens_in(TOKENS, ["MRN 2449 0843"]) == {"MRN", "24490843"}
    assert tokens_in(TOKENS, ["KOWALSKI,ANNA"]) == {"KOWALSKI", "ANNA"}
    assert tokens_in(TOKENS, ["KOWAL SKI\nxx"]) == {"KOWALSKI"}


def test_a_name_inside_a_long_run_of_noise_letters_does_not() -> None:
    """A fill's bright edge read as "_poorecenenneneeneeereememanananannananmansntdat..." holds "ANNA"."""
    noise = "_poorecenenneneeneeereememanananannananmansntdatanntatnsannnensnunnteceninnnnnnennatiniiin"
    assert tokens_in(TOKENS, [noise, "SS"]) == set()
    assert tokens_in(TOKENS, [noise, "ANNA"]) == {"ANNA"}
