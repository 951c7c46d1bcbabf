#!/usr/bin/env bash
# Refresh the vendored MathJax and Jupyter widget manager in book/_static/vendor from npm.
# Usage: book/_ext/update_vendor.sh 3.2.2 1.0.15   (then update the paths in _config.yml)
set -euo pipefail
mathjax=${1:?MathJax version, 3.2.x}
manager=${2:?@jupyter-widgets/html-manager version}
vendor="$(cd "$(dirname "$0")/../_static/vendor" && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "mathjax@$mathjax" "@jupyter-widgets/html-manager@$manager" >/dev/null)
mkdir -p "$tmp/mj" "$tmp/hm"
tar xzf "$tmp/mathjax-$mathjax.tgz" -C "$tmp/mj"
tar xzf "$tmp/jupyter-widgets-html-manager-$manager.tgz" -C "$tmp/hm"

out="$vendor/mathjax-$mathjax"
rm -rf "$out" && mkdir -p "$out/output/chtml/fonts"
cp "$tmp/mj/package/LICENSE" "$tmp/mj/package/es5/tex-chtml-full.js" "$out/"
cp -r "$tmp/mj/package/es5/output/chtml/fonts/woff-v2" "$out/output/chtml/fonts/"

out="$vendor/html-manager-$manager"
licence=$(ls "$vendor"/html-manager-*/LICENSE 2>/dev/null | head -1 || true)
mkdir -p "$out"
dist="$tmp/hm/package/dist"
cp "$dist/embed.js" "$dist/embed.js.LICENSE.txt" "$dist"/*.woff2 "$dist"/*.woff "$out/"
if [ -n "$licence" ] && [ "$licence" != "$out/LICENSE" ]; then cp "$licence" "$out/LICENSE"; fi
echo "vendored into $vendor; check the LICENSE files and the paths in _config.yml"
