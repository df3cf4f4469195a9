# Shared by the CI scripts (sourced): Python tools in their own virtualenvs under
# ${TMPDIR:-/tmp}/hms-ci-venvs, made once and reused.

venvs="${TMPDIR:-/tmp}/hms-ci-venvs"

# venv NAME PACKAGE... — prints the bin directory of venv NAME, made with PACKAGEs if new.
venv() {
    local dir="$venvs/$1"; shift
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir"
        "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    fi
    echo "$dir/bin"
}
