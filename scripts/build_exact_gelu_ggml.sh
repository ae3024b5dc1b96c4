#!/usr/bin/env bash
# A copy of the installed llama_cpp package whose ggml CPU backend computes GELU exactly, for parity checks.
#
#     bash scripts/build_exact_gelu_ggml.sh [DIR]          # ~4 min on 2 cores; DIR defaults to /tmp/ijt-exact-gelu
#     PYTHONPATH=DIR/pkg python scripts/check_parity.py --only logits
#
# Stock ggml evaluates GELU through a float16 lookup table (GGML_GELU_FP16 in ggml-cpu/vec.h): input and
# output are rounded to f16. On gemma-3-270m that alone moves logits by ~0.02, which hides whether a
# conversion is exact. This builds ggml-base and ggml-cpu from the same llama-cpp-python release as the one
# installed, with that define removed, and puts them in a copy of the package. Nothing installed is touched.
set -euo pipefail

DIR=$(realpath -m "${1:-/tmp/ijt-exact-gelu}")
VERSION=$(python -c "import llama_cpp; print(llama_cpp.__version__)")
INSTALLED=$(python -c "import llama_cpp, os; print(os.path.dirname(llama_cpp.__file__))")
SRC="$DIR/src/llama_cpp_python-$VERSION"

mkdir -p "$DIR/src"
if [ ! -d "$SRC" ]; then
    pip download "llama-cpp-python==$VERSION" --no-deps --no-binary :all: -q -d "$DIR/src"
    tar xzf "$DIR/src/llama_cpp_python-$VERSION.tar.gz" -C "$DIR/src"
fi

VEC_H="$SRC/vendor/llama.cpp/ggml/src/ggml-cpu/vec.h"
if grep -q '^#define GGML_GELU_FP16$' "$VEC_H"; then
    sed -i 's|^#define GGML_GELU_FP16$|/* removed by ijt-local: exact GELU */|' "$VEC_H"
elif ! grep -q 'removed by ijt-local: exact GELU' "$VEC_H"; then
    echo "build_exact_gelu_ggml: GGML_GELU_FP16 not found in $VEC_H; this llama.cpp differs from the one this script knows" >&2
    exit 1
fi

cmake -S "$SRC/vendor/llama.cpp" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_CURL=OFF > "$DIR/cmake.log" 2>&1 || { tail -20 "$DIR/cmake.log" >&2; exit 1; }
cmake --build "$DIR/build" --target ggml-base ggml-cpu -j "$(nproc)" > "$DIR/build.log" 2>&1 \
    || { tail -20 "$DIR/build.log" >&2; exit 1; }

rm -rf "$DIR/pkg.tmp" && mkdir -p "$DIR/pkg.tmp"
cp -r "$INSTALLED" "$DIR/pkg.tmp/llama_cpp"
for lib in ggml-base ggml-cpu; do
    for target in "$DIR"/pkg.tmp/llama_cpp/lib/lib$lib.so*; do
        cp -L "$DIR/build/bin/lib$lib.so" "$target"
    done
done
rm -rf "$DIR/pkg" && mv "$DIR/pkg.tmp" "$DIR/pkg"
echo "exact-GELU llama_cpp $VERSION in $DIR/pkg; use: PYTHONPATH=$DIR/pkg python scripts/check_parity.py --only logits"
