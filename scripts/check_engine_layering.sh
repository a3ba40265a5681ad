#!/usr/bin/env bash
# Checks that every engine source includes only what its library declares (engine/CMakeLists.txt):
#   - "F/..." (a folder's private header): F is the file's own folder or a library its library depends on,
#     directly or through others;
#   - "lmlab/X.h" (a public header): the library owning X.cpp is the file's own or one it depends on
#     (header-only public headers belong to nobody and may be included anywhere).
# Usage: scripts/check_engine_layering.sh BUILD_DIR/engine_libraries.txt ENGINE_DIR
# Exit 1 listing every violation; the ctest `engine_layering` runs it, so a new upward include fails CI.
set -euo pipefail
graph=${1:?usage: check_engine_layering.sh engine_libraries.txt ENGINE_DIR}
engine=${2:?usage: check_engine_layering.sh engine_libraries.txt ENGINE_DIR}

declare -A deps
while IFS=: read -r lib list; do deps[$lib]="$list"; done < "$graph"

closure() {  # the library and everything it depends on, transitively
  local todo=("$1") seen=" " lib
  while [ ${#todo[@]} -gt 0 ]; do
    lib=${todo[0]}; todo=("${todo[@]:1}")
    case "$seen" in *" $lib "*) continue ;; esac
    seen+="$lib "
    for d in ${deps[$lib]-}; do todo+=("$d"); done
  done
  echo "$seen"
}

owner_of_public() {  # the library whose folder holds X.cpp for lmlab/X.h, or nothing
  local stem=$1 f
  f=$(find "$engine/src" -name "$stem.cpp" -print -quit)
  [ -n "$f" ] && { f=${f#"$engine/src/"}; echo "${f%%/*}"; }
  return 0  # header-only: nobody's (under set -e a false test here ended the whole check)
}

status=0
for lib in "${!deps[@]}"; do
  allowed=$(closure "$lib")
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$line")
    case "$inc" in
      lmlab/*) stem=${inc#lmlab/}; target=$(owner_of_public "${stem%.h}") ;;
      */*) target=${inc%%/*} ;;
      *) continue ;;  # same-folder include
    esac
    [ -z "$target" ] && continue
    case "$allowed" in
      *" $target "*) ;;
      *) echo "$file includes \"$inc\" (library $target), but library $lib does not depend on $target"; status=1 ;;
    esac
  done < <(grep -rHE '^#include "' "$engine/src/$lib" || true)
done
[ $status -eq 0 ] && echo "engine layering: every include follows engine/CMakeLists.txt's declared dependencies"
exit $status
