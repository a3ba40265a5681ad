#!/usr/bin/env bash
# The official `openai` npm client against a real `lmlab serve` process (issue 14): scripts/openai_client_check.mjs
# says what it checks. For developer machines: it installs the client from the npm registry into a temporary folder
# (CI installs Debian packages only, and no Debian package carries the client). The served model is a copy of MODEL
# whose chat template is replaced by tests/tool_template.h's Qwen-style one (no fixture's template knows tools).
# Usage: scripts/openai_client_check.sh [MODEL_DIR]   (default: ../shared/fixtures/models/qwen3; LMLAB=binary)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lmlab=${LMLAB:-$root/build/cli/lmlab}
src=${1:-$root/../shared/fixtures/models/qwen3}
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

npm install --prefix "$work/npm" --silent --no-audit --no-fund openai@7 >/dev/null
cp "$root/scripts/openai_client_check.mjs" "$work/npm/"  # imports resolve next to the script
cp -r "$src" "$work/model"
python3 - "$root/tests/tool_template.h" "$work/model/tokenizer_config.json" <<'PY'
import json, re, sys
template = re.search(r'kHermesToolTemplate = R"~\((.*?)\)~"', open(sys.argv[1]).read(), re.S).group(1)
cfg = json.load(open(sys.argv[2]))
cfg["chat_template"] = template
json.dump(cfg, open(sys.argv[2], "w"))
PY

"$lmlab" serve --model "$work/model" --model-id qwen3-tools --host 127.0.0.1 --port 0 --parallel 2 \
  2> "$work/serve.log" &
server=$!
for _ in $(seq 600); do  # up to 60 s for "ready in N s, serving on http://H:P"
  url=$(grep -o 'serving on http://[0-9.:]*' "$work/serve.log" | head -1 | cut -d' ' -f3) || true
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "lmlab serve did not become ready"; cat "$work/serve.log"; exit 1; }
echo "openai $(node -p "require('$work/npm/node_modules/openai/package.json').version") against $url (lmlab serve)"
node "$work/npm/openai_client_check.mjs" "$url/v1" qwen3-tools
