#!/usr/bin/env bash
# Regenerates the committed PTX of the CUDA backend from the sources beside this script, when they
# changed and nvcc is available (NVCC=/path/to/nvcc overrides the one on the PATH). Run by the kernels
# module's build (profile cuda-ptx) and by hand; without nvcc it only reports whether the PTX is stale,
# which PtxFreshnessTest then fails on.
#
# The PTX targets compute capability 8.0 and 9.0; the driver compiles it for the GPU it runs on, so no
# nvcc or NVRTC is needed at run time. sources.sha256 records a hash of every file in this folder (this
# script and its flags included) that the test recomputes.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$src/../resources/moe4j/kernels/cuda"
flags=(-ptx -O3 -std=c++17)
archs=(80 90)

hash_sources() {
    (cd "$src" && LC_ALL=C ls | LC_ALL=C sort | while read -r f; do
        [ -f "$f" ] && printf '%s  %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$f"
    done) | sha256sum | cut -d' ' -f1
}

want="$(hash_sources)"
have="$(sed -n 's/^sources-sha256 //p' "$out/sources.sha256" 2>/dev/null || true)"
fresh=1
[ "$want" = "$have" ] || fresh=0
for a in "${archs[@]}"; do [ -f "$out/moe4j.sm_$a.ptx.gz" ] || fresh=0; done
if [ "$fresh" = 1 ]; then
    echo "CUDA PTX is up to date"
    exit 0
fi

nvcc="${NVCC:-$(command -v nvcc || true)}"
if [ -z "$nvcc" ]; then
    echo "WARNING: the CUDA sources changed but nvcc is not available: the committed PTX is stale" >&2
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for a in "${archs[@]}"; do
    "$nvcc" "${flags[@]}" -arch=compute_$a -o "$tmp/moe4j.sm_$a.ptx" "$src/moe4j.cu"
done
mkdir -p "$out"
# gzipped without a name or a time stamp, so that the same PTX gives the same bytes
for a in "${archs[@]}"; do gzip -n -9 -c "$tmp/moe4j.sm_$a.ptx" > "$out/moe4j.sm_$a.ptx.gz"; done
rm -f "$out"/moe4j.sm_*.ptx
{
    echo "sources-sha256 $want"
    echo "nvcc $("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
} > "$out/sources.sha256"
echo "CUDA PTX regenerated with $nvcc for compute capability ${archs[*]}"
