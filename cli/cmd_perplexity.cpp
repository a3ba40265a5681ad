// lmlab perplexity: NLL / perplexity over token ids (--golden's eval_ids_*, or --ids FILE) or text.
// The last line printed is "perplexity: X" (scripts parse it).
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.h"
#include "lmlab/perplexity.h"
#include "lmlab/safetensors.h"

namespace lmlab::cli {

namespace {

struct Flags {
  EngineFlags engine;
  std::string golden, ids_file, text_file;
};

std::vector<std::vector<int32_t>> load_sequences(const Flags& fl, const Model& model) {
  std::vector<std::vector<int32_t>> seqs;
  if (!fl.golden.empty()) {
    SafetensorsFile g(fl.golden);
    for (int i = 0;; ++i) {
      const TensorInfo* t = g.find(fmt::format("eval_ids_{}", i));
      if (!t) break;
      if (t->dtype != DType::i32) throw Error(ErrorKind::invalid_input, fl.golden, t->name + " is not I32");
      auto* p = reinterpret_cast<const int32_t*>(g.data(*t));
      seqs.emplace_back(p, p + t->numel());
    }
    if (seqs.empty()) throw Error(ErrorKind::invalid_input, fl.golden, "no eval_ids_0 tensor");
  } else if (!fl.ids_file.empty()) {
    // A JSON array of ids, or an array of arrays.
    std::ifstream in(fl.ids_file);
    if (!in) throw Error(ErrorKind::io, fl.ids_file, "cannot open");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
      if (j.is_array() && !j.empty() && j[0].is_array())
        for (auto& s : j) seqs.push_back(s.get<std::vector<int32_t>>());
      else
        seqs.push_back(j.get<std::vector<int32_t>>());
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorKind::invalid_input, fl.ids_file, fmt::format("expected a JSON array of token ids: {}", e.what()));
    }
  } else if (!fl.text_file.empty()) {
    std::ifstream in(fl.text_file);
    if (!in) throw Error(ErrorKind::io, fl.text_file, "cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    seqs.push_back(model.tokenizer().encode(ss.str(), true));
  } else {
    throw Error(ErrorKind::invalid_input, "perplexity", "give one of --golden, --ids or --text");
  }
  return seqs;
}

int run_perplexity(const Flags& fl) {
  auto model = Model::load(fl.engine.model, fl.engine.options());
  auto seqs = load_sequences(fl, *model);
  double total = 0.0;
  size_t count = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    NllResult r = evaluate_nll(*model, seqs[i]);
    fmt::print("sequence {}: {} tokens  mean nll {:.5f}  perplexity {:.4f}\n", i, seqs[i].size(), r.mean_nll(),
               r.perplexity());
    for (double x : r.nll) total += x;
    count += r.nll.size();
  }
  fmt::print("perplexity: {:.4f}\n", std::exp(total / static_cast<double>(count)));
  return 0;
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("perplexity", "negative log-likelihood and perplexity of token sequences");
  fl->engine.add_to(*sub);
  sub->add_option("--golden", fl->golden, "golden .safetensors with eval_ids_*");
  sub->add_option("--ids", fl->ids_file, "JSON file: array of token ids (or array of arrays)");
  sub->add_option("--text", fl->text_file, "text file to tokenize and score");
  sub->callback(guarded([fl] { return run_perplexity(*fl); }));
}

}  // namespace lmlab::cli
