#!/usr/bin/python3
"""make_cloze_task.py -- a last-word cloze task (LAMBADA style, multiple choice)
built from the Gutenberg held-out text, for `qh tasks` and the "tasks" key of
a sweep configuration (format: docs/metrics.md).

Each item: a prose paragraph of at least MIN_WORDS words (lines joined with
spaces); the context is its words up to the last one (at most CONTEXT_WORDS
words, cut at the front), the continuations are " " + the true last word and
three distractors: words drawn, with a fixed seed, from the words of the
whole text that occur at least MIN_COUNT times, have the same capitalisation
class and lie within two letters of the true word's length.  The answer's
position is drawn too.  Trailing punctuation of the last word is dropped, and
paragraphs whose last word is not purely alphabetic are skipped.

Usage: experiments/scripts/make_cloze_task.py [TEXT [OUT [N]]]
  (defaults: data/gutenberg_heldout_2M.txt, tests/data/gutenberg_cloze.jsonl, 400)
Deterministic: the same text gives the same file.  Standard library only.
"""
import collections
import json
import random
import re
import sys

MIN_WORDS = 30
CONTEXT_WORDS = 120
MIN_COUNT = 20
SEED = 20240611


def paragraphs(text):
    for block in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in block.splitlines()]
        if any(not ln for ln in lines):
            continue
        para = " ".join(lines)
        # prose only: no illustrations, headings, tables of contents, all-caps lines
        if "[" in para or "_" in para or para.upper() == para or "  " in block.strip():
            continue
        yield para


def cap_class(w):
    return w[0].isupper()


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "data/gutenberg_heldout_2M.txt"
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/data/gutenberg_cloze.jsonl"
    n_items = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    with open(src, encoding="utf-8") as f:
        text = f.read()
    counts = collections.Counter(re.findall(r"[A-Za-z]+", text))
    pool = sorted(w for w, c in counts.items() if c >= MIN_COUNT and len(w) >= 2)
    rng = random.Random(SEED)
    items = []
    for para in paragraphs(text):
        words = para.split()
        if len(words) < MIN_WORDS:
            continue
        last = words[-1].rstrip(".,;:!?\"')")
        if not last.isalpha() or len(last) < 3:
            continue
        candidates = [w for w in pool if w != last and w.lower() != last.lower()
                      and cap_class(w) == cap_class(last) and abs(len(w) - len(last)) <= 2]
        if len(candidates) < 3:
            continue
        distractors = rng.sample(candidates, 3)
        answer = rng.randrange(4)
        conts = distractors[:answer] + [last] + distractors[answer:]
        context = " ".join(words[:-1][-CONTEXT_WORDS:])
        items.append({"context": context, "continuations": [" " + w for w in conts],
                      "answer": answer})
    if len(items) < n_items:
        sys.exit(f"make_cloze_task: only {len(items)} usable paragraphs in {src}, asked for {n_items}")
    # spread over the whole text rather than its first books
    step = len(items) / n_items
    chosen = [items[int(i * step)] for i in range(n_items)]
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for it in chosen:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    import os
    os.replace(out + ".tmp", out)
    print(f"make_cloze_task: {n_items} of {len(items)} usable paragraphs -> {out}")


if __name__ == "__main__":
    main()
