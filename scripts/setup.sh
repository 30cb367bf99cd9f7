#!/usr/bin/env bash
# One-stop environment set-up for napari-seem. Idempotent and cheap when nothing changed.
#
#   bash scripts/setup.sh          # set up only
#   source scripts/setup.sh        # what scripts/test.sh and scripts/run_main.sh do (from a
#                                  # script: it sets -euo pipefail, so not in an interactive shell)
#
# 1. system packages: Xvfb and the X11/xcb/GL runtime libraries Qt 6 (PyQt6) needs
#    (apt-get, only when one is missing; needs root or sudo);
# 2. a virtual environment in .venv: torch==2.13.0 first (the local CPU build), then
#    `pip install -c constraints.txt -e ".[testing]"`. Skipped when .venv/.setup-stamp
#    matches pyproject.toml, constraints.txt, this script and the Python version.
#
# Environment: PYTHON (interpreter for a new venv, default python3), SEEM_SKIP_APT=1
# (don't touch system packages), SEEM_ALLOW_CUDA_TORCH=1 (don't fail on nvidia-* packages).
set -euo pipefail

SEEM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SEEM_VENV="$SEEM_ROOT/.venv"

# Debian packages: Xvfb, plus what PyQt6's xcb platform plugin, its GLX integration and
# vispy/PyOpenGL load (checked with ldd on PyQt6-Qt6 6.11: every library they link).
SEEM_APT_PACKAGES=(
    xvfb xauth xkb-data
    libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0
    libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0
    libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1
    libxkbcommon0 libxkbcommon-x11-0
    libgl1 libegl1 libopengl0 libgl1-mesa-dri
    libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3
)

_seem_log() { printf '[setup] %s\n' "$*" >&2; }

# pip, minus the machine's warnings about its absent file:// extra indexes (pure noise).
# pipefail keeps pip's exit status.
_seem_pip() {
    "$SEEM_VENV/bin/python" -m pip "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

seem_ensure_apt() {
    if [ "${SEEM_SKIP_APT:-0}" = 1 ]; then return 0; fi
    local missing=() p
    for p in "${SEEM_APT_PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    _seem_log "installing system packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
            _seem_log "not root and no sudo; run as root: apt-get install -y ${missing[*]}"
            return 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq </dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
    command -v Xvfb >/dev/null 2>&1 || { _seem_log "Xvfb still missing after apt-get"; return 1; }
}

_seem_stamp() {
    {
        "$SEEM_VENV/bin/python" -c 'import sys; print(sys.version)'
        cd "$SEEM_ROOT" && sha256sum pyproject.toml constraints.txt scripts/setup.sh
    } | sha256sum | cut -d' ' -f1
}

seem_ensure_venv() {
    local py="${PYTHON:-python3}"
    if ! "$SEEM_VENV/bin/python" -c '' >/dev/null 2>&1; then
        "$py" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' || {
            _seem_log "$py is too old: napari-seem needs Python >= 3.10 (set PYTHON=...)"
            return 1
        }
        _seem_log "creating virtual environment $SEEM_VENV"
        rm -rf "$SEEM_VENV"
        "$py" -m venv "$SEEM_VENV"
    fi
    local stamp_file="$SEEM_VENV/.setup-stamp" stamp
    stamp="$(_seem_stamp)"
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
        return 0
    fi
    rm -f "$stamp_file"
    _seem_log "installing torch (pinned CPU build) into .venv"
    # torch first and alone: with it in place, torch>=... requirements install nothing more.
    _seem_pip install -q --progress-bar off -c "$SEEM_ROOT/constraints.txt" torch
    _seem_log "installing napari-seem[testing] (editable) into .venv"
    _seem_pip install -q --progress-bar off -c "$SEEM_ROOT/constraints.txt" -e "$SEEM_ROOT[testing]"
    seem_check_venv
    echo "$stamp" >"$stamp_file"
    _seem_log "environment ready"
}

# Nothing may have pulled a CUDA torch (nvidia-* wheels) or torchvision.
seem_check_venv() {
    local bad
    bad="$("$SEEM_VENV/bin/python" - <<'PY'
import importlib.metadata as md
names = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()})
bad = [n for n in names if n.startswith("nvidia-") or n in ("torchvision", "torchaudio", "timm", "open-clip-torch", "transformers")]
print(" ".join(bad))
PY
)"
    if [ -n "$bad" ] && [ "${SEEM_ALLOW_CUDA_TORCH:-0}" != 1 ]; then
        _seem_log "forbidden packages in .venv (CUDA torch or torchvision & co): $bad"
        _seem_log "remove .venv and check constraints.txt / dependencies"
        return 1
    fi
}

seem_setup() {
    seem_ensure_apt
    seem_ensure_venv
}

seem_setup
