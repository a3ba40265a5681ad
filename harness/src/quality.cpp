#include "quality.h"

#include <fmt/format.h>

#include <cmath>

#include "lmlab/error.h"
#include "lmlab/safetensors.h"

namespace lmlab::harness_detail {

namespace {

// log-softmax of one logit row. [vocab] -> [vocab]
void log_softmax(std::span<const float> logits, std::vector<float>& out) {
  float m = logits[0];
  for (float l : logits) m = std::max(m, l);
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - m));
  const float log_z = m + static_cast<float>(std::log(sum));
  out.resize(logits.size());
  for (size_t v = 0; v < logits.size(); ++v) out[v] = logits[v] - log_z;
}

struct SequenceScore {
  double nll_sum = 0, kl_sum = 0;
};

// Teacher-forced pass over `ids` in prefill chunks. With `reference` empty, fills it with the log-probs of
// every predicted position ([ids.size() - 1][vocab], row-major); otherwise accumulates KL(reference || model).
SequenceScore score(const Model& model, const std::vector<int32_t>& ids, std::vector<float>& reference) {
  const int64_t vocab = model.info().vocab, chunk = std::max<int64_t>(1, model.options().prefill_size);
  const int64_t n = static_cast<int64_t>(ids.size()) - 1;  // predicted positions
  for (int32_t id : ids)
    if (id < 0 || id >= vocab)
      throw Error(ErrorKind::invalid_input, "quality.golden", fmt::format("token id {} is outside the model's vocabulary of {}", id, vocab));
  const bool fill = reference.empty();
  if (fill) reference.resize(static_cast<size_t>(n * vocab));
  auto session = model.new_session();
  SequenceScore s;
  std::vector<float> lp;
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t m = std::min(chunk, n - off);
    const std::span<const float> logits = session->append(std::span(ids).subspan(static_cast<size_t>(off), static_cast<size_t>(m)), true);
    for (int64_t t = 0; t < m; ++t) {
      log_softmax(logits.subspan(static_cast<size_t>(t * vocab), static_cast<size_t>(vocab)), lp);
      s.nll_sum -= lp[static_cast<size_t>(ids[static_cast<size_t>(off + t + 1)])];
      float* ref = reference.data() + (off + t) * vocab;
      if (fill) {
        std::copy(lp.begin(), lp.end(), ref);
        continue;
      }
      double kl = 0.0;
      for (int64_t v = 0; v < vocab; ++v) kl += std::exp(static_cast<double>(ref[v])) * (ref[v] - lp[static_cast<size_t>(v)]);
      s.kl_sum += std::max(0.0, kl);  // rounding can leave -1e-9 where the distributions agree
    }
  }
  return s;
}

// The reference: the scenario's vanilla config, or (when --configs left it out) the first config's options
// with vanilla's preset fields (f32 KV, weights in memory).
BenchConfig reference_config(const Scenario& scenario) {
  for (const BenchConfig& c : scenario.configs)
    if (c.preset == ConfigPreset::vanilla) return c;
  BenchConfig c = scenario.configs.front();
  c.name = "vanilla";
  c.preset = ConfigPreset::vanilla;
  c.options.kv_mode = KvMode::f32;
  c.options.stream_experts = false;
  return c;
}

}  // namespace

std::vector<std::vector<int32_t>> load_eval_sequences(const QualitySpec& spec) {
  const std::string file = spec.golden.string();
  SafetensorsFile golden(file);
  std::vector<std::vector<int32_t>> out;
  for (int64_t i = 0; i < spec.sequences; ++i) {
    const std::string name = fmt::format("eval_ids_{}", i);
    const TensorInfo* t = golden.find(name);
    if (!t) throw Error(ErrorKind::invalid_input, file, fmt::format("no tensor {} (quality.sequences is {})", name, spec.sequences));
    if (t->dtype != DType::i32) throw Error(ErrorKind::invalid_input, file, name + " is not I32");
    const auto* p = reinterpret_cast<const int32_t*>(golden.data(*t));
    std::vector<int32_t> ids(p, p + t->numel());
    if (spec.max_tokens > 0 && static_cast<int64_t>(ids.size()) > spec.max_tokens) ids.resize(static_cast<size_t>(spec.max_tokens));
    if (ids.size() < 2) throw Error(ErrorKind::invalid_input, file, name + " has fewer than 2 tokens");
    out.push_back(std::move(ids));
  }
  return out;
}

int64_t run_quality(const Scenario& scenario, const std::vector<std::vector<int32_t>>& sequences, ResultsStore& store,
                    int64_t run_id, const std::function<void(const std::string&)>& say) {
  const BenchConfig reference = reference_config(scenario);
  std::vector<std::vector<float>> ref_log_probs(sequences.size());
  auto evaluate = [&](const BenchConfig& config, bool is_reference) -> bool {
    try {
      const std::shared_ptr<Model> model = Model::load(*scenario.model, config.options);
      std::vector<Evaluation> rows;
      double nll = 0, kl = 0;
      int64_t tokens = 0;
      for (size_t i = 0; i < sequences.size(); ++i) {
        const SequenceScore s = score(*model, sequences[i], ref_log_probs[i]);
        Evaluation q{config.name, static_cast<int64_t>(sequences[i].size()) - 1, s.nll_sum, std::nullopt,
                     static_cast<int64_t>(i), std::nullopt, reference.name};
        if (!is_reference) q.kl_sum = s.kl_sum;
        rows.push_back(q);
        nll += s.nll_sum;
        kl += s.kl_sum;
        tokens += q.tokens;
      }
      for (const Evaluation& q : rows) store.add_evaluation(run_id, q);
      say(is_reference ? fmt::format("lmlab bench: quality {:<10} perplexity {:.4f} over {} tokens (the KL reference)", config.name,
                                     std::exp(nll / static_cast<double>(tokens)), tokens)
                       : fmt::format("lmlab bench: quality {:<10} perplexity {:.4f}, KL from {} {:.6f} nats/token", config.name,
                                     std::exp(nll / static_cast<double>(tokens)), reference.name, kl / static_cast<double>(tokens)));
      return true;
    } catch (const Error& e) {
      say(fmt::format("lmlab bench: quality of config '{}' failed: {}", config.name, e.what()));
      store.add_evaluation(run_id, Evaluation{config.name, 0, 0, std::string(e.what()), 0, std::nullopt, reference.name});
      return false;
    }
  };
  if (!evaluate(reference, true)) {  // nothing to compare against: each config's evaluation says why
    for (const BenchConfig& config : scenario.configs)
      if (config.name != reference.name)
        store.add_evaluation(run_id, Evaluation{config.name, 0, 0, fmt::format("the reference config '{}' failed", reference.name),
                                                0, std::nullopt, reference.name});
    return static_cast<int64_t>(scenario.configs.size());
  }
  int64_t failed = 0;
  for (const BenchConfig& config : scenario.configs)
    if (config.name != reference.name && !evaluate(config, false)) ++failed;
  return failed;
}

}  // namespace lmlab::harness_detail
