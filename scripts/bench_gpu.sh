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
out="bench_gpu.md"
if [[ $# -gt 0 && "$1" != -* ]]; then
    out="$1"
    shift
fi
if [[ "$out" != *.md ]]; then
    echo "bench_gpu.sh: the table is a markdown file: give a name ending in .md (got $out)" >&2
    exit 2
fi
if ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
    && [[ " $* " != *" --device "* ]]; then
    echo "bench_gpu.sh: no CUDA GPU here; SD 1.5 at 512x512 on a CPU takes hours (give --device cpu to run anyway)" >&2
    exit 2
fi
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
    row --arch "$lcm" --steps 4 --no-stream-batch $compile "$@"
    row --arch "$lcm" --steps 4 --stream-batch $compile "$@"
    row --arch "$lcm" --steps 2 --no-stream-batch $compile "$@"
    row --arch "$lcm" --steps 2 --stream-batch $compile "$@"
    row --arch "$turbo" --steps 1 $compile "$@"
done
if [[ ! -s "$jsonl" ]]; then
    echo "bench_gpu.sh: no row ran (see the errors above)" >&2
    exit 1
fi
"$py" "$here/bench_gen.py" --markdown "$jsonl" | tee "$out"
