#!/usr/bin/env python3
"""paste_rules.py -- puts a rules file of `qh sensitivity` (--allocate or
--select) into the "layers" of one method entry of a sweep configuration.

Usage: experiments/scripts/paste_rules.py CONFIG LABEL RULES [LABEL RULES ...]
CONFIG is rewritten in place (a temporary file, then a rename); every LABEL
must name an entry (its "label", or its "method" when it has none)."""
import collections
import json
import os
import sys


def main(argv):
    if len(argv) < 4 or len(argv) % 2:
        sys.stderr.write(__doc__)
        return 2
    path = argv[1]
    with open(path) as f:
        cfg = json.load(f, object_pairs_hook=collections.OrderedDict)
    for label, rules_path in zip(argv[2::2], argv[3::2]):
        with open(rules_path) as f:
            rules = json.load(f, object_pairs_hook=collections.OrderedDict)
        if not isinstance(rules, list):
            sys.stderr.write("%s: expected a JSON array of rules\n" % rules_path)
            return 1
        hits = [m for m in cfg.get("methods", []) if m.get("label", m.get("method")) == label]
        if len(hits) != 1:
            sys.stderr.write("%s: %d method entries labelled %s (expected one)\n" % (path, len(hits), label))
            return 1
        hits[0]["layers"] = rules
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
