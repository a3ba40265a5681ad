// The option table (lmlab/options.h): each engine option declared once. The table itself has no duplicate
// key or flag and its defaults sit in its ranges; values are checked in one place with errors naming the
// flag; and no source file outside engine/src/options/ defines a table option again (a hand-written CLI flag,
// a member-pointer table over ModelOptions, or a JSON field named after an option key).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "fixtures.h"
#include "lmlab/error.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"
#include "lmlab/options.h"

namespace lmlab {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

TEST(Options, TableHasNoDuplicateKeyOrFlag) {
  std::set<std::string_view> keys, flags;
  for (const OptionSpec& s : engine_options()) {
    EXPECT_TRUE(keys.insert(s.key).second) << "key " << s.key << " declared twice";
    EXPECT_TRUE(flags.insert(s.flag).second) << "flag " << s.flag << " declared twice";
    EXPECT_FALSE(s.doc.empty()) << s.key;
    ASSERT_EQ(s.flag.substr(0, 2), "--") << s.key;
    if (!s.negated_flag) {  // the flag is the key spelled for a shell
      std::string want = "--" + std::string(s.key);
      std::replace(want.begin(), want.end(), '_', '-');
      EXPECT_EQ(s.flag, want);
    }
  }
  for (const OptionAlias& a : engine_option_aliases()) {
    EXPECT_TRUE(flags.insert(a.flag).second) << "alias flag " << a.flag << " is also an option's flag";
    ASSERT_NE(find_engine_option(a.key), nullptr) << a.flag;
    ModelOptions o;
    EXPECT_NO_THROW(set_option(o, engine_option(a.key), parse_option_text(engine_option(a.key), a.value)));
  }
}

TEST(Options, DefaultsAreInRangeAndRoundTrip) {
  const ModelOptions defaults;
  EXPECT_NO_THROW(validate_options(defaults));
  for (const OptionSpec& s : engine_options()) {
    ModelOptions o;
    const OptionValue v = get_option(defaults, s);
    set_option(o, s, v);
    EXPECT_EQ(get_option(o, s), v) << s.key;
    EXPECT_FALSE(describe_option_default(s).empty()) << s.key;
  }
  const auto j = nlohmann::json::parse(options_to_json_text(defaults));
  EXPECT_EQ(j.size(), engine_options().size());
  EXPECT_EQ(j["kv_mode"], "f32");
  EXPECT_EQ(j["expert_cache_mb"], 0);
}

TEST(Options, OutOfRangeValuesNameTheFlag) {
  const OptionSpec& bits = engine_option("kv_k_bits");
  ModelOptions o;
  EXPECT_NE(error_of([&] { set_option(o, bits, int64_t{7}); }).find("--kv-k-bits: 7 is outside [2, 5]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { set_option(o, bits, std::string("4")); }).find("--kv-k-bits: must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_option_text(bits, "4x"); }).find("--kv-k-bits: '4x' is not an integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { kv_mode_from_name("f8"); }).find("'f8' is not one of f32, turbo, affine4, affine8, f16"),
            std::string::npos);
  o.prefill_size = -1;  // a struct filled in code is checked by the same table when a model loads
  EXPECT_NE(error_of([&] { validate_options(o); }).find("--prefill-size"), std::string::npos);
  for (KvMode m : kAllKvModes) EXPECT_EQ(kv_mode_from_name(kv_mode_name(m)), m);
}

TEST(Options, ZeroMeaningsAreTheTableOnes) {
  const OptionSpec& cache = engine_option("expert_cache_mb");
  EXPECT_EQ(describe_option_value(cache, int64_t{0}), cache.zero_means);
  EXPECT_EQ(describe_option_value(cache, int64_t{5}), "5 MiB");
  EXPECT_TRUE(engine_option("debug_token_delay_us").test_only);
  EXPECT_EQ(option_flag("debug_token_delay_us"), "--debug-token-delay-us");
}

// Option text from the command line is outside input: seeded random texts (digits, signs, huge numbers,
// letters, empty) either set a value inside the row's range or are refused with an lmlab::Error.
TEST(Options, RandomTextIsStoredInRangeOrRefused) {
  std::mt19937 rng(1234);
  const std::string alphabet = "0123456789-+ xe.truefals";
  for (const OptionSpec& s : engine_options())
    for (int i = 0; i < 3000; ++i) {
      std::string text(rng() % 24, ' ');
      for (char& c : text) c = alphabet[rng() % alphabet.size()];
      if (i % 10 == 0) text = std::to_string(static_cast<int64_t>(rng())) + std::string(rng() % 12, '9');
      ModelOptions o;
      try {
        set_option(o, s, parse_option_text(s, text));
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(s.flag), std::string::npos) << e.what();
        continue;
      }
      EXPECT_NO_THROW(validate_options(o)) << s.key << " took '" << text << "'";
    }
}

// --debug-token-delay-us (test-only): generate sleeps that long per decoded token, so a request can be caught
// in flight. A lower bound on the decode time only: sleeping never takes less.
TEST(Options, DebugTokenDelaySlowsEveryDecodedToken) {
  ModelOptions o;
  o.debug_token_delay_us = 30'000;
  auto model = Model::load(test::model_dir("llama"), o);
  auto session = model->new_session();
  SamplingParams p;
  p.max_tokens = 4;
  p.stop_at_eos = false;
  const std::vector<int32_t> prompt = {1, 2, 3};
  const GenerationResult r = generate(*session, prompt, p);
  ASSERT_EQ(r.stats.decode_tokens, 4);
  EXPECT_GE(r.stats.decode_ns, 4 * 30'000'000LL);
  o.debug_token_delay_us = 10'000'001;  // beyond the table's range: refused by name at load
  EXPECT_NE(error_of([&] { Model::load(test::model_dir("llama"), o); }).find("--debug-token-delay-us"),
            std::string::npos);
}

// The sources a table option could be defined in again: every C++ file of the engine, the CLI, the harness
// and the report, except the table's own folder.
std::vector<std::filesystem::path> scanned_sources() {
  std::vector<std::filesystem::path> out;
  const std::filesystem::path root = LMLAB_SOURCE_DIR;
  for (const char* dir : {"engine", "cli", "harness", "report"})
    for (const auto& e : std::filesystem::recursive_directory_iterator(root / dir)) {
      const auto ext = e.path().extension();
      if (ext != ".cpp" && ext != ".h" && ext != ".cu") continue;
      if (e.path().parent_path().filename() == "options" && e.path().string().find("engine/src/options") != std::string::npos)
        continue;
      if (e.path().filename() == "options.h") continue;  // the table's public header
      out.push_back(e.path());
    }
  return out;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Options, NoOptionIsDefinedOutsideTheTable) {
  std::vector<std::string> flags;
  for (const OptionSpec& s : engine_options()) flags.emplace_back(s.flag);
  for (const OptionAlias& a : engine_option_aliases()) flags.emplace_back(a.flag);
  const auto sources = scanned_sources();
  ASSERT_GT(sources.size(), 50u);
  for (const auto& path : sources) {
    const std::string text = read_all(path);
    // A hand-written flag: a CLI option, or an error naming a flag the table can name (option_flag).
    for (const std::string& f : flags)
      EXPECT_EQ(text.find("\"" + f + "\""), std::string::npos) << path << " spells " << f << " outside the table";
    // A second table over the options' members (the old scenario parser's shape).
    EXPECT_EQ(text.find("&ModelOptions::"), std::string::npos) << path << " tabulates ModelOptions members";
    // A JSON field named after an option, written by hand where options are recorded or shown (/health, the
    // harness's run record, the report). Elsewhere such a field is a resolved value (info's ctx_size: the
    // model's positions when the option is 0), not the option.
    const std::string p = path.string();
    const bool records_options = p.find("/engine/src/server/") != std::string::npos ||
                                 p.find("/harness/") != std::string::npos || p.find("/report/") != std::string::npos;
    for (const OptionSpec& s : engine_options()) {
      if (!records_options) break;
      const std::regex field("(\\{\\s*\"" + std::string(s.key) + "\"\\s*,\\s*[^\"\\s])|(\\[\\s*\"" +
                             std::string(s.key) + "\"\\s*\\]\\s*=)");
      EXPECT_FALSE(std::regex_search(text, field)) << path << " writes the field '" << s.key << "' by hand";
    }
  }
}

}  // namespace
}  // namespace lmlab
