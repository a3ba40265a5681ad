#!/usr/bin/env bash
# Draws the engine's library graph (declared in engine/CMakeLists.txt, written by CMake to
# BUILD/engine_libraries.txt) with the lab on top, as docs/engine_libraries.svg. Needs graphviz (Debian: graphviz).
# Usage: scripts/engine_graph.sh [BUILD_DIR]   (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
graph=${1:-build}/engine_libraries.txt
[ -f "$graph" ] || { echo "no $graph: configure first (scripts/setup.sh)" >&2; exit 2; }
{
  echo 'digraph lmlab {'
  echo '  rankdir=BT; node [shape=box, fontname="Helvetica", fontsize=11, style=rounded];'
  echo '  subgraph cluster_lab { label="the lab"; style=dashed; fontname="Helvetica";'
  echo '    cli; harness; results; report; }'
  echo '  cli -> harness; cli -> report; cli -> results; harness -> results; harness -> engine_api;'
  echo '  cli -> engine_api; report -> results;'
  echo '  engine_api [label="lmlab_engine\n(include/lmlab/*.h)", shape=ellipse];'
  echo '  subgraph cluster_engine { label="engine (one static library per folder of engine/src)"; fontname="Helvetica";'
  while IFS=: read -r lib deps; do
    echo "    $lib;"
    for d in $deps; do echo "    $lib -> $d;"; done
  done < "$graph"
  echo '  }'
  echo '  engine_api -> server; engine_api -> convert; engine_api -> generate;'
  echo '}'
} > "${1:-build}/engine_libraries.dot"
# Drop edges implied by others (a -> c when a -> b -> c) so the picture shows the layering, not every link.
tred "${1:-build}/engine_libraries.dot" | dot -Tsvg -o docs/engine_libraries.svg
echo "wrote docs/engine_libraries.svg"
