#!/usr/bin/env bash
# A real Label Studio server for alloop's tests (and for trying alloop's Label Studio commands).
#
#   bash scripts/labelstudio_server.sh install
#       Create .venv-labelstudio with label-studio 1.23 (a Django app with its own numpy/pandas
#       pins, so it never goes into alloop's .venv) and a migrated template database. Safe to rerun.
#   bash scripts/labelstudio_server.sh start DATA_DIR PORT DOCUMENT_ROOT
#       Run the server in the foreground on 127.0.0.1:PORT with its own DATA_DIR, serving local
#       files under DOCUMENT_ROOT. The user and its API token are created at startup from
#       LABEL_STUDIO_USERNAME, LABEL_STUDIO_PASSWORD and LABEL_STUDIO_USER_TOKEN (legacy token
#       auth enabled). Local ML backends are allowed: ML_BLOCK_LOCAL_IP=false lets Label Studio call
#       one on 127.0.0.1, SSRF_PROTECTION_ENABLED=false lets it add the backend's /webhook.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-labelstudio
PYTHON="${PYTHON:-python3}"
SPEC="label-studio==1.23.*"

install() {
    local stamp="$VENV/.installed"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$SPEC" ] && [ -f "$VENV/template/label_studio.sqlite3" ]; then
        return 0
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "$SPEC"
    # Django migrations take minutes on 2 cores: run them once here, every server copies the result.
    rm -rf "$VENV/template"
    mkdir -p "$VENV/template"
    LABEL_STUDIO_BASE_DATA_DIR="$(pwd)/$VENV/template" DJANGO_SETTINGS_MODULE=core.settings.label_studio \
        LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false \
        "$VENV/bin/python" "$("$VENV/bin/python" -c 'import label_studio, os; print(os.path.dirname(label_studio.__file__))')/manage.py" \
        migrate --no-color -v 0
    echo "$SPEC" > "$stamp"
}

start() {
    local data_dir="$1" port="$2" document_root="$3"
    : "${LABEL_STUDIO_USERNAME:?set LABEL_STUDIO_USERNAME (an email)}"
    : "${LABEL_STUDIO_PASSWORD:?set LABEL_STUDIO_PASSWORD}"
    : "${LABEL_STUDIO_USER_TOKEN:?set LABEL_STUDIO_USER_TOKEN (at least 6 characters)}"
    mkdir -p "$data_dir"
    if [ ! -f "$data_dir/label_studio.sqlite3" ] && [ -f "$VENV/template/label_studio.sqlite3" ]; then
        cp "$VENV/template/label_studio.sqlite3" "$data_dir/"
    fi
    cd "$data_dir"  # Label Studio autodetects a document root under the working directory
    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$document_root" \
    ML_BLOCK_LOCAL_IP=false \
    SSRF_PROTECTION_ENABLED=false \
    LATEST_VERSION_CHECK=false \
    COLLECT_ANALYTICS=false \
    exec "$OLDPWD/$VENV/bin/label-studio" start --no-browser --data-dir "$data_dir" \
        --internal-host 127.0.0.1 -p "$port" --enable-legacy-api-token --log-level WARNING
}

case "${1:-}" in
    install) install ;;
    start) shift; [ $# -eq 3 ] || { echo "usage: $0 start DATA_DIR PORT DOCUMENT_ROOT" >&2; exit 2; }; start "$@" ;;
    *) echo "usage: $0 install | start DATA_DIR PORT DOCUMENT_ROOT" >&2; exit 2 ;;
esac
