#!/usr/bin/env bash
# Set up a fresh Debian machine for hone and build it.
#   scripts/setup.sh            build dependencies + build (Release, in build/)
#   scripts/setup.sh --corpora  also the Debian text corpora the demo and tests use
#   scripts/setup.sh --test     also what the tests need (corpora, Python's h5py for
#                               Debian's /usr/bin/python3)
# Installs only Debian packages (apt-get); needs root or sudo for that step.
set -euo pipefail
cd "$(dirname "$0")/.."

want_corpora=0
want_test=0
for a in "$@"; do
  case "$a" in
    --corpora) want_corpora=1 ;;
    --test) want_corpora=1; want_test=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libyaml-dev libcjson-dev libpcre2-dev libhdf5-dev zlib1g-dev libssl-dev)
[ "$want_corpora" = 1 ] && pkgs+=(jargon-text)
[ "$want_test" = 1 ] && pkgs+=(python3 python3-pip python3-h5py python3-numpy openmpi-bin libopenmpi-dev
                               python3-torch python3-psutil python3-yaml python3-requests)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# the GGUF test compares hone's dequantization with gguf-py's (PyPI), for Debian's Python
if [ "$want_test" = 1 ] && ! /usr/bin/python3 -c "import gguf" 2>/dev/null; then
  echo "setup: installing gguf-py for /usr/bin/python3" >&2
  /usr/bin/python3 -m pip install --break-system-packages --quiet --disable-pip-version-check \
    gguf==0.10.0 sentencepiece
fi

# the export/import interop tests load hone's exports with transformers and peft, pinned to
# versions that work with Debian's torch 1.13; peft and accelerate go in without their
# dependencies, or pip would fetch PyPI's torch (Debian's reports itself as 1.13.0a0)
if [ "$want_test" = 1 ] && ! /usr/bin/python3 -c "import transformers, peft, safetensors" 2>/dev/null; then
  echo "setup: installing transformers 4.46.3 and peft 0.13.2 for /usr/bin/python3" >&2
  /usr/bin/python3 -m pip install --break-system-packages --quiet --disable-pip-version-check \
    transformers==4.46.3 tokenizers==0.20.3 huggingface-hub==0.26.2 "safetensors>=0.4.1"
  /usr/bin/python3 -m pip install --break-system-packages --quiet --disable-pip-version-check \
    --no-deps peft==0.13.2 accelerate==0.33.0
fi

cmake_args=(-S . -B build -DCMAKE_BUILD_TYPE=Release)
[ "${CI:-}" = "true" ] && cmake_args+=(-DHONE_WERROR=ON)
cmake "${cmake_args[@]}" >/dev/null
cmake --build build -j"$(nproc)" 2>&1 | grep -vE "^\[|^gmake|Consolidate compiler generated" || true
test -x build/hone || { echo "setup: build failed" >&2; exit 1; }
echo "setup: built build/hone" >&2
