// ScriptedModel: a tiny qwen3 model whose weights are set so that, greedily, it answers any prompt ending in a
// given token with a given text and then stops. Every attention and MLP output projection is zero, so each
// position's hidden state is its token's embedding; the embeddings of the script's tokens are one-hot and the
// untied lm_head maps token k's slot to token k+1. It needs the script's tokens (with the prompt's last token)
// to be distinct, at most `hidden` of them: pieces that repeat in coder-dense's small vocabulary can be given as
// extra added tokens (non-special, as Qwen's <tool_call> is), appended to a copy of its tokenizer. For
// end-to-end tests that need a model to say something exact (a tool call) through the real server.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "fixtures.h"
#include "lmlab/safetensors.h"
#include "lmlab/safetensors_writer.h"
#include "lmlab/synth.h"

namespace lmlab::test {

class ScriptedModel {
 public:
  // The directory gets coder-dense's tokenizer plus `extra_tokens`, and `chat_template` as chat_template.jinja;
  // script() sets the weights.
  ScriptedModel(const std::string& chat_template, const std::vector<std::string>& extra_tokens) {
    namespace fs = std::filesystem;
    static std::atomic<int> counter{0};
    root_ = fs::temp_directory_path() / ("lmlab_scripted_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    dir_ = root_ / "model";
    const fs::path tok_dir = root_ / "tokenizer";
    fs::create_directories(tok_dir);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"})
      fs::copy_file(model_dir("coder-dense") / f, tok_dir / f);
    nlohmann::json tok = nlohmann::json::parse(std::ifstream(tok_dir / "tokenizer.json"));
    int64_t next_id = 0;
    for (const auto& [piece, id] : tok["model"]["vocab"].items()) next_id = std::max(next_id, id.get<int64_t>() + 1);
    for (const auto& a : tok["added_tokens"]) next_id = std::max(next_id, a["id"].get<int64_t>() + 1);
    for (const std::string& piece : extra_tokens)
      tok["added_tokens"].push_back({{"id", next_id++}, {"content", piece}, {"single_word", false}, {"lstrip", false},
                                     {"rstrip", false}, {"normalized", false}, {"special", false}});
    std::ofstream(tok_dir / "tokenizer.json") << tok.dump();
    SynthOptions o;
    o.shape = synth_default_shape("qwen3");
    o.shape.hidden = 64;
    o.shape.layers = 1;
    o.shape.heads = 4;
    o.shape.kv_heads = 2;
    o.shape.head_dim = 16;
    o.shape.intermediate = 64;
    o.shape.max_positions = 1024;
    o.shape.tied_embeddings = false;
    o.tokenizer_from = tok_dir;
    synth_model(dir_, o);
    hidden_ = o.shape.hidden;
    std::FILE* f = std::fopen((dir_ / "chat_template.jinja").c_str(), "w");
    std::fputs(chat_template.c_str(), f);
    std::fclose(f);
  }
  ~ScriptedModel() { std::filesystem::remove_all(root_); }
  ScriptedModel(const ScriptedModel&) = delete;
  ScriptedModel& operator=(const ScriptedModel&) = delete;
  const std::filesystem::path& dir() const { return dir_; }

  // After `last_prompt_token`, the model says `answer` (token ids) and then `eos`.
  void script(int32_t last_prompt_token, const std::vector<int32_t>& answer, int32_t eos) {
    std::vector<int32_t> inputs = {last_prompt_token};
    inputs.insert(inputs.end(), answer.begin(), answer.end());
    std::vector<int32_t> targets = answer;
    targets.push_back(eos);
    if (static_cast<int64_t>(inputs.size()) > hidden_) throw std::runtime_error("script longer than hidden");
    const auto path = dir_ / "model.safetensors";
    std::vector<TensorDecl> decls;
    std::vector<std::vector<float>> data;
    {
      SafetensorsFile file(path);
      for (const TensorInfo& t : file.tensors()) {
        decls.push_back({t.name, DType::f32, t.shape});
        std::vector<float> v(static_cast<size_t>(t.numel()), 0.0f);
        const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 0;
        if (t.name.find("norm") != std::string::npos) {
          std::fill(v.begin(), v.end(), 1.0f);
        } else if (t.name == "model.embed_tokens.weight") {
          for (size_t k = 0; k < inputs.size(); ++k) v[inputs[k] * cols + k] = 1.0f;
        } else if (t.name == "lm_head.weight") {
          for (size_t k = 0; k < targets.size(); ++k) v[targets[k] * cols + k] = 1.0f;
        }
        data.push_back(std::move(v));
      }
    }
    const auto tmp = dir_ / "model.safetensors.tmp";
    SafetensorsWriter w(tmp, decls);
    for (const auto& v : data) w.write({reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
    w.finish();
    std::filesystem::rename(tmp, path);
  }

 private:
  std::filesystem::path root_, dir_;
  int64_t hidden_ = 0;
};

}  // namespace lmlab::test
