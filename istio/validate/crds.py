"""Validates Kubernetes objects against the OpenAPI schemas of the CRDs that define them, as an
API server with strict field validation (kubectl's default) would: an unknown field is refused,
not pruned. Objects of Kubernetes' own kinds are checked with kubernetes-validate (strict).
Not checked: the CRDs' CEL rules (x-kubernetes-validations), which only an API server runs,
and what a controller checks (references between objects).

  python3 crds.py CRD_FILE... -- MANIFEST...

Needs PyYAML, jsonschema and kubernetes-validate (make istio-check installs them). Exits
non-zero, naming each invalid object, if any object is invalid or has no schema.
"""

import copy
import sys

import jsonschema
import kubernetes_validate
import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def strict(schema):
    """The schema with every object that lists its properties closed to others (unless the
    CRD keeps unknown fields there), as an API server treats unknown fields under strict
    field validation."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def crd_schemas(files):
    """(apiVersion, kind) -> the served version's strict schema."""
    schemas = {}
    for file in files:
        with open(file) as f:
            for document in yaml.load_all(f, Loader=Loader):
                if not document or document.get("kind") != "CustomResourceDefinition":
                    continue
                spec = document["spec"]
                for version in spec["versions"]:
                    if not version.get("served"):
                        continue
                    api_version = f"{spec['group']}/{version['name']}"
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(api_version, spec["names"]["kind"])] = strict(schema)
    return schemas


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    crds, manifests = argv[:split], argv[split + 1 :]
    schemas = crd_schemas(crds)
    if not schemas or not manifests:
        sys.exit(__doc__)
    failures = checked = 0
    for file in manifests:
        with open(file) as f:
            objects = [o for o in yaml.load_all(f, Loader=Loader) if o]
        for obj in objects:
            key = (obj.get("apiVersion"), obj.get("kind"))
            meta = obj.get("metadata") or {}
            name = f"{file}: {key[1]} {meta.get('namespace', '')}/{meta.get('name')}"
            schema = schemas.get(key)
            try:
                if schema is not None:
                    if not meta.get("name"):
                        raise ValueError("metadata.name is missing")
                    jsonschema.Draft202012Validator(schema).validate(obj)
                else:
                    # Kubernetes' own kinds; anything else has no schema.
                    version = kubernetes_validate.latest_version()
                    kubernetes_validate.validate(obj, version, strict=True)
                checked += 1
                print(f"{name}: valid")
            except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as error:
                path = "/".join(str(p) for p in error.absolute_path)
                print(f"{name}: INVALID at /{path}: {error.message}", file=sys.stderr)
                failures += 1
            except kubernetes_validate.SchemaNotFoundError:
                print(f"{name}: no schema for {key[0]} {key[1]}", file=sys.stderr)
                failures += 1
            except ValueError as error:
                print(f"{name}: INVALID: {error}", file=sys.stderr)
                failures += 1
    if failures or not checked:
        print(f"{failures} invalid, {checked} valid", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
