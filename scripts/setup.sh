#!/usr/bin/env bash
# Idempotent setup: apt peers (when root), the venv with pinned torch, the project in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

# apt peers and tools the service and its tests use: DCMTK and Orthanc (+ DICOMweb plugin) as real DICOM peers,
# tesseract (+ language models) and fonts for text in the pixels, PostgreSQL for the cluster ledger tests,
# Chromium + chromedriver for the web console's browser tests, libturbojpeg for the block-exact JPEG encoder's
# one-pass transform (anonymizer/jpeg_transform.py; without it a slower path writes the same bytes).
APT_PEERS="dcmtk orthanc orthanc-dicomweb openssl tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu \
tesseract-ocr-fra fonts-dejavu fonts-liberation postgresql chromium chromium-driver libturbojpeg0"
need_apt=()
for f in /usr/bin/storescu /usr/sbin/Orthanc /usr/bin/openssl /usr/share/orthanc/plugins/libOrthancDicomWeb.so \
         /usr/bin/tesseract /usr/share/tesseract-ocr/5/tessdata/{eng,deu,fra}.traineddata \
         /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf \
         /usr/lib/postgresql /usr/bin/chromium /usr/bin/chromedriver /usr/lib/x86_64-linux-gnu/libturbojpeg.so.0; do
  [ -e "$f" ] || need_apt+=("$f")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $APT_PEERS >/dev/null
  else
    echo "missing ${need_apt[*]}: run as root or 'sudo apt-get install $APT_PEERS'" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade "pip<26" "setuptools<81" wheel
  # torch and torchvision in one command: see README "Install on a GPU server".
  "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 -e ".[dev]"
  # face_recognition's declared deps would build dlib from source; dlib-bin provides the module.
  "$VENV/bin/pip" install -q --no-deps face_recognition==1.3.0
  touch "$stamp"
fi
