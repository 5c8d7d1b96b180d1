#!/usr/bin/env bash
# Installs the Debian packages Woodpecker needs to build, test or benchmark.
# Idempotent and quiet when everything is present.
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh bench    also the benchmark peers (fio)
set -euo pipefail
pkgs=(build-essential cmake pkg-config libsqlite3-dev libyaml-dev clang libclang-rt-14-dev
      libcurl4-openssl-dev libssl-dev libcjson-dev libzstd-dev liblz4-dev libmicrohttpd-dev etcd-server etcd-client
      ceph-mon ceph-osd radosgw ceph-common python3 groff-base)
[ "${1:-}" = bench ] && pkgs+=(fio)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
