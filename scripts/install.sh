#!/usr/bin/env bash
# Installs the release build as a self-contained tree that can be moved or
# copied anywhere (a container image, /opt, another machine with the same
# glibc) and runs without LD_LIBRARY_PATH:
#   PREFIX/bin/            inferd, inferctl, the task plugins (inferd loads
#                          the plugins beside it) and inferd-entrypoint (the
#                          container's: deploy/entrypoint.sh)
#   PREFIX/lib/torch/lib/  LibTorch's libraries, which the binaries find through
#                          their rpath $ORIGIN/../lib/torch/lib
#   PREFIX/lib/nvidia/     the CUDA libraries of the CUDA build of LibTorch, found
#                          through LibTorch's own rpath $ORIGIN/../../nvidia/...
#   PREFIX/share/licenses/ LibTorch's and the CUDA libraries' licenses
# Usage: scripts/install.sh PREFIX [--hardlink]
#   --hardlink  link the files instead of copying them (same filesystem only;
#               the tests use it to install without copying gigabytes)
# Build first: scripts/setup.sh (or cargo build --release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${1:?usage: scripts/install.sh PREFIX [--hardlink]}"
COPY=(cp -p)
if [[ "${2:-}" == "--hardlink" ]]; then
  COPY=(cp -l)
fi
RELEASE="$ROOT/target/release"
SITE="$ROOT/.venv/lib/python3.11/site-packages"
for f in inferd inferctl; do
  [[ -x "$RELEASE/$f" ]] || { echo "install: $RELEASE/$f is missing: build first (scripts/setup.sh)" >&2; exit 1; }
done
[[ -d "$SITE/torch/lib" ]] || { echo "install: no LibTorch at $SITE/torch (scripts/setup.sh installs it)" >&2; exit 1; }

mkdir -p "$PREFIX/bin" "$PREFIX/lib/torch/lib" "$PREFIX/share/licenses/torch"
"${COPY[@]}" -f "$RELEASE/inferd" "$RELEASE/inferctl" "$PREFIX/bin/"
# The container entrypoint (deploy/entrypoint.sh): inferd with the model the
# environment names.
"${COPY[@]}" -f "$ROOT/deploy/entrypoint.sh" "$PREFIX/bin/inferd-entrypoint"
for plugin in "$RELEASE"/libinferd_plugin_*.so; do
  "${COPY[@]}" -f "$plugin" "$PREFIX/bin/"
done
# Every shared library but the Python bindings.
for lib in "$SITE"/torch/lib/*.so*; do
  [[ "$(basename "$lib")" == libtorch_python.so ]] && continue
  "${COPY[@]}" -f "$lib" "$PREFIX/lib/torch/lib/"
done
for license in "$SITE"/torch-*.dist-info/LICENSE* "$SITE"/torch-*.dist-info/licenses/*; do
  [[ -f "$license" ]] && "${COPY[@]}" -f "$license" "$PREFIX/share/licenses/torch/"
done
if [[ -d "$SITE/nvidia" ]]; then
  # Each CUDA package's lib/ keeps its place (LibTorch's rpath names it).
  (cd "$SITE" && find nvidia -path '*/lib/*' \( -type f -o -type l \) -print0) |
    while IFS= read -r -d '' lib; do
      mkdir -p "$PREFIX/lib/$(dirname "$lib")"
      "${COPY[@]}" -fP "$SITE/$lib" "$PREFIX/lib/$lib"
    done
  for info in "$SITE"/nvidia_*.dist-info; do
    pkg="$(basename "$info" .dist-info)"
    for license in "$info"/License* "$info"/licenses/*; do
      [[ -f "$license" ]] || continue
      mkdir -p "$PREFIX/share/licenses/$pkg"
      "${COPY[@]}" -f "$license" "$PREFIX/share/licenses/$pkg/"
    done
  done
fi
echo "installed inferd into $PREFIX ($(du -sh "$PREFIX" | cut -f1)); run $PREFIX/bin/inferd --help"
