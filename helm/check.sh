#!/usr/bin/env bash
# Checks the Helm chart without a cluster:
#   1. helm lint --strict, with the default values and with each file in ci/;
#   2. helm template with the same values, every rendered manifest validated offline
#      against the Kubernetes schemas of $KUBERNETES_VERSION (tests/helm/manifests.py);
#   3. values with a misspelt key, a wrong type or a bad combination are refused.
#
#   helm/check.sh            the whole check
#   helm/check.sh install    build the pinned helm into the cache if missing; print its path
#
# helm is built from source with `go install` (the Go module proxy is the one source
# this project's machines reach) into ${APNS_CONNECTOR_CACHE:-~/.cache/apns-connector}/bin,
# outside the clone; the first build takes a few minutes, later runs reuse it.
set -euo pipefail

HELM_VERSION=v4.3.2
KUBERNETES_VERSION=1.31.0

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
chart=$here/apns-connector
cache=${APNS_CONNECTOR_CACHE:-$HOME/.cache/apns-connector}
helm=$cache/bin/helm
python=${PYTHON:-$repo/.venv/bin/python}

say() { echo "helm-check: $*" >&2; }

# The module version the cached helm was built from (`helm version` says only "v4.3"
# when built by go install, without the release's link flags).
built_version() {
    go version -m "$helm" 2>/dev/null | awk '$1 == "mod" { print $3 }'
}

install_helm() {
    if ! command -v go >/dev/null; then
        [[ -x $helm ]] && return
        say "go is needed to build helm $HELM_VERSION (apt-get install golang-go, or go.dev)"
        exit 1
    fi
    # Another helm version may render differently; rebuild when the cached one differs.
    [[ -x $helm && $(built_version) == "$HELM_VERSION" ]] && return
    say "building helm $HELM_VERSION into $cache/bin (first run only, a few minutes)"
    local started=$SECONDS
    GOBIN=$cache/bin go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    say "helm $HELM_VERSION built in $((SECONDS - started)) s"
}

# Runs helm, which must fail; its output must contain the expected message.
expect_refusal() {
    local what=$1 expected=$2 output
    shift 2
    if output=$("$helm" "$@" 2>&1); then
        say "FAIL: $what was accepted"
        exit 1
    fi
    if ! grep -qF -- "$expected" <<<"$output"; then
        say "FAIL: $what was refused, but not with \"$expected\":"
        echo "$output" >&2
        exit 1
    fi
    say "ok: $what is refused ($expected)"
}

check() {
    local started=$SECONDS
    local rendered
    rendered=$(mktemp -d)
    trap "rm -rf '$rendered'" EXIT

    # The default values first, then each realistic values file.
    local values=("" "$chart"/ci/*-values.yaml)
    for file in "${values[@]}"; do
        local name=default args=()
        if [[ -n $file ]]; then
            name=$(basename "$file" -values.yaml)
            args=(--values "$file")
        fi
        "$helm" lint --strict --quiet "$chart" "${args[@]}" >&2
        "$helm" template apns "$chart" --namespace push --kube-version "$KUBERNETES_VERSION" \
            "${args[@]}" >"$rendered/$name.yaml"
        say "ok: lint and template with $name values"
    done

    "$python" "$repo/tests/helm/manifests.py" --kubernetes-version "$KUBERNETES_VERSION" \
        "$rendered"/*.yaml

    # The schema refuses what would otherwise be silently ignored or mistyped.
    printf 'replicaCout: 3\n' >"$rendered/misspelt-top.yaml"
    expect_refusal "a misspelt top-level key" "additional properties 'replicaCout' not allowed" \
        template apns "$chart" --values "$rendered/misspelt-top.yaml"
    printf 'delivery:\n  drainTimeoutSecond: 30\n' >"$rendered/misspelt-nested.yaml"
    expect_refusal "a misspelt nested key" "additional properties 'drainTimeoutSecond' not allowed" \
        template apns "$chart" --values "$rendered/misspelt-nested.yaml"
    printf 'apps:\n  - bundleId: com.example.a\n    keyFile: k.p8\n    keyID: ABCDE12345\n    teamId: TEAM123456\n' \
        >"$rendered/misspelt-app.yaml"
    expect_refusal "a misspelt key of an app" "additional properties 'keyID' not allowed" \
        template apns "$chart" --values "$rendered/misspelt-app.yaml"
    expect_refusal "a string where a number belongs" "at '/replicaCount': got string, want integer" \
        template apns "$chart" --set-string replicaCount=two

    # Checks across values, which the templates make.
    expect_refusal "two autoscalers at once" \
        "autoscaling.enabled and keda.enabled are both true" \
        template apns "$chart" --set autoscaling.enabled=true --set keda.enabled=true \
        --set kafka.requestsTopicPartitions=12
    expect_refusal "more replicas than partitions" \
        "keda.maxReplicas (6) is larger than kafka.requestsTopicPartitions (4)" \
        template apns "$chart" --set keda.enabled=true --set kafka.requestsTopicPartitions=4

    say "passed in $((SECONDS - started)) s"
}

install_helm
case ${1:-check} in
install) echo "$helm" ;;
check) check ;;
*)
    say "usage: helm/check.sh [install|check]"
    exit 2
    ;;
esac
