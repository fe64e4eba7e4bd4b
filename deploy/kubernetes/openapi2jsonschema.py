#!/usr/bin/python3
"""openapi2jsonschema.py: Kubernetes' own OpenAPI document (swagger.json of
the k8s.io/kubernetes release, from the Go module cache) turned into the
per-kind JSON schemas kubeconform reads, offline.

usage: openapi2jsonschema.py SWAGGER_JSON OUT_DIR [CRD_YAML...]

Writes OUT_DIR/_definitions.json (every definition) and, for each kind,
OUT_DIR/<kind>-<group>-<version>.json (core group: <kind>-<version>.json),
lowercased, as kubeconform's -schema-location
'OUT_DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json' expects. Strict:
objects reject properties their schema does not name (a misspelt field is
an error, not silently dropped), as in kubeconform's "-strict" schema set.
Each CRD_YAML (e.g. the Prometheus Operator's ServiceMonitor, from its Go
module) adds a schema per served version from its openAPIV3Schema.
What the API server accepts beyond OpenAPI's types: int-or-string fields
take both, quantities take strings and numbers, and any field may be null
(Helm renders empty values that way).
"""
import json
import os
import sys


def fix(node):
    if isinstance(node, dict):
        if (node.get("format") == "int-or-string"
                or node.get("x-kubernetes-int-or-string")):
            return {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
        out = {}
        for k, v in node.items():
            if k == "$ref":
                out[k] = "_definitions.json" + v  # "#/definitions/..."
            elif k == "properties":
                out[k] = {p: fix(s) for p, s in v.items()}
            else:
                out[k] = fix(v)
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        if (t == "object" and "properties" in out
                and "additionalProperties" not in out):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [fix(x) for x in node]
    return node


def main():
    swagger, out_dir = sys.argv[1], sys.argv[2]
    with open(swagger) as f:
        defs = json.load(f)["definitions"]
    os.makedirs(out_dir, exist_ok=True)
    fixed = {}
    for name, d in defs.items():
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            fixed[name] = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
        else:
            fixed[name] = fix(d)
    with open(os.path.join(out_dir, "_definitions.json"), "w") as f:
        json.dump({"definitions": fixed}, f)
    kinds = 0
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            group = gvk["group"].split(".")[0] if gvk["group"] else ""
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            fn = f"{gvk['kind']}{suffix}".lower() + ".json"
            schema = dict(fixed[name])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            # Refs point into _definitions.json beside this file.
            with open(os.path.join(out_dir, fn), "w") as f:
                json.dump(schema, f)
            kinds += 1
    for crd_file in sys.argv[3:]:
        import yaml  # python3-yaml: only needed for CRDs
        with open(crd_file) as f:
            crd = yaml.safe_load(f)
        spec = crd["spec"]
        for v in spec["versions"]:
            fn = f"{spec['names']['kind']}-{spec['group'].split('.')[0]}-{v['name']}".lower()
            schema = fix(v["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            with open(os.path.join(out_dir, fn + ".json"), "w") as f:
                json.dump(schema, f)
            kinds += 1
    print(f"openapi2jsonschema: {kinds} kind schemas in {out_dir}")


if __name__ == "__main__":
    main()
