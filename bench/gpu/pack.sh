#!/usr/bin/env bash
# Packs what the GPU image may lack into one ignored folder, .gpu/ (under the
# device tool's 64 MiB carry limit), so that bench/gpu/run.sh builds there
# without a network:
#   .gpu/deps/usr/...   the Debian 12 files of the libraries ../shared/GPU.md did
#                       not check on the GPU image (CLI11, fmt, spdlog, simdjson,
#                       PCRE2, xxHash, Catch2, sentencepiece): headers, shared
#                       libraries (built for glibc 2.36; they run on the image's
#                       2.39), CMake package files and pkg-config files (rewritten
#                       to find their files relative to themselves);
#   .gpu/shared/        the reference data the GPU tests and baseline read:
#                       fixtures/hf_tiny_llama32 and hf_baseline.py (run.sh takes
#                       the baseline from here: ../shared does not travel);
#   .gpu/commit         the commit being measured.
# The build prefers the system's copy of each library and falls back to the
# folder (METAREUSE_DEPS_FALLBACK, cmake/MetareuseDependencies.cmake).
#
#   bench/gpu/pack.sh            then: run with carry [".gpu"]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/.gpu"
shared="${SHARED_DIR:-$root/../shared}"
packages=(libcli11-dev libfmt-dev libfmt9 libspdlog-dev libspdlog1.10 libsimdjson-dev libsimdjson14
          libpcre2-dev libpcre2-8-0 libxxhash-dev libxxhash0 catch2 libsentencepiece-dev libsentencepiece0)

rm -rf "$out/deps" "$out/shared" "$out/commit"
mkdir -p "$out/deps" "$out/shared/fixtures"
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    { echo "pack: $package is not installed here (run launch/setup.sh first)" >&2; exit 1; }
  # Regular files and symlinks under /usr, with their folders.
  dpkg -L "$package" | while read -r path; do
    if [[ ( -f "$path" || -L "$path" ) && "$path" == /usr/* && "$path" != /usr/share/doc/* && "$path" != /usr/share/man/* ]]; then
      mkdir -p "$out/deps$(dirname "$path")"
      cp -a "$path" "$out/deps$path"
    fi
  done
done
# pkg-config files name prefix=/usr; make them relative to their own folder.
find "$out/deps" -name '*.pc' -print0 | while IFS= read -r -d '' pc; do
  depth="$(realpath --relative-to="$(dirname "$pc")" "$out/deps/usr")"
  sed -i "s|^prefix=.*|prefix=\${pcfiledir}/$depth|" "$pc"
done

# hf_baseline.py travels on its own: ../shared does not reach the GPU machine,
# and run.sh reads the baseline from .gpu/shared.
if [[ -f "$shared/hf_baseline.py" ]]; then
  cp "$shared/hf_baseline.py" "$out/shared/"
else
  echo "pack: no $shared/hf_baseline.py: the run will have no HF baseline" >&2
fi
if [[ -d "$shared/fixtures/hf_tiny_llama32" ]]; then
  cp -a "$shared/fixtures/hf_tiny_llama32" "$out/shared/fixtures/"
else
  echo "pack: no $shared/fixtures/hf_tiny_llama32: the GPU fixture tests will skip" >&2
fi
# Tests look for README.md to recognise the folder.
cp "$shared/README.md" "$out/shared/" 2>/dev/null || echo "reference data for the GPU run" > "$out/shared/README.md"
# The commit the run measures (the GPU machine's copy of the tree may have no .git).
git -C "$root" rev-parse HEAD > "$out/commit" 2>/dev/null || echo unknown > "$out/commit"
size="$(du -sb "$out" | cut -f1)"
echo "pack: $out holds $((size / 1024 / 1024)) MiB ($(find "$out" -type f | wc -l) files)"
if (( size > 60 * 1024 * 1024 )); then echo "pack: over 60 MiB, too close to the 64 MiB carry limit" >&2; exit 1; fi
