#!/usr/bin/python3
"""make_corpus_authz.py: write the seed corpora of the DSL, CEL and YAML targets.

    /usr/bin/python3 tests/fuzz/make_corpus_authz.py    (needs python3-yaml)

Writes tests/fuzz/corpus/dsl/ (OpenFGA .fga files, models of the
conformance tests, the procurement example, broken models),
tests/fuzz/corpus/cel/ (every condition of the conformance models, in the
fuzz_cel.c layout, plus edge cases) and tests/fuzz/corpus/yaml/ (pieces of
the conformance YAML files under 8 KB, store files, hostile YAML).
Reads the conformance suite from /work/shared/conformance/openfga (or
$CONFORMANCE). Deterministic: sorted inputs, fixed picks, so a rerun
rewrites the same files. Stale files in those three directories are
removed, so reproducers of fixed bugs belong in the tables below.
"""
import glob
import json
import os
import re
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONF = os.environ.get("CONFORMANCE", "/work/shared/conformance/openfga")
LANG = os.path.join(CONF, "language")
MAX_SEED = 8 * 1024
MAX_FILES = 60


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60]


def write_corpus(name, seeds):
    """Write seeds {filename: bytes|str} into corpus/name, replacing what was there."""
    out = os.path.join(HERE, "corpus", name)
    os.makedirs(out, exist_ok=True)
    assert len(seeds) <= MAX_FILES, (name, len(seeds))
    for old in os.listdir(out):
        if old not in seeds:
            os.remove(os.path.join(out, old))
    total = 0
    for fname, data in sorted(seeds.items()):
        if isinstance(data, str):
            data = data.encode()
        total += len(data)
        with open(os.path.join(out, fname), "wb") as f:
            f.write(data)
    print("%s: %d files, %d bytes" % (name, len(seeds), total))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def stage_models(path):
    """The DSL models of a conformance test file, as (test name, text)."""
    with open(path) as f:
        tests = yaml.safe_load(f)["tests"]
    return [(t["name"], s["model"]) for t in tests for s in t["stages"] if s.get("model")]


# ---------------------------------------------------------------- DSL

DSL_BROKEN = {
    "broken_no_header.fga": "type user\n",
    "broken_unclosed_bracket.fga": "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user\n",
    "broken_unclosed_condition.fga": "model\n  schema 1.1\ntype user\ncondition c(x: int) {\n  x < 1\n",
    "broken_bad_generic.fga": "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define v: [user with c]\ncondition c(m: map<list<map<int>>>, l: list<>) {\n  m.size() > 0\n}\n",
    "broken_parens_33.fga": "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user]\n    define b: " + "(" * 33 + "a" + ")" * 33 + "\n",
    "broken_parens_5000.fga": "model\n  schema 1.1\ntype doc\n  relations\n    define a: " + "(" * 5000 + "\n",
    "broken_cycle.fga": "model\n  schema 1.1\ntype doc\n  relations\n    define a: b\n    define b: c or a\n    define c: a and b\n",
    "broken_ttu_loop.fga": "model\n  schema 1.1\ntype doc\n  relations\n    define parent: [doc]\n    define v: v from parent or parent from v\n",
    "broken_dups.fga": "model\n  schema 1.1\ntype doc\n  relations\n    define a: [doc]\n    define a: [doc]\ntype doc\ncondition c(x: int, x: string) {\n x\n}\ncondition c(x: int) {\n x\n}\n",
    "broken_crlf_tabs.fga": "model\r\n\tschema 1.1\r\ntype user\r\ntype doc\r\n  relations\r\n\tdefine v: [user]\r\n",
    "broken_nul_inside.fga": b"model\n  schema 1.1\ntype user\x00\ntype doc\n",
    "broken_utf8.fga": b"model\n  schema 1.1\ntype us\xc3\xa9r\ntype \xff\xfe\n  relations\n    define v: [us\xc3\xa9r]\n",
    "broken_schema.fga": "model\n  schema 9.9\ntype user\n",
    "broken_module.fga": "module core\nextend type user\n  relations\n    define a: [user]\ntype user\n",
    "broken_but_not_chain.fga": "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define a: [user]\n    define b: a but not a but not a or a and a\n",
    "broken_comment_only.fga": "# nothing\n#\n  # model\n",
    "broken_empty.fga": "",
}


def dsl_seeds():
    seeds = {}
    fgas = [p for p in sorted(glob.glob(os.path.join(LANG, "**", "*.fga"), recursive=True))
            if os.path.getsize(p) < 4096]
    for i in range(min(24, len(fgas))):
        path = fgas[i * len(fgas) // min(24, len(fgas))]
        rel = os.path.relpath(path, LANG)[:-len(".fga")].replace("/authorization-model", "")
        seeds[slug(rel.replace("/", "_")) + ".fga"] = read(path)
    models = stage_models(os.path.join(CONF, "consolidated_1_1_tests.yaml"))
    for name, text in models[::len(models) // 2][:2]:
        seeds["consolidated_" + slug(name) + ".fga"] = text
    for name, text in stage_models(os.path.join(CONF, "abac_tests.yaml"))[::8][:1]:
        seeds["abac_" + slug(name) + ".fga"] = text
    seeds["procurement_model.fga"] = read(os.path.join(ROOT, "ops/examples/procurement/model.fga"))
    seeds.update(DSL_BROKEN)
    for name, case in validation_cases("dsl-semantic-validation-cases.yaml", "dsl", 7):
        seeds["semantic_" + slug(name)[:50] + ".fga"] = case
    # the JSON form (fuzz_dsl.c reads an input starting with '{' as one too)
    for name in ("08-tuple-to-userset", "97-advanced-entitlements", "102-conditions-data-types"):
        with open(os.path.join(LANG, "transformer", name, "authorization-model.json")) as f:
            model = json.load(f)
        seeds["json_" + name + ".json"] = json.dumps(model, sort_keys=True)
    seeds["json_camel_case.json"] = camel_case(json.dumps(model, sort_keys=True))
    seeds["json_loop.json"] = json.dumps({"schema_version": "1.1", "type_definitions": [
        {"type": "doc", "relations": {"a": {"computedUserset": {"relation": "b"}},
                                      "b": {"union": {"child": [{"computedUserset": {"relation": "a"}},
                                                                {"tupleToUserset": {"tupleset": {"relation": "a"},
                                                                                    "computedUserset": {"relation": "b"}}}]}}}}]})
    for name, case in validation_cases("json-validation-cases.yaml", "json", 3):
        seeds["json_invalid_" + slug(name)[:40] + ".json"] = case
    return seeds


def validation_cases(fname, key, count):
    """count cases of a language validation case file, evenly spread: (name, text)."""
    with open(os.path.join(LANG, fname)) as f:
        cases = [c for c in yaml.safe_load(f) if c.get(key)]
    step = max(1, len(cases) // count)
    return [(c["name"], c[key]) for c in cases[::step][:count]]


def camel_case(text):
    """A JSON model with the camelCase keys other tools emit."""
    for snake, camel in (("schema_version", "schemaVersion"), ("type_definitions", "typeDefinitions"),
                         ("directly_related_user_types", "directlyRelatedUserTypes"),
                         ("type_name", "typeName"), ("generic_types", "genericTypes")):
        text = text.replace('"%s"' % snake, '"%s"' % camel)
    return text


# ---------------------------------------------------------------- CEL

TYPE_NAMES = {"INT": "int", "UINT": "uint", "DOUBLE": "double", "BOOL": "bool",
              "STRING": "string", "TIMESTAMP": "timestamp", "DURATION": "duration",
              "IPADDRESS": "ipaddress", "ANY": "any", "LIST": "list", "MAP": "map"}


def type_text(t):
    """A parameter type {"type_name", "generic_types"} as fuzz_cel.c writes it."""
    name = TYPE_NAMES[t["type_name"][len("TYPE_NAME_"):]]
    generics = t.get("generic_types") or []
    return name + ("<%s>" % ",".join(type_text(g) for g in generics) if generics else "")


def cel_seed(params, expr, context=None):
    line = " ".join("%s:%s" % (k, type_text(v)) for k, v in sorted(params.items()))
    text = line + "\n" + expr
    if context is not None:
        text += "\n---\n" + json.dumps(context, sort_keys=True)
    return text


def model_conditions():
    """Every distinct condition of the conformance models (JSON forms)."""
    conds = {}
    files = [os.path.join(CONF, "abac_tests.json"), os.path.join(CONF, "consolidated_1_1_tests.json")]
    for path in files:
        with open(path) as f:
            for t in json.load(f)["tests"]:
                for s in t["stages"]:
                    for c in ((s.get("model_json") or {}).get("conditions") or {}).values():
                        c = dict(c, abac="abac" in path)
                        conds.setdefault((c["expression"], json.dumps(c.get("parameters"), sort_keys=True)), c)
    for path in sorted(glob.glob(os.path.join(LANG, "**", "*.json"), recursive=True)):
        try:
            with open(path) as f:
                m = json.load(f)
        except ValueError:
            continue
        if isinstance(m, dict) and isinstance(m.get("conditions"), dict):
            for c in m["conditions"].values():
                c = dict(c, abac=False)
                conds.setdefault((c["expression"], json.dumps(c.get("parameters"), sort_keys=True)), c)
    return [conds[k] for k in sorted(conds, key=lambda k: (not conds[k]["abac"], k))]


# Edge cases: on the fixed parameter set (empty first line) unless given.
CEL_EDGE = {
    "edge_deep_parens_99": "\n" + "(" * 99 + "x" + ")" * 99 + " > 0",
    "edge_deep_parens_5000": "\n" + "(" * 5000 + "x" + ")" * 5000,
    "edge_deep_unary": "\n" + "!" * 3000 + "b",
    "edge_deep_lists": "\n" + "[" * 200 + "]" * 200 + " == []",
    "edge_long_string": "\ns == '" + "a" * 7000 + "'",
    "edge_too_long": "\n" + "x + " * 2100 + "1 > 0",
    "edge_huge_ints": "\nx == 9223372036854775807 && x + 1 > x && -9223372036854775808 < x"
                      " && 18446744073709551615u > u",
    "edge_macro_blowup": "\n[1,2,3,4,5,6,7,8].map(a, [1,2,3,4,5,6,7,8].map(b, [1,2,3,4,5,6,7,8].map(c,"
                         " [1,2,3,4,5,6,7,8].map(d, [1,2,3,4,5,6,7,8].map(e, a+b+c+d+e)))))"
                         ".size() > 0",
    "edge_string_blowup": "\n['" + "a" * 100 + "'].map(x, x + x + x + x + x + x + x + x).map(x, x + x + x + x"
                          " + x + x + x + x).map(x, x + x + x + x + x + x + x + x).size() == 1",
    "edge_regex": "\ns.matches('(a*)*b') && s.matches('(?i)[[:alpha:]]+') && 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'.matches('^(a+)+$')",
    "edge_ternary_null": "\nb ? a == null : a != null && a.size() > 0 && a[0] == a[0]",
    "edge_unknown_partial": "\nx > 0 && s == 'a' || l.exists(i, i == x) || m['zz'] == ''",
    "edge_bad_syntax": "\nx < < 1 && s.( ] || 'unterminated",
    "edge_not_bool": "\nx + 1",
    "edge_undeclared": "\nnot_declared == 1 && x.nosuchmethod() && size(1, 2, 3)",
    "decl_nested_generics": "g:map<list<map<list<int>>>> h:list<list<list<list<list<list<list<list<list<int>>>>>>>>>\n"
                            "g.size() >= 0 && h.size() >= 0",
    "decl_bad_types": "a:list b:map<int,string> c:bytes d:TYPE_NAME_INT e:\nb == b",
    "decl_many_params": " ".join("p%d:int" % i for i in range(70)) + "\np0 == p69",
    "ctx_given": "x:int s:string l:list<int> m:map<string>\n"
                 "x > 1 && s.size() > 0 && l[2] == 3 && m['k'] == 'v'\n---\n"
                 "{\"x\": 5, \"s\": \"\u00e9\", \"l\": [1, 2, 3], \"m\": {\"k\": \"v\"}}",
    "ctx_wrong_types": "x:int u:uint t:timestamp d:duration ip:ipaddress\n"
                       "x > 0 || u > 0u || t > t || d > d || ip == ip\n---\n"
                       "{\"x\": 1.5, \"u\": -1, \"t\": \"yesterday\", \"d\": \"1 fortnight\", \"ip\": \"999.1.1.1\"}",
    # fuzz finds (timeouts in glibc's regcomp, which matches() literals go
    # through at compile time): stacked quantifiers and + on nested groups
    # copied the program exponentially; repeated groups holding a loop made
    # its epsilon closures slow
    "repro_regex_blowups": "\ns.matches('(a*)*b" + "+" * 120 + "')"
                           " || s.matches('" + "(" * 24 + "x" + ")+" * 24 + "')"
                           " || s.matches('" + "(" * 9 + "()+" + ")+" * 9 + "')"
                           " || s.matches('(()*){1000}')",
    "ctx_deep": "a:any\na != null\n---\n" + "{\"a\": " + "[" * 500 + "]" * 500 + "}",
}


def cel_shape(c):
    """A condition with numbers, spaces and parameter names blotted out, and
    its parameter types: conditions of the same shape make one seed."""
    e = re.sub(r"\s+", "", re.sub(r"[0-9]+", "0", c["expression"]))
    e = re.sub(r"\b[A-Za-z_][A-Za-z_0-9]*\b(?!\s*\()", "v", e)
    return e, tuple(sorted(type_text(t) for t in (c.get("parameters") or {}).values()))


UNIT_CEL = os.path.join(ROOT, "tests/unit/test_authz_cel.c")
C_STR = r'"(?:[^"\\]|\\.)*"'
C_CASE = re.compile(r'^\s*\{(%s), (NULL|%s), (NULL|%s), (\w+)\},' % (C_STR, C_STR, C_STR), re.M)


def c_string(lit):
    """The value of a C string literal (the escapes the unit tests use)."""
    return None if lit == "NULL" else lit[1:-1].encode("latin-1").decode("unicode_escape").encode("latin-1").decode()


def unit_cases():
    """The case tables of tests/unit/test_authz_cel.c, per test function:
    {function: [(expr, params, ctx, want)]}."""
    text = read(UNIT_CEL).decode()
    tables = {}
    for part in re.split(r"\n(?=test_\w+ \(void \*\*state\))", text)[1:]:
        cases = [(c_string(m[0]), c_string(m[1]), c_string(m[2]), m[3]) for m in C_CASE.findall(part)]
        if cases:
            tables[part.split()[0]] = cases
    return tables


def unit_seeds():
    """Two seeds per unit-test table: its literal cases in one expression (the
    ones that evaluate as list elements, the runtime errors or-ed after them:
    || evaluates both sides), and its first case with a context."""
    seeds = {}
    for fn, cases in sorted(unit_cases().items()):
        ok = [e for e, p, c, w in cases if not p and not c and w in ("OK0", "OK1")]
        bad = [e for e, p, c, w in cases if not p and not c and w == "EVL"]
        if len(ok) > 1:
            expr = "[%s\n].size() > 0" % ",\n".join(ok)      # one a line: cases end in // comments
            if bad:
                expr += " && (%s\n)" % "\n|| ".join("(%s\n)" % e for e in bad)
            seeds["unit_" + fn[5:]] = "\n" + expr
        given = [(e, p, c) for e, p, c, w in cases if p and c]
        if given:
            e, p, c = given[len(given) // 2]
            seeds["unit_%s_ctx" % fn[5:]] = "%s\n%s\n---\n%s" % (p, e, c)
    return seeds


def cel_seeds():
    """The conditions of abac_tests.json (one per shape), those of the other
    conformance models with parameter types not seen yet, the unit tests'
    tables and the edge cases."""
    seeds, shapes, typesets = {}, set(), set()
    for c in model_conditions():
        shape = cel_shape(c)
        if shape in shapes or (c["abac"] is False and shape[1] in typesets):
            continue
        shapes.add(shape)
        typesets.add(shape[1])
        name = "cond_%02d_%s" % (len(shapes), slug(c["name"]))
        seeds[name] = cel_seed(c.get("parameters") or {}, c["expression"])
    seeds.update(unit_seeds())
    seeds.update(CEL_EDGE)
    return seeds


# ---------------------------------------------------------------- YAML

def yaml_pieces(path, count):
    """Up to count pieces of a YAML file's top-level list (at the column of
    its first `- `), each under MAX_SEED bytes, taken evenly through the file."""
    lines = read(path).decode().splitlines(keepends=True)
    col = next((len(l) - len(l.lstrip()) for l in lines if l.lstrip().startswith("- ")), 0)
    head, items = [], []
    for l in lines:
        if l.startswith(" " * col + "- ") and (col == 0 or not l[col - 1:col].strip()):
            items.append([l])
        elif items:
            items[-1].append(l)
        else:
            head.append(l)
    prefix = "".join(l for l in head if l.strip())
    pieces = ["".join(prefix + "".join(it)) for it in items]
    pieces = [p for p in pieces if len(p.encode()) < MAX_SEED]
    step = max(1, len(pieces) // count)
    return pieces[::step][:count]


YAML_HOSTILE = {
    "alias.yaml": "a: &x {b: 1}\nc: *x\n",
    "alias_bomb.yaml": "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
    "anchor_only.yaml": "a: &x 1\nb: &y [1, 2]\n",
    "deep_block_70.yaml": "".join(" " * i + "k:\n" for i in range(70)) + " " * 70 + "v\n",
    "deep_flow_10000.yaml": "[" * 10000 + "]" * 10000 + "\n",
    "deep_flow_unclosed.yaml": "{a: " * 3000,
    "dup_keys.yaml": "a: 1\nb: 2\na: 3\n",
    "complex_key.yaml": "? [a, b]\n: 1\n{x: 1}: 2\n",
    "tags.yaml": "a: !!int '12'\nb: !!binary aGVsbG8=\nc: !custom {x: 1}\nd: !!str 3\n%TAG ! tag:x,2000:\n",
    "scalars.yaml": "n: [null, Null, NULL, ~, ]\nb: [true, True, TRUE, false, yes, on]\n"
                    "i: [0, -0, 0x7fffffffffffffff, 0x8000000000000000, 0o777, 9223372036854775808, -9223372036854775809, 1_000]\n"
                    "f: [1.5, -.inf, .NaN, .Inf, 1e400, 6.02e23, 0.]\n",
    "multi_doc.yaml": "a: 1\n---\nb: 2\n...\n---\nc: [\n",
    "block_scalars.yaml": "lit: |+\n  a\n   b\n\nfold: >-\n  c\n  d\nbad: |9\n x\n",
    "bad_utf8.yaml": b"a: \"\xc3\x28\"\nb: \xed\xa0\x80\n\xff: 1\n",
    "bom_utf16.yaml": b"\xff\xfea\x00:\x00 \x001\x00\n\x00",
    "tabs.yaml": "a:\n\tb: 1\n",
    "unterminated.yaml": "a: \"never closed\nb: 'also\n",
    "nul_byte.yaml": b"a: b\x00c\nd: 1\n",
    "empty.yaml": "",
    "directives.yaml": "%YAML 1.1\n%YAML 1.2\n---\na: 1\n",
    "long_key.yaml": "k" * 2000 + ": v\n",
    # a key with an escaped NUL was cut at the NUL (and collided with "a")
    "repro_nul_key.yaml": '{"a\\0b": 1, "a": 2}\n',
    "nul_value.yaml": 'a: "x\\0y"\nb: ["\\0"]\n',
}


def yaml_seeds():
    seeds = {}
    files = [os.path.join(CONF, "consolidated_1_1_tests.yaml"), os.path.join(CONF, "abac_tests.yaml")] + \
        sorted(glob.glob(os.path.join(LANG, "*.yaml")))
    for path in files:
        n = 4 if "consolidated" in path or "abac" in path else 2
        for i, piece in enumerate(yaml_pieces(path, n)):
            seeds["%s_%d.yaml" % (slug(os.path.basename(path)[:-5]), i)] = piece
    for path in sorted(glob.glob(os.path.join(LANG, "stores", "*", "*.yaml"))):
        seeds["store_" + slug(os.path.basename(os.path.dirname(path))) + ".yaml"] = read(path)
    seeds["procurement.fga.yaml"] = read(os.path.join(ROOT, "ops/examples/procurement/procurement.fga.yaml"))
    seeds.update(YAML_HOSTILE)
    return seeds


if __name__ == "__main__":
    write_corpus("dsl", dsl_seeds())
    write_corpus("cel", cel_seeds())
    write_corpus("yaml", yaml_seeds())
