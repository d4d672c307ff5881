#!/usr/bin/env bash
# The benchmark's stand-in (nginx with its njs module) and load generator (h2load),
# from Debian's packages; does nothing when they are there already.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || missing+=(libnginx-mod-http-js)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bench: installing ${missing[*]} from Debian's packages"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
