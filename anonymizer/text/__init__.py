"""Text in the pixels (name cards, wristbands, overlays, date stamps): detect, redact, verify, or hold.

Entry point: :func:`anonymizer.text.step.scrub`. Detection proposals: :mod:`anonymizer.text.detect`;
OCR (tesseract via tesserocr): :mod:`anonymizer.text.ocr`.
"""
