"""Validate rendered Kubernetes manifests offline, against kubernetes-validate's schemas.

    python tests/helm/manifests.py --kubernetes-version 1.31.0 rendered/*.yaml

Validation is strict: a field Kubernetes does not know fails, as the API server would
refuse it. Kinds defined by a CustomResourceDefinition have no schema in
kubernetes-validate; the ones the chart renders are skipped by name below, and any other
kind without a schema fails, so that a misspelt apiVersion cannot pass unseen. Until the
check carries the CRDs' own schemas (KEDA's and the Prometheus Operator's, vendored),
the skipped objects are covered only by the assertions of tests/helm/test_chart.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate import SchemaNotFoundError

# (apiVersion, kind) of the custom resources the chart renders, with their owner.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "the Prometheus Operator",
    ("keda.sh/v1alpha1", "ScaledObject"): "KEDA",
}


def manifests(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a multi-document YAML file, empty documents left out."""
    with path.open() as file:
        for document in yaml.safe_load_all(file):
            if document:
                yield document


def problems(manifest: dict[str, Any], kubernetes_version: str) -> list[str]:
    """What is wrong with one object; empty when it is valid."""
    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path) or "(top)"
        return [f"{where}: {exc.message}"]
    except SchemaNotFoundError as exc:
        return [exc.message]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)

    validated = skipped = failed = 0
    for path in args.files:
        for manifest in manifests(path):
            key = (manifest.get("apiVersion"), manifest.get("kind"))
            name = f"{path.name}: {key[1]}/{manifest['metadata']['name']}"
            if key in CUSTOM_KINDS:
                print(f"skipped {name}: a custom resource of {CUSTOM_KINDS[key]}")
                skipped += 1
                continue

            found = problems(manifest, args.kubernetes_version)
            for problem in found:
                print(f"INVALID {name}: {problem}", file=sys.stderr)
            if found:
                failed += 1
            else:
                validated += 1

    print(
        f"manifests: {validated} valid, {failed} invalid, {skipped} skipped "
        f"(Kubernetes {args.kubernetes_version}, strict)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
