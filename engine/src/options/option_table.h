// The option table's rows: each public OptionSpec beside the ModelOptions member it reads and writes.
// Internal to options/; everything else goes through lmlab/options.h.
#pragma once

#include <span>
#include <string>
#include <variant>

#include "lmlab/options.h"

namespace lmlab::options_detail {

using OptionMember = std::variant<int64_t ModelOptions::*, int ModelOptions::*, bool ModelOptions::*,
                                  std::string ModelOptions::*, KvMode ModelOptions::*, Device ModelOptions::*>;

struct OptionRow {
  OptionSpec spec;
  OptionMember member;
};

std::span<const OptionRow> option_rows();
const OptionRow& row_of(const OptionSpec& spec);  // spec must come from engine_options()

}  // namespace lmlab::options_detail
