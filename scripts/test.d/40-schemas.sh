#!/usr/bin/env bash
# 40-schemas.sh: the JSON Schema documents under schemas/ are valid draft
# 2020-12, every schema has an example under schemas/examples/ that
# validates against it, and known-bad documents are rejected. (That every
# event example also passes the C decoder is checked by the unit test
# test_event_decode, which reads the same files.)
# Needs python3 with venv; installs jsonschema into .local/venv-schemas.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.local/venv-schemas
if [ ! -x "$venv/bin/python" ] ||
   ! "$venv/bin/python" -c 'import jsonschema' 2>/dev/null; then
    mkdir -p .local
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'jsonschema>=4.18' 'rfc3339-validator'
fi

"$venv/bin/python" - <<'PY'
import copy, glob, json, os, sys
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

schemas = {}
for path in sorted(glob.glob("schemas/*.schema.json")):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    Draft202012Validator.check_schema(doc)
    schemas[os.path.basename(path)[: -len(".schema.json")]] = doc
registry = Registry().with_resources(
    (doc["$id"], Resource.from_contents(doc)) for doc in schemas.values())

def validator(name):
    return Draft202012Validator(schemas[name], registry=registry,
                                format_checker=FormatChecker())

failed = passed = 0
def check(ok, what):
    global failed, passed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)

examples = {}
for path in sorted(glob.glob("schemas/examples/*.json")):
    name = os.path.basename(path)[: -len(".json")]
    with open(path, encoding="utf-8") as f:
        examples[name] = json.load(f)
    check(name in schemas, f"{path}: no schemas/{name}.schema.json")
for name in schemas:
    check(name in examples, f"schemas/{name}.schema.json: no example")
    if name in examples:
        errs = [e.message for e in validator(name).iter_errors(examples[name])]
        check(not errs, f"example {name} does not validate: {errs}")

# Every event example is also a valid "any event".
for name, doc in examples.items():
    if name.startswith("event") and name != "event-envelope":
        check(validator("event").is_valid(doc), f"{name} is not a valid event")

# Known-bad documents: the schemas must not be vacuous.
neg = examples["event-negotiated"]
exp = examples["event-expired"]
def mutate(doc, fn):
    d = copy.deepcopy(doc); fn(d); return d
bad = [
    ("event", mutate(neg, lambda d: d.pop("specversion")), "specversion missing"),
    ("event", mutate(neg, lambda d: d.update(specversion="1.1")), "specversion 1.1"),
    ("event", mutate(neg, lambda d: d.update(id="")), "empty id"),
    ("event", mutate(neg, lambda d: d.update(type="edr.foo")), "unknown type"),
    ("event", mutate(neg, lambda d: d.update(time="yesterday")), "bad time"),
    ("event", mutate(neg, lambda d: d.update(time="2025-02-30T00:00:00Z")), "February 30"),
    ("event", mutate(neg, lambda d: d.update(datacontenttype="text/plain")), "datacontenttype"),
    ("event", mutate(neg, lambda d: d["data"].pop("policy_checksum")), "policy_checksum missing"),
    ("event", mutate(neg, lambda d: d["data"].update(counter_party_id="x" * 1025)), "key too long"),
    ("event", mutate(neg, lambda d: d["data"].pop("edr")), "negotiated without edr"),
    ("event", mutate(neg, lambda d: d["data"]["edr"].pop("transferProcessId")), "edr without transferProcessId"),
    ("event", mutate(neg, lambda d: d["data"]["edr"].update(transferProcessId="")), "empty transferProcessId"),
    ("event", mutate(neg, lambda d: d["data"].update(transfer_process_id="tp")), "transfer_process_id on negotiated"),
    ("event", mutate(exp, lambda d: d["data"].update(transfer_process_id=5)), "transfer_process_id not a string"),
    ("event", mutate(exp, lambda d: d.update(data=[])), "data not an object"),
    ("lookup-request", {"id": "x", "reply_to": "r", "op": "get_connection", "args": {}}, "get without keys"),
    ("lookup-request", {"id": "x", "reply_to": "r", "op": "nope"}, "unknown op"),
    ("lookup-request", {"id": "x", "reply_to": "r", "op": "list_connections", "args": {"limit": 1001}}, "limit > 1000"),
    ("lookup-reply-error", {"id": "x", "status": "error"}, "error reply without error"),
    ("lookup-reply-get-connection", {"id": "x", "status": "not_found", "result": None}, "not_found with null"),
    ("lookup-reply-list-connections", {"id": "x", "status": "ok", "result": {"items": []}}, "list without next_cursor"),
]
for schema, doc, what in bad:
    check(not validator(schema).is_valid(doc), f"{schema} accepts: {what}")

print(f"schemas: {len(schemas)} documents, {len(examples)} examples")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
