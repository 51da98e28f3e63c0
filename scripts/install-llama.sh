#!/usr/bin/env bash
# Install llama-cpp-python into the virtual environment, built for any x86-64
# machine with AVX2, not for the one that happens to compile it.
#   install-llama.sh <venv-bin>
#
# Why not a plain `pip install`: llama-cpp-python has no Linux wheel, and pip's
# build uses -march=native. On a CPU with AMX (Intel Sapphire Rapids and
# later) that compiles llama.cpp's AMX kernels, which crash the embedded model
# on its first token (ggml-org/llama.cpp#20824); and a wheel built natively on
# one machine can die of an illegal instruction on another, while pip's cache
# would hand it over without rebuilding. So the wheel is built once per
# version and flags, without pip's cache, kept in a folder named after both,
# and installed from there.
set -euo pipefail

bin=${1:?usage: install-llama.sh <venv-bin>}
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' "$root/pyproject.toml")
[ -n "$version" ] || { echo "install-llama.sh: no llama-cpp-python==X pin in pyproject.toml" >&2; exit 1; }

flags=""
if [ "$(uname -m)" = "x86_64" ]; then
    flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi

if "$bin/python" - "$version" <<'EOF' 2>/dev/null; then exit 0; fi
import importlib.metadata, json, sys
dist = importlib.metadata.distribution("llama-cpp-python")
assert dist.version == sys.argv[1]
# Installed from our folder (a file URL there), not by a plain pip install.
origin = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
assert "/promptcast/wheels/" in origin
EOF

key=$(printf '%s %s' "$version" "$flags" | sha256sum | cut -c1-12)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/promptcast/wheels/llama-$version-$key"
wheel=$(ls "$dir"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
    echo "building llama-cpp-python $version (llama.cpp, about 6 minutes; once per machine)"
    tmp="$dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    CMAKE_ARGS="$flags" "$bin/pip" wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
        -w "$tmp" "llama-cpp-python==$version"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    wheel=$(ls "$dir"/llama_cpp_python-"$version"-*.whl | head -n1)
fi
"$bin/pip" install --quiet --force-reinstall --no-deps "$wheel"
