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
# Image, unit, stock-tool and PostgreSQL tests use Debian tools, and the review pages' browser tests Debian's
# Chromium (Playwright drives /usr/bin/chromium; it never downloads a browser); as root (CI on a fresh clone)
# install any that are missing.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    for tool in sfdisk mkfs.vfat mcopy mkfs.ext4 debugfs systemd-analyze xz openssl jq ffprobe gpg gpgv dpkg-deb apt-get haproxy chromium; do
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null; then
            echo "bodycam: installing Debian tools for SD images, media checks, fleet and browser tests (fdisk ... haproxy chromium)" >&2
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                fdisk dosfstools mtools e2fsprogs xz-utils systemd openssl jq ffmpeg gpg gpgv dpkg apt haproxy chromium; } >&2 ||
                echo "bodycam: apt-get failed; the image tests will fail" >&2
            break
        fi
    done
    # The backend's PostgreSQL tests start a throwaway cluster (tests/pgkit.py) from Debian's server binaries.
    if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
        echo "bodycam: installing Debian's postgresql for the backend's PostgreSQL tests" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql; } >&2 || echo "bodycam: apt-get failed; the PostgreSQL tests will fail" >&2
    fi
fi
export PATH="$VENV/bin:$PATH"
export GPIOZERO_PIN_FACTORY="${GPIOZERO_PIN_FACTORY:-mock}"
