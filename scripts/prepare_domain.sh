#!/usr/bin/env bash
# A real domain corpus: the Linux programming manual (Debian's manpages-dev, sections 2 and
# 3), one plain-text file per page, split by page into train/val/test, and token shards.
#
#   scripts/prepare_domain.sh                                  # byte tokenizer
#   scripts/prepare_domain.sh --tokenizer models/smollm2.h5    # a model's tokenizer
#
# Writes corpus/manpages/{train,val,test}/NAME.SECTION.txt, the question set
# corpus/manpages/qa/{train,test}_{mc,gen}.jsonl (scripts/make_qa.py), and shards/manpages/{train,val,test}/
# (each a `hone prepare` folder: the train split's shards are train_*.bin, the val and test
# splits' are their own folders' train_*.bin, every page a document; see below). A page is in
# exactly one split, chosen by a hash of its name (90/5/5), so reruns and other machines agree.
# Only the package's real pages count: its alias pages (symlinks such as _Exit.2 -> _exit.2)
# would put one text in two splits. Idempotent: pages already rendered are not rendered again,
# and a split is re-tokenized only when its pages or the tokenizer changed.
set -euo pipefail
cd "$(dirname "$0")/.."

tokenizer=byte
while [ $# -gt 0 ]; do
  case "$1" in
    --tokenizer) tokenizer="${2:?--tokenizer needs byte or a checkpoint CKPT.h5}"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prepare_domain.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$tokenizer" = byte ] || [ -r "$tokenizer" ] || { echo "prepare_domain.sh: $tokenizer is missing" >&2; exit 1; }

# the packages: the pages, and man-db + groff to render them
missing=()
for p in manpages-dev man-db groff-base; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# a container's dpkg may be told to skip /usr/share/man: undo that for these pages
if grep -qs 'path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/* && [ ! -e /usr/share/man/man2/open.2.gz ]; then
  missing+=(manpages-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "prepare_domain: installing ${missing[*]}" >&2
  for f in /etc/dpkg/dpkg.cfg.d/*; do
    grep -qs 'path-exclude.*/usr/share/man' "$f" && $SUDO sed -i '/path-exclude.*\/usr\/share\/man/d' "$f"
  done
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --reinstall "${missing[@]}" >/dev/null
fi
[ -x build/hone ] || scripts/setup.sh

corpus=corpus/manpages
shards=shards/manpages
mkdir -p "$corpus"/{train,val,test}

# the package's real pages of sections 2 and 3 (symlinked aliases left out), with their split:
# a polynomial hash of the page name mod 100 (<90 train, <95 val, else test)
dpkg -L manpages-dev | grep -E '^/usr/share/man/man[23]/[^/]+\.gz$' | sort | while read -r f; do
  [ -L "$f" ] || printf '%s\n' "$f"
done | awk '
  BEGIN { for (i = 32; i < 127; i++) ord[sprintf("%c", i)] = i }
  {
    n = $0; sub(/^.*\//, "", n); sub(/\.gz$/, "", n)
    h = 0
    for (i = 1; i <= length(n); i++) h = (h * 31 + ord[substr(n, i, 1)]) % 1000000007
    s = h % 100 < 90 ? "train" : h % 100 < 95 ? "val" : "test"
    print $0 "\t" n "\t" s
  }' > "$corpus/pages.tsv"
npages=$(wc -l < "$corpus/pages.tsv")
[ "$npages" -gt 0 ] || { echo "prepare_domain: manpages-dev has no pages in /usr/share/man" >&2; exit 1; }

# render what is missing or stale, in parallel: plain UTF-8 text, 80 columns, left-adjusted,
# no hyphenation, no overstrikes (groff directly; `man -P cat` would justify and hyphenate)
recipe="groff -man -Tutf8 -rHY=0 -rLL=80n, .ad l, tbl, col -bx"
if [ "$(cat "$corpus/.recipe" 2>/dev/null)" != "$recipe" ]; then
  rm -f "$corpus"/{train,val,test}/*.txt
  echo "$recipe" > "$corpus/.recipe"
fi
render() {
  local src="$1" out="$2"
  zcat "$src" | sed '/^\.TH /a .ad l' | preconv 2>/dev/null | tbl |
    groff -man -Tutf8 -rHY=0 -rLL=80n -P-cbou 2>/dev/null | col -bx > "$out.tmp"
  [ -s "$out.tmp" ] || { echo "prepare_domain: $src rendered empty" >&2; rm -f "$out.tmp"; return 1; }
  mv "$out.tmp" "$out"
}
export -f render
# every page's wanted file; pages in another split or no longer in the package go
awk -F '\t' -v c="$corpus" '{print c "/" $3 "/" $2 ".txt"}' "$corpus/pages.tsv" | sort > "$corpus/.want"
find "$corpus"/{train,val,test} -name '*.txt' | sort | comm -23 - "$corpus/.want" | xargs -r -d '\n' rm -f
awk -F '\t' -v c="$corpus" '{print $1 "\t" c "/" $3 "/" $2 ".txt"}' "$corpus/pages.tsv" |
  while IFS=$'\t' read -r src out; do
    [ -s "$out" ] && [ "$out" -nt "$src" ] || printf '%s\n%s\n' "$src" "$out"
  done | xargs -r -d '\n' -n 2 -P "$(nproc)" bash -c 'render "$@"' _
rm -f "$corpus/.want"

# tokenize each split (every page one document, no validation carved out of it)
for s in train val test; do
  out="$shards/$s"
  stamp="$out/.inputs"
  want=$( (echo "tokenizer $tokenizer"; ls -l --time-style=+%s "$corpus/$s") | md5sum | cut -d' ' -f1)
  if [ -s "$out/meta.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    continue
  fi
  rm -rf "$out"
  mapfile -t files < <(find "$corpus/$s" -name '*.txt' | sort)
  build/hone prepare "${files[@]}" -o "$out" --tokenizer "$tokenizer" --val 0 >/dev/null
  echo "$want" > "$stamp"
done

# the question set: each page's NAME line (names -> one-line purpose) as multiple choice
# (distractors from other pages) and as generation, for the train pages (what training and
# retrieval can teach) and the held-out test pages; see scripts/make_qa.py
mkdir -p "$corpus/qa"
for s in train test; do
  if [ ! -s "$corpus/qa/${s}_mc.jsonl" ] || [ "$(find "$corpus/$s" -newer "$corpus/qa/${s}_mc.jsonl" | head -1)" ] ||
     [ scripts/make_qa.py -nt "$corpus/qa/${s}_mc.jsonl" ]; then
    python3 scripts/make_qa.py "$corpus/$s" "$corpus/qa/$s" >&2
  fi
done

# summary
printf '%-6s %6s %10s %12s\n' split pages bytes tokens
for s in train val test; do
  pages=$(find "$corpus/$s" -name '*.txt' | wc -l)
  bytes=$(find "$corpus/$s" -name '*.txt' -printf '%s\n' | awk '{b += $1} END {print b + 0}')
  tokens=$(grep -o '"train_tokens":[[:space:]]*[0-9]*' "$shards/$s/meta.json" | grep -o '[0-9]*$')
  printf '%-6s %6d %10d %12d\n' "$s" "$pages" "$bytes" "$tokens"
done
echo "shards: $shards/{train,val,test}/train_*.bin (tokenizer: $tokenizer)"
echo "questions: $corpus/qa/{train,test}_{mc,gen}.jsonl ($(wc -l < "$corpus/qa/train_mc.jsonl") train pages, $(wc -l < "$corpus/qa/test_mc.jsonl") test pages)"
