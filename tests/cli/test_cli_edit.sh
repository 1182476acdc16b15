#!/usr/bin/env bash
# `hone edit` on the real model: the ten committed counterfactual requests
# (tests/fixtures/edit/requests.jsonl), each applied to SmolLM2-135M-Instruct on its own,
# with the key covariance from the Jargon File: the new object must become the top
# prediction on at least 8 of the 10 prompts (the paraphrase success rate and the
# neighbourhood KL are printed and recorded, not bounded). One edit written to a checkpoint
# must then make `hone generate` (the inference path, a different forward) say the new
# object. Bad input is one clear error.
source "$(dirname "$0")/lib.sh"
MODEL="$HONE_SOURCE_DIR/models/smollm2.h5"
[ -f "$MODEL" ] || skip_or_fail "$MODEL is missing (run scripts/get_model.sh)"
JARGON=/usr/share/doc/jargon-text/jargon.txt.gz
[ -f "$JARGON" ] || skip_or_fail "$JARGON is missing (apt-get install jargon-text)"
zcat "$JARGON" | head -c 400000 > "$WORK/cov.txt"
REQ="$HONE_SOURCE_DIR/tests/fixtures/edit/requests.jsonl"
n_req=10 want=8
if [ "${HONE_SANITIZED:-0}" = 1 ]; then
  # the sanitizer build (scripts/test.sh --sanitize) checks memory, not the method: the
  # first three requests walk every code path at a third of the time (45 min under ASan for
  # all ten); the Release build's run of this test keeps the bar of 8 of 10
  head -3 "$REQ" > "$WORK/req3.jsonl"
  REQ="$WORK/req3.jsonl" n_req=3 want=2
fi

"$HONE" edit "$MODEL" --requests "$REQ" --cov-data "$WORK/cov.txt" --cov-tokens 20000 \
  --json "$WORK/edits.json" > "$WORK/out.txt" 2> "$WORK/err.txt"
[ $? -eq 0 ] && ok || bad "hone edit --requests failed: $(tail -3 "$WORK/err.txt")"
cat "$WORK/out.txt"
eff=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["efficacy_top1"])' "$WORK/edits.json" 2>/dev/null)
[ -n "$eff" ] && [ "$eff" -ge "$want" ] && ok || bad "the new object is the top prediction for '$eff' of $n_req prompts (want >= $want)"

# one edit into a checkpoint, read back by the inference path
"$HONE" edit "$MODEL" --subject "Eiffel Tower" --prompt "The {} is located in the city of" \
  --target " Rome" --cov-data "$WORK/cov.txt" --cov-tokens 20000 -o "$WORK/edited.h5" \
  > "$WORK/one.txt" 2> "$WORK/err.txt"
[ $? -eq 0 ] && ok || bad "hone edit -o failed: $(tail -3 "$WORK/err.txt")"
gen=$("$HONE" generate "$WORK/edited.h5" --prompt "The Eiffel Tower is located in the city of" \
  --max-tokens 2 --temperature 0 2>/dev/null)
echo "edited model: The Eiffel Tower is located in the city of$gen"
case "$gen" in " Rome"*) ok ;; *) bad "the edited checkpoint continues with '$gen', not ' Rome'" ;; esac
base=$("$HONE" generate "$MODEL" --prompt "The Eiffel Tower is located in the city of" \
  --max-tokens 2 --temperature 0 2>/dev/null)
case "$base" in " Rome"*) bad "the base model already says Rome: the check is blind" ;; *) ok ;; esac

# bad input
expect_fail "no covariance data" 2 "needs --cov-data" -- \
  "$HONE" edit "$MODEL" --subject X --prompt "{} is" --target " Y" -o "$WORK/x.h5"
expect_fail "prompt without the subject" 1 "holds neither \{\} nor the subject" -- \
  "$HONE" edit "$MODEL" --subject "Eiffel Tower" --prompt "It is in" --target " Rome" \
  --cov-data "$WORK/cov.txt" --cov-tokens 2000 -o "$WORK/x.h5"
expect_fail "output exists" 1 "exists — pass --force" -- \
  "$HONE" edit "$MODEL" --subject "Eiffel Tower" --prompt "The {} is" --target " Rome" \
  --cov-data "$WORK/cov.txt" -o "$WORK/edited.h5"
expect_fail "too little covariance data" 1 "needs at least" -- \
  "$HONE" edit "$MODEL" --subject "Eiffel Tower" --prompt "The {} is" --target " Rome" \
  --cov-data "$WORK/cov.txt" --cov-tokens 100 -o "$WORK/x.h5"
expect_fail "no such layer" 1 "layer 99 does not exist" -- \
  "$HONE" edit "$MODEL" --subject "Eiffel Tower" --prompt "The {} is" --target " Rome" \
  --cov-data "$WORK/cov.txt" --layer 99 -o "$WORK/x.h5"
printf '{"subject": "A", "prompt": "{} is", "target": " B"}\n{"subject": 3}\n' > "$WORK/bad.jsonl"
expect_fail "malformed request" 1 "bad\.jsonl:2: needs strings" -- \
  "$HONE" edit "$MODEL" --requests "$WORK/bad.jsonl" --cov-data "$WORK/cov.txt" \
  --cov-tokens 2000 --steps 1 --prefixes 1
[ ! -e "$WORK/x.h5" ] && ok || bad "a failed edit left $WORK/x.h5 behind"
finish
