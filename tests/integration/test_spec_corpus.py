"""The spec contract, checked from two sides.

schemas/sandbox.schema.json (read with PyYAML and jsonschema) and the C
validator (common/spec.c, through build/tests/tools/speccheck) must give the
same verdict for every file in tests/specs/good, tests/specs/bad and
examples/sandboxes, and for a set of small tricky documents below.  banger
reads YAML as a subset (YAML 1.2 core-schema scalars, no anchors, aliases or
tags, no duplicate or non-string keys, bounded sizes), so the Python side
loads files with a loader that implements the same subset; what that loader
refuses, the C side must refuse too.

For documents both sides accept, the C side's canonical JSON must itself be
valid, must keep every value the file set, and must fill the defaults the
schema declares.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BANGER_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
SPECCHECK = BUILD / "tests" / "tools" / "speccheck"
SCHEMA = json.loads((ROOT / "schemas" / "sandbox.schema.json").read_text())

# The limits of common/spec.h.
MAX_FILE_BYTES = 1024 * 1024
MAX_DOCS = 256
MAX_DEPTH = 16
MAX_SCALAR = 4096

GOOD = sorted((ROOT / "tests" / "specs" / "good").glob("*.yaml"))
BAD = sorted((ROOT / "tests" / "specs" / "bad").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples" / "sandboxes").glob("*.yaml"))


# ---- the YAML subset, in Python ----------------------------------------

class Refused(Exception):
    """The file is outside banger's YAML subset."""


class CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema as banger types it: no floats, no 0o/0x."""


CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)\Z"), list("tTfF"))
CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+\Z"), list("-+0123456789"))
CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)\Z"), ["~", "n", "N", ""])


class CoreConstructor(yaml.constructor.SafeConstructor):
    def construct_core_int(self, node):
        return int(self.construct_scalar(node), 10)  # 0644 is 644, as in C

    def construct_core_bool(self, node):
        return self.construct_scalar(node).lower() == "true"

    def construct_core_str(self, node):
        value = self.construct_scalar(node)
        if "\0" in value:
            raise Refused("strings must not contain NUL characters")
        return value

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise Refused("expected a mapping")
        mapping = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise Refused("mapping keys must be strings")
            if key in mapping:
                raise Refused("duplicate key")
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_core_map(self, node):
        data = {}
        yield data
        data.update(self.construct_mapping(node))


CoreConstructor.add_constructor("tag:yaml.org,2002:int", CoreConstructor.construct_core_int)
CoreConstructor.add_constructor("tag:yaml.org,2002:bool", CoreConstructor.construct_core_bool)
CoreConstructor.add_constructor("tag:yaml.org,2002:str", CoreConstructor.construct_core_str)
CoreConstructor.add_constructor("tag:yaml.org,2002:map", CoreConstructor.construct_core_map)


try:
    from yaml.cyaml import CParser
except ImportError:
    CParser = None

if CParser:
    # PyYAML's own scanner refuses some valid YAML (a tab inside a plain
    # scalar, say) that libyaml reads; the question here is the schema, not
    # scanner quirks, so read with libyaml's syntax when PyYAML has it.
    class CoreLoader(CParser, CoreConstructor, CoreResolver):
        def __init__(self, stream):
            CParser.__init__(self, stream)
            CoreConstructor.__init__(self)
            CoreResolver.__init__(self)
else:
    class CoreLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                     yaml.composer.Composer, CoreConstructor, CoreResolver):
        def __init__(self, stream):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            CoreConstructor.__init__(self)
            CoreResolver.__init__(self)


def check_subset(text):
    """Refuse what banger's reader refuses before typing: anchors, aliases,
    tags, and documents, depth or scalars past the limits."""
    depth = docs = 0
    for ev in yaml.parse(text, Loader=CoreLoader):
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
            raise Refused("anchors and aliases are not allowed")
        if isinstance(ev, (yaml.ScalarEvent, yaml.CollectionStartEvent)) and ev.tag is not None:
            raise Refused("tags are not allowed")
        if isinstance(ev, yaml.DocumentStartEvent):
            docs += 1
            if docs > MAX_DOCS:
                raise Refused("too many documents")
        elif isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise Refused("nesting too deep")
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(ev, yaml.ScalarEvent) and len(ev.value.encode()) > MAX_SCALAR:
            raise Refused("scalar too long")


def load_documents(data):
    """The non-empty documents of a file, or raise Refused / YAMLError."""
    if len(data) > MAX_FILE_BYTES:
        raise Refused("file too large")
    try:
        text = data.decode("utf-8-sig")  # banger reads UTF-8 only
    except UnicodeDecodeError as e:
        raise Refused("not UTF-8") from e
    check_subset(text)
    return [d for d in yaml.load_all(text, Loader=CoreLoader) if d is not None]


# ---- the schema ----------------------------------------------------------

def _ecma_pattern(validator, pattern, instance, schema):
    # JSON Schema patterns are ECMA-262, where '$' is the end of the text;
    # Python's '$' also matches before a final newline.  The schema uses '$'
    # only as an anchor, so \Z is its exact Python spelling.
    if validator.is_type(instance, "string") and not re.search(pattern.replace("$", r"\Z"), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})
VALIDATOR = Validator(SCHEMA)


def schema_verdict(data):
    """(file is valid, [(document, [errors])]) by the Python side; the list is
    None when the loader refused the file."""
    try:
        docs = load_documents(data)
    except (Refused, yaml.YAMLError):
        return False, None
    results = [(d, list(VALIDATOR.iter_errors(d))) for d in docs]
    return all(not errs for _, errs in results), results


# ---- the C side ----------------------------------------------------------

def speccheck(*args):
    if not SPECCHECK.exists():
        pytest.fail(f"{SPECCHECK} is missing: run `make {SPECCHECK.relative_to(ROOT)}` "
                    "or set BANGER_BUILD", pytrace=False)
    return subprocess.run([str(SPECCHECK), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def c_verdict(path):
    """(file is valid, canonical JSON of each valid document, error lines)."""
    r = speccheck("--json", path)
    assert r.returncode in (0, 1), r.stderr
    lines = r.stdout.splitlines()
    canon = [json.loads(line) for line in lines if line.startswith("{")]
    errors = [line for line in lines if not line.startswith("{")]
    return r.returncode == 0, canon, errors


def size_bytes(s):
    return int(s[:-1]) << (30 if s.endswith("G") else 20)


def check_canonical(doc, canon, where):
    """canon (C's canonical JSON) is valid, keeps every value doc set and
    fills in the schema's defaults for the rest."""
    assert not list(VALIDATOR.iter_errors(canon)), f"{where}: canonical JSON is not schema-valid"

    def same(user, c, path):
        if isinstance(user, dict):
            for k, v in user.items():
                assert k in c, f"{where}: {path}{k} missing from canonical JSON"
                same(v, c[k], f"{path}{k}.")
        elif isinstance(user, list):
            assert len(user) == len(c), f"{where}: {path} length differs"
            for i, (u, cv) in enumerate(zip(user, c)):
                same(u, cv, f"{path}[{i}].")
        elif path == "spec.disk_size.":
            assert size_bytes(user) == size_bytes(c), f"{where}: disk_size {user} became {c}"
        else:
            assert user == c and type(user) is type(c), f"{where}: {path} {user!r} became {c!r}"

    same(doc, canon, "")
    props = SCHEMA["$defs"]["spec"]["properties"]
    given = doc.get("spec", {})
    for key, sub in props.items():
        if "default" in sub and key not in given:
            assert canon["spec"][key] == sub["default"], f"{where}: default of spec.{key}"
    for i, item in enumerate(given.get("file_sync", [])):
        if "mode" not in item:
            assert canon["spec"]["file_sync"][i]["mode"] == "0600"
    assert canon["metadata"]["labels"] == doc["metadata"].get("labels", {})


def compare(path):
    data = Path(path).read_bytes()
    py_ok, results = schema_verdict(data)
    c_ok, canon, errors = c_verdict(path)
    why = "\n".join(errors)
    if results is not None:
        py_errs = [f"doc {i}: {e.message}" for i, (_, errs) in enumerate(results) for e in errs]
        why += "\nschema: " + "; ".join(py_errs)
    assert py_ok == c_ok, f"{path}: schema says {'valid' if py_ok else 'invalid'}, C says " \
                          f"{'valid' if c_ok else 'invalid'}\n{why}"
    if results is not None:
        # both read the whole stream: the valid documents must match one for one
        valid = [d for d, errs in results if not errs]
        assert len(valid) == len(canon), f"{path}: {len(valid)} valid documents by schema, " \
                                         f"{len(canon)} by C\n{why}"
        for i, (d, c) in enumerate(zip(valid, canon)):
            check_canonical(d, c, f"{path} doc {i}")
    return py_ok


# ---- tests ----------------------------------------------------------------

def rel(p):
    return p.relative_to(ROOT)


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_corpus_is_large_enough():
    assert len(GOOD) >= 12 and len(BAD) >= 30 and len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_file_is_valid_for_schema_and_c(path):
    assert compare(rel(path))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_file_is_invalid_for_schema_and_c(path):
    assert not compare(rel(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_for_schema_and_c(path):
    assert compare(rel(path))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_speccheck_prints_exactly_the_err_file(path):
    r = speccheck(rel(path))
    assert r.returncode == 1
    assert r.stdout == path.with_suffix(".err").read_text()


HDR = "apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: web\n"

# (document text, expected verdict): the places where YAML typing, patterns
# and limits are easiest to get subtly different.
TRICKY = [
    (HDR, True),
    (HDR + "spec: {nat: True}\n", True),
    (HDR + "spec: {nat: yes}\n", False),
    (HDR + "spec: {nat: 'false'}\n", False),
    (HDR + "spec: {image: yes}\n", True),
    (HDR + "spec: {image: 1.5}\n", True),
    (HDR + "spec: {image: 15}\n", False),
    (HDR + "spec: {image: 0x1F}\n", True),
    (HDR + "spec: {image: .inf}\n", True),
    (HDR + "spec: {image: null}\n", False),
    (HDR + "spec: {image: ~}\n", False),
    (HDR + "spec: {image: Null}\n", False),
    (HDR + "spec: {image: nULL}\n", True),
    (HDR + "spec: {vcpu: +4}\n", True),
    (HDR + "spec: {vcpu: 04}\n", True),
    (HDR + "spec: {vcpu: 4.0}\n", False),
    (HDR + "spec: {vcpu: 1_0}\n", False),
    (HDR + "spec: {vcpu: 99999999999999999999999}\n", False),
    (HDR + "spec: {memory_mib: 0o400}\n", False),
    (HDR + "spec: {disk_size: 8G}\n", True),
    (HDR + "spec: {disk_size: \"8G\\n\"}\n", False),
    (HDR + "spec: {file_sync: [{host: a, guest: ~/b, mode: 0644}]}\n", False),
    (HDR + "spec: {file_sync: [{host: a, guest: ~/b, mode: '0644'}]}\n", True),
    (HDR + "spec: {file_sync: [{host: a, guest: \"~/b/\\n/../c\"}]}\n", False),
    (HDR + "spec: {file_sync: [{host: a, guest: \"~/..\\n\"}]}\n", True),
    (HDR + "spec: {file_sync: [{host: a, guest: ~/..x}]}\n", True),
    (HDR + "spec: {file_sync: [{host: a, guest: /root/}]}\n", True),
    (HDR + "spec: {file_sync: [{host: a, guest: /root}]}\n", False),
    (HDR + "spec: {workspace: {path: x, branch: \"a\\n\"}}\n", False),
    (HDR + "spec: {workspace: {path: x, branch: a/.b}}\n", True),
    (HDR + "spec: {workspace: {path: x, branch: a/..b}}\n", False),
    (HDR + "  labels: {\"a\\n\": b}\n", False),
    (HDR + "  labels: {a: \"b\\n\"}\n", False),
    (HDR + "  labels: {a: ''}\n", True),
    (HDR + "  labels: {'': a}\n", False),
    (HDR + "  labels: {1: a}\n", False),
    (HDR + "  labels: {a: b, a: c}\n", False),
    (HDR + "  labels:\n", False),
    ("apiVersion: banger/v1\nkind: Sandbox\nmetadata:\n  name: \"web\\n\"\n", False),
    ("apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web}\n---\n", True),
    ("apiVersion: banger/v1\nkind: Sandbox\nmetadata: {name: web}\n---\n- x\n", False),
    (HDR + "spec: !!map {}\n", False),
    (HDR + "spec: &a {}\n", False),
    (HDR + "spec: {image: \"a\\0b\"}\n", False),
    (HDR + "spec: {image: \"\\u00e9\"}\n", True),
    (HDR + "spec: {kernel: " + "k" * 255 + "}\n", True),
    (HDR + "spec: {kernel: " + "k" * 256 + "}\n", False),
    (HDR + "spec: {workspace: {path: " + "p" * 4096 + "}}\n", True),
    (HDR + "spec: {workspace: {path: " + "p" * 4097 + "}}\n", False),
    ("".join(f"---\n{HDR}" for _ in range(MAX_DOCS)), True),
    ("".join(f"---\n{HDR}" for _ in range(MAX_DOCS + 1)), False),
    ("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", False),
    (HDR + "spec: {ports: [" + ", ".join(["{host: 1, guest: 1}"] * 64) + "]}\n", True),
    (HDR + "spec: {ports: [" + ", ".join(["{host: 1, guest: 1}"] * 65) + "]}\n", False),
]


@pytest.mark.parametrize("text,valid", TRICKY, ids=[f"tricky{i}" for i in range(len(TRICKY))])
def test_tricky_document_gets_the_same_verdict(tmp_path, text, valid):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    assert compare(path) == valid
