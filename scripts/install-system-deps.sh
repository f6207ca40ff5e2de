#!/usr/bin/env bash
# Installs what webtune's test lanes need on Debian 12, as root:
#   - chromium (its SwiftShader gives the browser lane a WebGPU adapter)
#   - mesa-vulkan-drivers >= 24 from bookworm-backports (lavapipe: the Node lane's
#     Vulkan adapter under Dawn; bookworm's own Mesa 22.3 offers no adapter)
#   - with --fixtures: Debian's PyTorch, ONNX, NumPy, SciPy for scripts/ generators
# The mirror for bookworm-backports is copied from the machine's own apt sources,
# so no host name is written here.
set -euo pipefail

want_fixtures=0
for arg in "$@"; do
  case "$arg" in
    --fixtures) want_fixtures=1 ;;
    *) echo "usage: $0 [--fixtures]" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: must run as root (apt-get). Run: sudo $0 $*" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/' || true
}

add_backports() {
  local src=/etc/apt/sources.list.d/debian.sources
  local dst=/etc/apt/sources.list.d/webtune-bookworm-backports.sources
  [ -f "$dst" ] && return 0
  if [ ! -f "$src" ]; then
    echo "install-system-deps: $src not found; add bookworm-backports to apt by hand" >&2
    exit 1
  fi
  # First stanza's URIs and Signed-By lines.
  local uris signed
  uris=$(awk '/^$/{exit} /^URIs:/{print; exit}' "$src")
  signed=$(awk '/^$/{exit} /^Signed-By:/{print; exit}' "$src")
  {
    echo "Types: deb"
    echo "$uris"
    echo "Suites: bookworm-backports"
    echo "Components: main"
    [ -n "$signed" ] && echo "$signed"
  } > "$dst"
}

updated=0
apt_update() { [ $updated -eq 1 ] || { apt-get update -qq; updated=1; }; }

if ! command -v chromium >/dev/null 2>&1; then
  apt_update
  apt-get install -y -qq chromium >/dev/null
fi

major=$(mesa_major)
if [ -z "$major" ] || [ "$major" -lt 24 ]; then
  add_backports
  updated=0
  apt_update
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
fi

if [ $want_fixtures -eq 1 ]; then
  if ! /usr/bin/python3 -c 'import torch, onnx, numpy, scipy' 2>/dev/null; then
    apt_update
    apt-get install -y -qq python3-torch python3-onnx python3-numpy python3-scipy >/dev/null
  fi
fi

echo "install-system-deps: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
