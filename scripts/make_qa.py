#!/usr/bin/env python3
"""
The domain's question set, from the NAME section of each rendered man page (standard library
only; any python3). A page's NAME line reads "open, openat, creat - open and possibly create
a file": the names are the question, the one-line purpose after " - " the answer.

  make_qa.py PAGES_DIR OUT_PREFIX [--max N]

writes OUT_PREFIX_mc.jsonl (`hone eval --task mc`: {"context": "open, openat, creat -",
"choices": [" open and possibly create a file", three other pages' purposes], "answer": i})
and OUT_PREFIX_gen.jsonl (`--task gen`: {"prompt": the same context, "reference": the
purpose}). The questions are up to N pages (default 200) of PAGES_DIR chosen by a hash of
their names; distractors and the answer's place come from a generator seeded by the page
name, so reruns and other machines write the same files.
"""
import hashlib
import json
import os
import random
import re
import sys


def name_line(text):
    """the NAME section's text as one line, or None"""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "NAME" and not line.startswith(" "):
            body = []
            for nxt in lines[i + 1:]:
                if nxt.strip() == "" and body:
                    break
                if nxt and not nxt.startswith(" "):  # the next section's header
                    break
                body.append(nxt.strip())
            return " ".join(x for x in body if x) or None
    return None


def key(s):
    return hashlib.sha256(s.encode()).hexdigest()


def main():
    args = sys.argv[1:]
    most = 200
    if "--max" in args:
        i = args.index("--max")
        most = int(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    pages_dir, prefix = args
    pages = []
    for f in sorted(os.listdir(pages_dir)):
        if not f.endswith(".txt"):
            continue
        with open(os.path.join(pages_dir, f), encoding="utf-8", errors="replace") as fh:
            line = name_line(fh.read())
        if not line or " - " not in line:
            continue
        names, purpose = line.split(" - ", 1)
        names, purpose = re.sub(r"\s+", " ", names).strip(), re.sub(r"\s+", " ", purpose).strip()
        if names and purpose:
            pages.append((f, names, purpose))
    purposes = sorted({p for _, _, p in pages})
    if len(purposes) < 4:
        sys.exit(f"make_qa: {pages_dir} has {len(purposes)} distinct purposes; 4 are needed")
    chosen = sorted(pages, key=lambda p: key(p[0]))[:most]
    chosen.sort()
    with open(prefix + "_mc.jsonl.tmp", "w") as mc, open(prefix + "_gen.jsonl.tmp", "w") as gen:
        for f, names, purpose in chosen:
            rng = random.Random(key(f))
            others = [p for p in purposes if p != purpose]
            choices = rng.sample(others, 3)
            answer = rng.randrange(4)
            choices.insert(answer, purpose)
            ctx = names + " -"
            mc.write(json.dumps({"context": ctx, "choices": [" " + c for c in choices],
                                 "answer": answer, "page": f}) + "\n")
            gen.write(json.dumps({"prompt": ctx, "reference": purpose, "page": f}) + "\n")
    os.replace(prefix + "_mc.jsonl.tmp", prefix + "_mc.jsonl")
    os.replace(prefix + "_gen.jsonl.tmp", prefix + "_gen.jsonl")
    print(f"make_qa: {len(chosen)} questions from {pages_dir} ({len(pages)} pages with a purpose)")


if __name__ == "__main__":
    main()
