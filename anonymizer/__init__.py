"""VerA anonymizer: a pure library (no networking) for de-identifying clinical facial photographs.

Public entry points:
- :mod:`anonymizer.plans` — the typed plans a caller passes in (pixel plan, metadata plan).
- :mod:`anonymizer.keys` — keyed, deterministic pseudonyms, UIDs, date offsets and identity seeds.
- :mod:`anonymizer.metadata` — PS3.15 header de-identification.
- :mod:`anonymizer.pixels` — the pixel stage: decode, find faces, anonymize with an engine, verify, encode.
"""
