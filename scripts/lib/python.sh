# python.sh: sourced by the scripts that need the Tractus-X SDK, whose
# releases all require Python >= 3.12 (Debian 12 ships 3.11).

# python_ok PY: PY is a Python >= 3.12.
python_ok() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null
}

# find_python: prints the path of a Python >= 3.12 ($EDR_PYTHON first,
# then the PATH, pyenv's versions and /usr/bin); returns 1 when none.
find_python() {
    local c
    for c in "${EDR_PYTHON:-}" python3.13 python3.12 \
        "$HOME"/.pyenv/versions/3.13*/bin/python3 \
        "$HOME"/.pyenv/versions/3.12*/bin/python3 \
        /usr/bin/python3.13 /usr/bin/python3.12 python3; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 && python_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}
