"""Evaluation of pixel anonymization: de-identification, pair consistency, donor leakage, region fidelity."""
