#!/usr/bin/env bash
# The GPU check: one command that builds hone's CUDA backend on a bare GPU machine and runs
# the gpu tests (ctest -L gpu, with HONE_REQUIRE_GPU=1 so a missing GPU fails rather than
# skips), then the GPU benchmarks (benchmarks/bench_cuda*.c) when there are any.
#
# The GPU machine has CUDA (nvcc), CMake, ninja and Python, but no network and none of the
# Debian libraries hone links (OpenBLAS, libyaml, libcjson, libpcre2, libhdf5). They travel
# as .deb files in the git-ignored folder .deb/ and are unpacked into a private prefix,
# never into /:
#
#   scripts/gpu_check.sh --prepare   here, where apt works: apt-get download the packages
#                                    into .deb/ and print their size
#   scripts/gpu_check.sh             there: unpack .deb/ into $HONE_PREFIX (/tmp/hone-prefix),
#                                    configure (Ninja, -DHONE_CUDA=ON, sm_90), build the gpu
#                                    tests, run them, run the GPU benchmarks
#
# Only what compiles and links hone is fetched: headers, .so links, pkg-config files and
# the runtime libraries they point to, not the -dev packages' full closure (libhdf5-dev
# depends on Fortran, C++, libjpeg and curl development packages hone never uses). The
# runtime libraries those need in turn (libgfortran for OpenBLAS; libcurl and its closure,
# which libhdf5_serial.so.103 names as NEEDED) usually exist on the machine already: each of
# those FALLBACK packages is unpacked only when the machine lacks one of its libraries, so
# hone never runs against an older copy of a library the machine has.
#
# Logs and results go to $OUT when it is set (the device tool's folder), else to
# benchmarks/results/: gpu_check.log (every stage, timed), gpu_ctest.log (ctest's output),
# gpu_bench.log (the benchmarks'). Each is written as its stage runs, so what a stage printed
# survives a timeout. Exits non-zero if any stage failed.
#
# Environment: HONE_PREFIX (unpack here), HONE_GPU_BUILD (build folder, default
# build-gpucheck/), HONE_CUDA_ARCH (default 90), HONE_JOBS (default 16).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEB_DIR=$ROOT/.deb
MA=x86_64-linux-gnu

# always unpacked: hone compiles and links against exactly these
CORE_PKGS=(
    libopenblas0-openmp libopenblas-openmp-dev
    libyaml-0-2 libyaml-dev
    libcjson1 libcjson-dev
    libpcre2-8-0 libpcre2-dev
    libhdf5-103-1 libhdf5-dev libsz2 libaec0
    libssl3 libssl-dev
    pkgconf-bin libpkgconf3
)
# unpacked only where the machine lacks one of their shared libraries: what OpenBLAS
# (libgfortran, libgomp) and libhdf5 (zlib, libcurl and its closure) load at run time
FALLBACK_PKGS=(
    libgfortran5 libquadmath0 libgomp1 zlib1g
    libcurl4 libbrotli1 libgssapi-krb5-2 libidn2-0 libldap-2.5-0 libnghttp2-14 libpsl5
    librtmp1 libssh2-1 libzstd1 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1
    libcom-err2 libsasl2-2 libsasl2-modules-db libdb5.3 libgnutls30 libhogweed6 libnettle8
    libgmp10 libp11-kit0 libffi8 libtasn1-6 libunistring2
)
# run-time dependencies every glibc system with a C compiler has
ASSUMED_PKGS=(libc6 libgcc-s1 gcc-12-base)

die() {
    echo "gpu_check: $*" >&2
    exit 1
}

pkg_of() { # the package name of a .deb file (name_version_arch.deb)
    local base
    base=$(basename "$1")
    echo "${base%%_*}"
}

in_list() { # in_list WORD LIST...
    local w=$1
    shift
    local x
    for x in "$@"; do [ "$x" = "$w" ] && return 0; done
    return 1
}

# ---- --prepare: download the packages (here, where apt works) ----

prepare() {
    command -v apt-get >/dev/null || die "--prepare needs apt-get (run it on the development machine)"
    git -C "$ROOT" check-ignore -q "$DEB_DIR/x.deb" ||
        die "$DEB_DIR is not git-ignored: add /.deb/ to .gitignore first"
    local tmp
    tmp=$(mktemp -d) || die "mktemp failed"
    # apt's sandbox user must be able to write there
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "${CORE_PKGS[@]}" "${FALLBACK_PKGS[@]}") ||
        die "apt-get download failed (run apt-get update first?)"
    mkdir -p "$DEB_DIR"
    local deb p
    for p in "${CORE_PKGS[@]}" "${FALLBACK_PKGS[@]}"; do
        rm -f "$DEB_DIR/${p}"_*.deb # an older version would be unpacked beside the new one
    done
    mv "$tmp"/*.deb "$DEB_DIR/" && rmdir "$tmp"

    # every run-time dependency of what was fetched was fetched too (the -dev packages'
    # own dependencies are what this script deliberately leaves out)
    local missing=0 dep
    for deb in "$DEB_DIR"/*.deb; do
        p=$(pkg_of "$deb")
        in_list "$p" "${CORE_PKGS[@]}" "${FALLBACK_PKGS[@]}" || continue
        case $p in *-dev) continue ;; esac
        for dep in $(dpkg-deb -f "$deb" Depends Pre-Depends | sed 's/^[A-Za-z-]*: //' |
            tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | sort -u); do
            in_list "$dep" "${CORE_PKGS[@]}" "${FALLBACK_PKGS[@]}" "${ASSUMED_PKGS[@]}" && continue
            echo "gpu_check: $p depends on $dep, which is not fetched" >&2
            missing=1
        done
    done
    [ "$missing" = 0 ] || die "the package lists above miss a run-time dependency"

    local n bytes
    n=$(find "$DEB_DIR" -maxdepth 1 -type f -name '*.deb' | wc -l)
    bytes=$(find "$DEB_DIR" -maxdepth 1 -type f -name '*.deb' -printf '%s\n' | awk '{s += $1} END {print s}')
    echo "gpu_check: $n packages in $DEB_DIR, $(awk -v b="$bytes" 'BEGIN {printf "%.1f MB", b / 1e6}')"
    echo "gpu_check: run on the GPU machine with .deb in the device tool's carry: scripts/gpu_check.sh"
}

# ---- the check (on the GPU machine) ----

RESULTS=${OUT:-$ROOT/benchmarks/results}
LOG=$RESULTS/gpu_check.log
FAILED=()

log() { echo "$*" | tee -a "$LOG"; }

# stage NAME COMMAND...: runs one stage, its output into the log, and times it
stage() {
    local name=$1 start rc
    shift
    log "==== $name: $*"
    start=$(date +%s)
    "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    log "==== $name: $([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - start)) s"
    [ "$rc" = 0 ] || FAILED+=("$name")
    return "$rc"
}

deb_files() { # the shared libraries a .deb installs in the library folders (libfoo.so.N)
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -c "$1"
    else
        ar p "$1" "$(ar t "$1" | grep '^data\.tar')" | tar -tvf -
    fi | awk '{print $(NF - 1) == "->" ? $(NF - 2) : $NF}' |
        grep -E "^\./(usr/)?lib/$MA/lib[^/]*\.so(\.[0-9]+)?\$" | sed 's#.*/##' | sort -u
}

deb_extract() {
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$1" "$2"
    else
        ar p "$1" "$(ar t "$1" | grep '^data\.tar')" | tar -xf - -C "$2"
    fi
}

SYSTEM_LIBS=""
have_lib() { # is a shared library of this name on the machine, outside the prefix?
    local d
    [[ $SYSTEM_LIBS == *" $1 "* ]] && return 0
    for d in /lib/$MA /usr/lib/$MA /lib64 /usr/lib64 /usr/local/lib; do
        [ -e "$d/$1" ] && return 0
    done
    return 1
}

unpack() {
    local deb p lib need n_core=0 n_fallback=0
    shopt -s nullglob
    local debs=("$DEB_DIR"/*.deb)
    [ ${#debs[@]} -gt 0 ] || die "no packages in $DEB_DIR: run scripts/gpu_check.sh --prepare on the development machine, and carry .deb"
    SYSTEM_LIBS=" $({ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | awk 'NR > 1 {print $1}' | tr '\n' ' ') "
    # the prefix is wiped for a clean unpack, so it must be one this script made
    if [ -e "$PREFIX" ] && [ ! -e "$PREFIX/.hone-prefix" ]; then
        echo "$PREFIX exists and was not made by gpu_check.sh: set HONE_PREFIX to a new folder"
        return 1
    fi
    rm -rf "$PREFIX" && mkdir -p "$PREFIX" && touch "$PREFIX/.hone-prefix" || return 1
    for deb in "${debs[@]}"; do
        p=$(pkg_of "$deb")
        if in_list "$p" "${FALLBACK_PKGS[@]}"; then
            need=""
            for lib in $(deb_files "$deb"); do
                have_lib "$lib" || need="$need $lib"
            done
            if [ -z "$need" ]; then
                echo "  $p: the machine has its libraries"
                continue
            fi
            echo "  $p: unpacked for$need"
            n_fallback=$((n_fallback + 1))
        elif in_list "$p" "${CORE_PKGS[@]}"; then
            n_core=$((n_core + 1))
        else
            continue # not this script's
        fi
        deb_extract "$deb" "$PREFIX" || return 1
    done
    echo "  $n_core packages and $n_fallback fallbacks unpacked into $PREFIX"

    local lib_dir=$PREFIX/usr/lib/$MA pc
    # Debian's .pc files name /usr; hdf5.pc is an alternatives link its postinst would make
    for pc in "$lib_dir"/pkgconfig/*.pc "$lib_dir"/openblas-openmp/pkgconfig/*.pc; do
        sed -i -E "s#(^|[=[:space:]]|-I|-L)/usr([/[:space:]]|\$)#\1$PREFIX/usr\2#g" "$pc" || return 1
    done
    cp "$lib_dir/pkgconfig/hdf5-serial.pc" "$lib_dir/pkgconfig/hdf5.pc" || return 1
    [ -e "$lib_dir/openblas-openmp/libopenblas.so" ] || { echo "libopenblas.so missing"; return 1; }
    [ -x "$PREFIX/usr/bin/pkgconf" ] || { echo "pkgconf missing"; return 1; }
}

# the environment that makes CMake, the linker and the tests find the prefix and only it
use_prefix() {
    export PKG_CONFIG="$PREFIX/usr/bin/pkgconf"
    export PKG_CONFIG_LIBDIR="$PREFIX/usr/lib/$MA/pkgconfig:$PREFIX/usr/share/pkgconfig"
    unset PKG_CONFIG_PATH
    export LD_LIBRARY_PATH="$PREFIX/usr/lib/$MA:$PREFIX/lib/$MA:$PREFIX/usr/lib/$MA/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LIBRARY_PATH="$PREFIX/usr/lib/$MA${LIBRARY_PATH:+:$LIBRARY_PATH}"
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH="/usr/local/cuda/bin:$PATH"
    fi
}

describe_machine() {
    nvidia-smi -L || echo "(no nvidia-smi)"
    nvcc --version | tail -n 2 || echo "(no nvcc)"
    cmake --version | head -n 1
    ninja --version 2>/dev/null | sed 's/^/ninja /' || echo "(no ninja)"
    cc --version | head -n 1
    "$PKG_CONFIG" --version | sed 's/^/pkgconf /'
    echo "nproc $(nproc)"
}

configure() {
    local gen=(-G Ninja)
    command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
    local ob=$PREFIX/usr/lib/$MA/openblas-openmp
    # OPENBLAS_* preset: CMakeLists.txt looks for OpenBLAS under /usr first, then asks
    # pkg-config for a plain `openblas`; Debian keeps the OpenMP build's .pc in its own folder
    cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DHONE_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DHONE_WERROR=OFF \
        -DOPENBLAS_LIB="$ob/libopenblas.so" -DOPENBLAS_INC="$PREFIX/usr/include/$MA/openblas-openmp"
}

gpu_tests() { # the tests/gpu/*.c programs
    local f
    for f in "$ROOT"/tests/gpu/*.c; do [ -e "$f" ] && basename "$f" .c; done
}

gpu_benches() { # the benchmarks/bench_cuda*.c programs
    local f
    for f in "$ROOT"/benchmarks/bench_cuda*.c; do [ -e "$f" ] && basename "$f" .c; done
}

build() {
    local targets
    targets=$(gpu_tests; gpu_benches)
    [ -n "$targets" ] || { echo "no tests/gpu/*.c"; return 1; }
    # shellcheck disable=SC2086 # one target a word
    cmake --build "$BUILD" -j "$JOBS" --target $targets
}

run_tests() {
    (cd "$BUILD" && HONE_REQUIRE_GPU=1 ctest -L gpu -V --timeout 240 2>&1) | tee "$RESULTS/gpu_ctest.log"
    return "${PIPESTATUS[0]}"
}

run_benches() {
    local b rc=0
    : >"$RESULTS/gpu_bench.log"
    for b in $(gpu_benches); do
        echo "---- $b" | tee -a "$RESULTS/gpu_bench.log"
        (cd "$ROOT" && "$BUILD/benchmarks/$b") 2>&1 | tee -a "$RESULTS/gpu_bench.log"
        [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    done
    return $rc
}

# NCCL on one rank (dist.nccl: always) must leave training bit-identical to the plain GPU
# run: ten steps of a tiny GPT-2 on the device, both ways, compared entry by entry through
# hone's own sparse delta (0 changed entries)
nccl_check() {
    cmake --build "$BUILD" -j "$JOBS" --target hone || return 1
    local w=$RESULTS/nccl
    rm -rf "$w" && mkdir -p "$w"
    "$BUILD/hone" prepare "$ROOT/README.md" "$ROOT/docs/DESIGN.md" -o "$w/shards" --val 0 >/dev/null || return 1
    cat >"$w/t.yaml" <<YAML
model: {layers: 2, channels: 64, heads: 4, context: 64}
data: {train: "$w/shards/train_*.bin", batch: 4, seq: 64}
train: {steps: 10, device: cuda, sample_tokens: 0, log_every: 5}
YAML
    "$BUILD/hone" train "$w/t.yaml" --set train.out="$w/plain" || return 1
    "$BUILD/hone" train "$w/t.yaml" --set train.out="$w/nccl" --set dist.nccl=always || return 1
    "$BUILD/hone" export "$w/nccl/latest.h5" --format delta --base "$w/plain/latest.h5" \
        -o "$w/delta.h5" --force | tee "$w/delta.txt"
    grep -q "delta: 0 of .* rows changed" "$w/delta.txt"
}

check() {
    PREFIX=${HONE_PREFIX:-/tmp/hone-prefix}
    BUILD=${HONE_GPU_BUILD:-$ROOT/build-gpucheck}
    ARCH=${HONE_CUDA_ARCH:-90}
    JOBS=${HONE_JOBS:-16}
    mkdir -p "$RESULTS" || die "cannot create $RESULTS"
    : >"$LOG"
    log "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    local t0
    t0=$(date +%s)
    stage unpack unpack || die "unpacking failed; see $LOG"
    use_prefix
    stage machine describe_machine
    if stage configure configure && stage build build; then
        stage test run_tests
        stage nccl nccl_check
        if [ -n "$(gpu_benches)" ]; then
            stage bench run_benches
        else
            log "==== bench: no GPU benchmarks (benchmarks/bench_cuda*.c) yet: skipped"
        fi
    fi
    if [ ${#FAILED[@]} -gt 0 ]; then
        log "gpu_check: FAILED (${FAILED[*]}) after $(($(date +%s) - t0)) s; logs in $RESULTS"
        exit 1
    fi
    log "gpu_check: all stages passed in $(($(date +%s) - t0)) s; logs in $RESULTS"
}

case "${1:-}" in
--prepare) prepare ;;
"") check ;;
-h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown argument $1 (--prepare, or none)" ;;
esac
