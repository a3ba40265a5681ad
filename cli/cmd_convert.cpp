// lmlab convert --model IN --out OUT --bits 4|8 --group-size 32|64|128: a bf16 / f16 / f32 model to the MLX
// affine-quantized format (lmlab/convert.h), streamed tensor by tensor.
#include <fmt/format.h>

#include <chrono>

#include "common.h"
#include "lmlab/convert.h"
#include "progress.h"

namespace lmlab::cli {

namespace {

struct Flags {
  std::string model, out;
  ConvertOptions opt;
  int64_t shard_mb = 5000;
  std::string fit = "mse";
  bool quiet = false;
};

int run_convert(Flags fl) {
  fl.opt.shard_bytes = static_cast<uint64_t>(fl.shard_mb) << 20;
  fl.opt.fit = fl.fit == "minmax" ? QuantFit::minmax : QuantFit::mse;
  if (!fl.quiet) fl.opt.progress = stderr_progress("convert");
  const auto t0 = std::chrono::steady_clock::now();
  const ConvertResult r = convert_model(fl.model, fl.out, fl.opt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("wrote {}: {} tensors quantized to {} bits (group {}), {} copied, {:.1f} MB in {} shard(s)\n", fl.out,
             r.tensors_quantized, fl.opt.bits, fl.opt.group_size, r.tensors_copied, r.bytes_written / 1e6, r.shards);
  // Both rates over the whole call (planning, quantizing, writing, side files); input = tensor bytes read.
  fmt::print("{:.2f} s: {:.1f} MB/s of input tensors ({:.1f} MB), {:.1f} MB/s of output tensors ({:.1f} MB)\n", s,
             r.bytes_read / 1e6 / s, r.bytes_read / 1e6, r.bytes_written / 1e6 / s, r.bytes_written / 1e6);
  return 0;
}

}  // namespace

void register_convert(CLI::App& app) {
  auto fl = std::make_shared<Flags>();
  auto* sub = app.add_subcommand("convert", "quantize a model to the MLX affine format (mlx-community layout)");
  sub->add_option("--model", fl->model, "input Hugging Face model directory (bf16 / f16 / f32)")->required();
  sub->add_option("--out", fl->out, "output directory (created; must not exist or be empty)")->required();
  sub->add_option("--bits", fl->opt.bits, "bits per weight")->check(CLI::IsMember({2, 3, 4, 6, 8}));
  sub->add_option("--group-size", fl->opt.group_size, "weights per scale / bias")->check(CLI::IsMember({32, 64, 128}));
  sub->add_option("--router-bits", fl->opt.router_bits, "bits of MoE routers (0 = --bits)");
  sub->add_option("--embedding-bits", fl->opt.embedding_bits, "bits of embed_tokens / lm_head (0 = --bits)");
  sub->add_option("--fit", fl->fit, "scale/bias choice: mse (least error, default) or minmax (MLX's classic, fast)")
      ->check(CLI::IsMember({"mse", "minmax"}));
  sub->add_option("--shard-mb", fl->shard_mb, "MiB of tensor data per safetensors shard")->check(CLI::PositiveNumber);
  sub->add_flag("--quiet", fl->quiet, "no progress on stderr");
  sub->callback(guarded([fl] { return run_convert(*fl); }));
}

}  // namespace lmlab::cli
