#!/usr/bin/env bash
# 40-schemas.sh: the JSON Schema documents under schemas/ are valid draft
# 2020-12, every schema has an example under schemas/examples/ that
# validates against it, a few more good documents validate, and known-bad
# documents (each breaking one rule) are rejected. (That every
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
GET = examples["lookup-request"]
R = "edr:reply:client-7"
def mutate(doc, fn):
    d = copy.deepcopy(doc); fn(d); return d

# More good documents: the v2 arguments in use.
good = [
    ("event", mutate(neg, lambda d: d["data"].update(counter_party_id="BPNL\u00e9 \u2028x")), "key fields may hold non-ASCII and spaces"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(wait_ms=30000, min_positions={"0": 0, "3": 1234})), "(v2) get with wait_ms and min_positions"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "get_by_transfer_id", "args": {"transfer_process_id": "tp-1", "wait_ms": 0}}, "(v2) get_by_transfer_id"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "list_connections", "args": {"asset_id_prefix": "urn:", "asset_id": "a", "transfer_process_id": "tp", "limit": 10, "cursor": None, "min_positions": {"12": 7}}}, "(v2) list with every filter"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "count", "args": {"counter_party_id_substring": None, "asset_id": "a"}}, "(v2) count with asset_id"),
    ("lookup-reply-error", {"id": None, "status": "error", "error": "request: not well-formed JSON", "code": "bad_request", "result": None}, "(v2) error with code"),
    ("lookup-reply-get-by-transfer-id", {"id": "x", "status": "not_found", "result": {}}, "(v2) get_by_transfer_id not_found"),
]
for schema, doc, what in good:
    errs = [e.message for e in validator(schema).iter_errors(doc)]
    check(not errs, f"{schema} rejects: {what}: {errs}")

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
    ("event", mutate(neg, lambda d: d["data"].update(counter_party_id="BPNL\x1f1")), "(v2) unit separator in counter_party_id"),
    ("event", mutate(neg, lambda d: d["data"].update(counter_party_address="https://a\n")), "(v2) trailing newline in counter_party_address"),
    ("event", mutate(exp, lambda d: d["data"].update(query_checksum="q\x00")), "(v2) NUL in query_checksum"),
    ("event", mutate(exp, lambda d: d["data"].update(policy_checksum="\x7f")), "(v2) DEL in policy_checksum"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "get_connection", "args": {}}, "get without keys"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "nope"}, "unknown op"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "list_connections", "args": {"limit": 1001}}, "limit > 1000"),
    ("lookup-request", {"id": "x", "reply_to": "client-7", "op": "ping"}, "(v2) reply_to outside edr:reply:"),
    ("lookup-request", {"id": "x", "reply_to": "edr:replies", "op": "ping"}, "(v2) reply_to edr:replies"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(wait_ms=30001)), "(v2) wait_ms > 30000"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(wait_ms=-1)), "(v2) wait_ms < 0"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(wait_ms="5")), "(v2) wait_ms a string"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(min_positions={"x": 1})), "(v2) min_positions partition not decimal"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(min_positions={"03": 1})), "(v2) min_positions partition with leading zero"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(min_positions={"3": -1})), "(v2) min_positions negative offset"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(min_positions={"3": 1.5})), "(v2) min_positions fractional offset"),
    ("lookup-request", mutate(GET, lambda d: d["args"].update(min_positions=[3, 1])), "(v2) min_positions an array"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "get_by_transfer_id", "args": {}}, "(v2) get_by_transfer_id without transfer_process_id"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "get_by_transfer_id"}, "(v2) get_by_transfer_id without args"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "get_by_transfer_id", "args": {"transfer_process_id": 7}}, "(v2) transfer_process_id a number"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "count", "args": {"asset_id": 5}}, "(v2) asset_id a number"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "list_connections", "args": {"asset_id_prefix": ["a"]}}, "(v2) asset_id_prefix an array"),
    ("lookup-request", {"id": "x", "reply_to": R, "op": "count", "args": {"min_positions": {"1": "7"}}}, "(v2) count min_positions offset a string"),
    ("lookup-reply-error", {"id": "x", "status": "error"}, "error reply without error"),
    ("lookup-reply-error", {"id": "x", "status": "error", "error": "bad"}, "(v2) error reply without code"),
    ("lookup-reply-error", {"id": "x", "status": "error", "error": "bad", "code": "oops"}, "(v2) error reply with an unknown code"),
    ("lookup-reply", {"id": "x", "status": "error", "error": "bad"}, "(v2) any reply: error without code"),
    ("lookup-reply-get-connection", {"id": "x", "status": "not_found", "result": None}, "not_found with null"),
    ("lookup-reply-list-connections", {"id": "x", "status": "ok", "result": {"items": []}}, "list without next_cursor"),
    ("lookup-reply-list-connections", mutate(examples["lookup-reply-list-connections"], lambda d: d["result"]["items"][0].update(assetId=5)), "(v2) list item assetId a number"),
    ("lookup-reply-get-by-transfer-id", mutate(examples["lookup-reply-get-by-transfer-id"], lambda d: d["result"].pop("edr")), "(v2) get_by_transfer_id ok without edr"),
    ("lookup-reply-get-by-transfer-id", mutate(examples["lookup-reply-get-by-transfer-id"], lambda d: d["result"]["edr"].pop("transferProcessId")), "(v2) get_by_transfer_id edr without transferProcessId"),
    ("lookup-reply-get-by-transfer-id", {"id": "x", "status": "not_found", "result": None}, "(v2) get_by_transfer_id not_found with null"),
]
for schema, doc, what in bad:
    check(not validator(schema).is_valid(doc), f"{schema} accepts: {what}")

print(f"schemas: {len(schemas)} documents, {len(examples)} examples")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
