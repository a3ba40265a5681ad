# Run at build time (not configure time) by the lmlab_build_info target: writes OUT from TEMPLATE with the
# checkout's `git describe` and the compiler and build type passed in. configure_file leaves OUT untouched
# when nothing changed, so a build without a new commit recompiles nothing. No shell is involved: git runs
# through execute_process with its arguments as a list.
execute_process(COMMAND git -C "${SRC}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE LMLAB_GIT_COMMIT ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE git_rc)
if(NOT git_rc EQUAL 0 OR LMLAB_GIT_COMMIT STREQUAL "")
  set(LMLAB_GIT_COMMIT "unknown (not built from a git checkout)")
endif()
# The values land in C++ string literals.
foreach(var LMLAB_GIT_COMMIT COMPILER BUILD_TYPE)
  string(REPLACE "\\" "\\\\" ${var} "${${var}}")
  string(REPLACE "\"" "\\\"" ${var} "${${var}}")
endforeach()
set(LMLAB_COMPILER "${COMPILER}")
set(LMLAB_BUILD_TYPE "${BUILD_TYPE}")
configure_file("${TEMPLATE}" "${OUT}" @ONLY)
