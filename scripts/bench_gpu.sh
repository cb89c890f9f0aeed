#!/usr/bin/env bash
# The lcm generator's speed table on a GPU: LCM 4 and 2 steps and turbo 1 step (SD 1.5 and SD 2.1 sizes, random
# weights: no download), each with and without stream batch and torch.compile, fp16, TAESD, 512x512; every row
# beside a naive diffusers loop on the same model. Writes the JSON lines and a markdown table.
#
#   scripts/bench_gpu.sh [OUT.md] [extra bench_gen.py options, e.g. --size 768 --frames 60 --device cuda:1]
#
# A row that fails (out of memory, a compiler missing) is reported on stderr and left out; the others go on.
# ARCH_LCM / ARCH_TURBO (sd15 / sd-turbo) and COMPILE=no (skip the compiled rows) make a quick run elsewhere.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$( [ -x "$here/../.venv/bin/python" ] && echo "$here/../.venv/bin/python" || echo python3 )}"
out="${1:-bench_gpu.md}"
shift || true
jsonl="${out%.md}.jsonl"
: > "$jsonl"

row() {
    local line
    if line="$("$py" "$here/bench_gen.py" --size 512 --tiny-vae --frames 40 --warmup 5 "$@" 2> >(tail -3 >&2) | tail -1)" \
        && [[ "$line" == "{"* ]]; then
        echo "$line" >> "$jsonl"
        echo "ok: $*" >&2
    else
        echo "failed: $*" >&2
    fi
}

lcm="${ARCH_LCM:-sd15}"
turbo="${ARCH_TURBO:-sd-turbo}"
compiles=("" "--compile")
[[ "${COMPILE:-yes}" == "no" ]] && compiles=("")
for compile in "${compiles[@]}"; do
    row --arch "$lcm" --steps 4 $compile "$@"
    row --arch "$lcm" --steps 4 --stream-batch $compile "$@"
    row --arch "$lcm" --steps 2 $compile "$@"
    row --arch "$lcm" --steps 2 --stream-batch $compile "$@"
    row --arch "$turbo" --steps 1 $compile "$@"
done
"$py" "$here/bench_gen.py" --markdown "$jsonl" | tee "$out"
