#!/usr/bin/env python3
"""config_doc.py — the README's table of configuration keys, made from
bus/bus_config_keys.def (the one table the daemons read), so the two never
disagree.

    ops/config_doc.py            print the table (Markdown)
    ops/config_doc.py --update   rewrite it in README.md, between the
                                 config-table markers
    ops/config_doc.py --check    exit 1 when README.md's table is stale
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEF = os.path.join(ROOT, "bus", "bus_config_keys.def")
README = os.path.join(ROOT, "README.md")
BEGIN = "<!-- config-table: made by ops/config_doc.py from bus/bus_config_keys.def; do not edit -->"
END = "<!-- config-table end -->"
STR = r'"((?:[^"\\]|\\.)*)"'
KEY = re.compile(r'^BUS_CONFIG_KEY\s*\(\s*(\w+),\s*([\w-]+),\s*(\w+),\s*' + STR +
                 r',\s*([^,]+?),\s*([^,]+?),\s*' + STR + r'\s*\)')


def keys():
    out = []
    for line in open(DEF):
        if not line.startswith("BUS_CONFIG_KEY"):
            continue
        m = KEY.match(line)
        if not m:
            sys.exit("config_doc: cannot read %s: %s" % (DEF, line.strip()))
        out.append(m.groups())
    if not out:
        sys.exit("config_doc: no key in %s" % DEF)
    return out


def table():
    rows = ["| key | type | default | what it sets |", "|---|---|---|---|"]
    for section, key, kind, default, lo, hi, text in keys():
        kind = kind.lower()
        if kind == "int" and (lo.strip(), hi.strip()) != ("0", "0"):
            kind = "int %s–%s" % (lo.strip(), hi.strip())
        default = "`%s`" % default if default else "(empty)"
        text = text.replace("\\\"", "\"").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append("| `[%s] %s` | %s | %s | %s |" % (section, key, kind, default.replace("|", "\\|"), text))
    return "\n".join(rows) + "\n"


def block():
    return BEGIN + "\n\n" + table() + "\n" + END


def main(argv):
    if len(argv) == 1:
        sys.stdout.write(table())
        return 0
    text = open(README).read()
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    if not found:
        print("config_doc: README.md has no config-table markers", file=sys.stderr)
        return 1
    if argv[1] == "--check":
        if found.group(0) != block():
            print("config_doc: README.md's table of keys is stale: run ops/config_doc.py --update",
                  file=sys.stderr)
            return 1
        return 0
    if argv[1] == "--update":
        open(README, "w").write(text[:found.start()] + block() + text[found.end():])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
