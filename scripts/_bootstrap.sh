# Sourced by scripts/*: creates .venv on first use and keeps it in step with pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
    echo "bodycam: creating $VENV (first use)" >&2
    python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
    echo "bodycam: installing bodycam and its dependencies into .venv" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 2>/dev/null || true
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" >&2
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export GPIOZERO_PIN_FACTORY="${GPIOZERO_PIN_FACTORY:-mock}"
