# Sourced by scripts/show and scripts/test: create or refresh the virtual environment, then set $venv.
#   usage: . scripts/_venv.sh EXTRAS        (EXTRAS: a comma list of pyproject extras, may be empty)
# The environment lives in .venv (VJ_VENV moves it); it is re-installed only when pyproject.toml or the extras
# change, so the second run starts at once. Extras that need torch get it first, pinned by VJ_TORCH (default
# "torch==2.13.0"; e.g. VJ_TORCH="torch --index-url https://download.pytorch.org/whl/cpu" for a CPU build), so
# that no other package drags in a different, much larger build. Every other package is pinned by constraints.txt
# (the versions the test suite passed with), so a fresh machine gets what was tested; scripts/lock refreshes it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VJ_VENV:-$root/.venv}"
extras="${1:-}"

find_python() {
    for p in ${VJ_PYTHON:-} python3.11 python3.12 python3.13 python3; do
        if command -v "$p" >/dev/null 2>&1 &&
            "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "vj needs Python 3.11 or newer (set VJ_PYTHON to its path)" >&2
    return 1
}

if [ ! -x "$venv/bin/python" ]; then
    python="$(find_python)"
    echo "setting up $venv with $("$python" --version)..." >&2
    "$python" -m venv "$venv"
fi

want="$(cat "$root/pyproject.toml" "$root/constraints.txt" "$root/scripts/_venv.sh" | sha256sum | cut -c1-16) [$extras]"
stamp="$venv/.vj-installed"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
    echo "installing vj${extras:+[$extras]} into $venv (first run, or pyproject.toml changed)..." >&2
    log="$venv/install.log"
    torch=()
    case ",$extras," in *,test,* | *,dreams,* | *,lcm,*)
        "$venv/bin/python" -c "import torch" 2>/dev/null || read -r -a torch <<<"${VJ_TORCH:-torch==2.13.0}" ;;
    esac
    if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
        { [ ${#torch[@]} -eq 0 ] || "$venv/bin/python" -m pip install --disable-pip-version-check "${torch[@]}"; } &&
        "$venv/bin/python" -m pip install --disable-pip-version-check -c "$root/constraints.txt" \
            -e "$root${extras:+[$extras]}"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "installing failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$want" >>"$stamp"
fi
