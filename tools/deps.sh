#!/usr/bin/env bash
# Installs the Debian 12 packages ufdsm builds and tests with (as root). Quiet when they are
# already there, so every other script can call it first.
set -euo pipefail
# python3 and gnuplot-nox: bench/run and tools/dsmtrace (their tests skip the plots without gnuplot).
# openssh-server and openssh-client: tests/launcher/test_sshd.sh runs dsmrun --hosts through a
# real sshd of its own on 127.0.0.1.
pkgs=(cmake make gcc pkg-config liburing-dev libcmocka-dev libibverbs-dev librdmacm-dev libsodium-dev python3 gnuplot-nox
  openssh-server openssh-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]} - run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
