#!/usr/bin/env bash
# Idempotent setup: apt peers (when root), the venv with pinned torch, the project in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
# postgresql: the cluster tests run initdb/pg_ctl in a temp dir as the postgres system user it creates
for bin in /usr/bin/storescu /usr/sbin/Orthanc /usr/bin/openssl /usr/lib/postgresql; do
  [ -x "$bin" ] || need_apt+=("$bin")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk orthanc openssl postgresql >/dev/null
  else
    echo "missing ${need_apt[*]}: run as root or 'sudo apt-get install dcmtk orthanc openssl postgresql'" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade "pip<26" "setuptools<81" wheel
  # torch and torchvision in one command: see docs in README (Installing).
  "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 -e ".[dev]"
  # face_recognition's declared deps would build dlib from source; dlib-bin provides the module.
  "$VENV/bin/pip" install -q --no-deps face_recognition==1.3.0
  touch "$stamp"
fi
