#!/usr/bin/env bash
# Fuzz hone's parsers with libFuzzer (fuzz/fuzz_<name>.c), one target at a time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 600 s, every target)
#
# Installs clang and libFuzzer if they are missing (Debian: clang, libclang-rt-dev,
# libomp-dev), configures and builds build-fuzz with -DHONE_FUZZ=ON (ASan + UBSan, UBSan
# aborting), and runs each target on a working corpus (build-fuzz/corpus/<name>, kept
# between runs) seeded from tests/fixtures/fuzz/<name>/ and real files from the tree.
# Writes one summary row per target to benchmarks/results/fuzz/summary.md and the tail
# of its log to benchmarks/results/fuzz/<name>.log; crashing inputs go to
# build-fuzz/findings/<name>/ (FUZZ_FINDINGS to change). Exits 1 if any target found
# something. A finding's minimised input belongs in tests/fixtures/fuzz/<name>/ with the
# fix, where test_fuzz_<name> replays it.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-600}
[ $# -gt 0 ] && shift
ALL=(gguf safetensors tokenizer_gpt2 tokenizer_json config_yaml jsonl shards ckpt_schema)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
BUILD=${FUZZ_BUILD:-build-fuzz}
FINDINGS=${FUZZ_FINDINGS:-$BUILD/findings}
RESULTS=benchmarks/results/fuzz
JOBS=${FUZZ_BUILD_JOBS:-2}

# ---- clang with libFuzzer ----
find_clang() {
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        command -v $c >/dev/null 2>&1 || continue
        echo 'int LLVMFuzzerTestOneInput(const char*d,long n){return 0;}' > /tmp/hone_fz_probe.c
        if $c -fsanitize=fuzzer,address /tmp/hone_fz_probe.c -o /tmp/hone_fz_probe 2>/dev/null; then
            echo $c
            return 0
        fi
    done
    return 1
}
CC_FUZZ=$(find_clang)
if [ -z "$CC_FUZZ" ]; then
    echo "fuzz.sh: no clang with libFuzzer; installing clang libclang-rt-dev libomp-dev" >&2
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -q && $SUDO apt-get install -y -q clang libclang-rt-dev libomp-dev ||
        $SUDO apt-get install -y -q clang libomp-dev
    CC_FUZZ=$(find_clang) || { echo "fuzz.sh: cannot get a clang with libFuzzer" >&2; exit 2; }
fi

# ---- build ----
cmake -S . -B "$BUILD" -DHONE_FUZZ=ON -DCMAKE_C_COMPILER="$CC_FUZZ" -DHONE_CUDA=OFF \
    -DHONE_MPI=OFF -DCMAKE_BUILD_TYPE=Release > "$BUILD.configure.log" 2>&1 ||
    { tail -20 "$BUILD.configure.log"; exit 2; }
rm -f "$BUILD.configure.log"
cmake --build "$BUILD" -j"$JOBS" --target $(printf 'fuzz_%s ' "${TARGETS[@]}") 2>&1 | tail -5
for t in "${TARGETS[@]}"; do
    [ -x "$BUILD/fuzz/fuzz_$t" ] || { echo "fuzz.sh: fuzz_$t did not build" >&2; exit 2; }
done

# ---- seeds: the committed corpus plus real files (big ones are cut; none go to git) ----
seed() { # seed TARGET FILE [PREFIX_BYTES_HEX]
    local dir=$BUILD/corpus/$1 f=$2
    [ -f "$f" ] || return 0
    local name
    name=seed_$(echo "$f" | tr '/' '_')
    if [ $# -ge 3 ]; then
        { printf "$3"; head -c 16384 "$f"; } > "$dir/$name"
    else
        head -c 65536 "$f" > "$dir/$name"
    fi
}
seeds() {
    local t=$1 f
    case $t in
    gguf)
        for f in tests/fixtures/gguf/*.gguf tests/fixtures/tokenizer/*.gguf models/*.gguf; do
            seed gguf "$f"
        done ;;
    safetensors)
        for f in tests/fixtures/*.safetensors tests/fixtures/peft*/*.safetensors \
            tests/fixtures/hf/*/*.safetensors; do seed safetensors "$f"; done ;;
    tokenizer_gpt2)
        local d=tests/fixtures/hf/gpt2_tiny
        { cat $d/vocab.json; printf '\0'; cat $d/merges.txt; } > "$BUILD/corpus/$t/seed_gpt2_tiny" ;;
    tokenizer_json)
        for f in tests/fixtures/hf/*/tokenizer.json; do seed tokenizer_json "$f"; done ;;
    config_yaml)
        for f in configs/*.yaml tests/fixtures/*/*.yaml; do seed config_yaml "$f"; done ;;
    jsonl)
        for f in configs/*.jsonl tests/fixtures/*/*.jsonl; do
            seed jsonl "$f" '\x00\x00'; seed jsonl "$f" '\x02\x00'; seed jsonl "$f" '\x03\x00'
        done ;;
    shards)
        for f in tests/fixtures/smollm2/*.bin; do seed shards "$f" '\x01\x07\x01\x00'; done ;;
    esac
}
max_len() {
    case $1 in
    gguf) echo 65536 ;; safetensors | tokenizer_gpt2 | tokenizer_json) echo 16384 ;;
    shards) echo 8192 ;; ckpt_schema) echo 1024 ;; *) echo 4096 ;;
    esac
}

# ---- run ----
mkdir -p "$RESULTS"
SUMMARY=$RESULTS/summary.md
[ -f "$SUMMARY" ] || cat > "$SUMMARY" <<'HEAD'
# Fuzzing hone's parsers (scripts/fuzz.sh)

One row per target, from its latest run: libFuzzer with ASan + UBSan, one target at a time.
`cov` and `ft` are libFuzzer's edge coverage and features at the end of the run; `corpus`
the working corpus's size then; `findings` the inputs that crashed, leaked or hung. A full
run (8 targets x 600 s, one at a time, plus the build) takes about 85 minutes.

| target | seconds | execs | exec/s | cov | ft | corpus | findings | finished (UTC) |
|---|---|---|---|---|---|---|---|---|
HEAD
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=0:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1
found=0
for t in "${TARGETS[@]}"; do
    corpus=$BUILD/corpus/$t
    mkdir -p "$corpus" "$FINDINGS/$t"
    cp tests/fixtures/fuzz/$t/* "$corpus/" 2>/dev/null
    seeds $t
    before=$(ls "$FINDINGS/$t" | wc -l)
    log=$BUILD/fuzz_$t.log
    start=$(date +%s)
    echo "fuzz.sh: $t for ${SECS} s (corpus $(ls "$corpus" | wc -l) files)" >&2
    scratch=$(mktemp -d)
    TMPDIR=$scratch "$BUILD/fuzz/fuzz_$t" "$corpus" -max_total_time="$SECS" \
        -max_len="$(max_len $t)" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$FINDINGS/$t/" > "$log" 2>&1
    rc=$?
    rm -rf "$scratch"
    secs=$(($(date +%s) - start))
    after=$(ls "$FINDINGS/$t" | wc -l)
    new=$((after - before))
    [ $rc -ne 0 ] && [ $new -eq 0 ] && new=1 # a crash that left no input is a finding too
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    size=$(ls "$corpus" | wc -l)
    tail -n 40 "$log" > "$RESULTS/$t.log"
    row="| $t | $secs | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | $size | $new | $(date -u +%FT%TZ) |"
    { grep -v "^| $t |" "$SUMMARY"; echo "$row"; } > "$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
    echo "$row"
    if [ $new -gt 0 ]; then
        found=1
        echo "fuzz.sh: $t FOUND $new input(s) in $FINDINGS/$t (log: $RESULTS/$t.log)" >&2
    fi
done
exit $found
