// A one-line progress display on stderr for the streaming writers (convert, synth): bytes written / total
// and the write rate, redrawn in place when stderr is a terminal, a line every 10% otherwise.
#pragma once

#include <string>

#include "lmlab/convert.h"

namespace lmlab::cli {

WriteProgressFn stderr_progress(const std::string& label);

}  // namespace lmlab::cli
