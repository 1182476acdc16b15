#!/usr/bin/env bash
# The inference path stands alone: libhone_eval.a references no symbol of the trainer
# (model, optimizer, training loop), so evaluation never drags in gradient or optimizer code.
source "$(dirname "$0")/lib.sh"
lib="$(dirname "$HONE")/libhone_eval.a"
[ -f "$lib" ] && ok || bad "no $lib"
trainer_syms=$(nm "$(dirname "$HONE")/libhone_train.a" 2>/dev/null | awk '$2 == "T" {print $3}')
[ -n "$trainer_syms" ] && ok || bad "no trainer symbols found to compare with"
used=$(nm -u "$lib" | awk '{print $2}' | sort -u)
overlap=$(comm -12 <(echo "$used") <(echo "$trainer_syms" | sort -u))
[ -z "$overlap" ] && ok || bad "the eval library uses trainer symbols: $overlap"
finish
