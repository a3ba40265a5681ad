// Continuous batching for the server: one engine thread owns every forward step. The generations admitted
// (at most --parallel, bounded by GenerationSlots) advance together: each step appends every decoding
// sequence's next token and, within what is left of --prefill-size tokens, the next chunks of the prompts
// still prefilling, in one Model::append_batch (the weights read once for all of them). A job submitted
// between steps joins at the next one; a finished or cancelled one leaves at once and frees its KV.
// HTTP threads never run the model: they submit a BatchJob and wait for its pieces of text.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "lmlab/generate.h"
#include "server/logprobs_json.h"

namespace lmlab::server {

// Text that became final and the logged tokens that go with it (a generation's unit of output).
struct GenerationPiece {
  std::string text;
  std::vector<LoggedToken> tokens;
};

// One generation handed to the engine thread. on_token runs on the engine thread (false: stop here); post()
// passes output from there to the request's thread, which takes it with next() until the job completed.
class BatchJob {
 public:
  BatchJob(std::span<const int32_t> prompt, const SamplingParams& params, std::function<bool(const TokenEvent&)> on_token)
      : prompt(prompt), params(params), on_token(std::move(on_token)) {}

  const std::span<const int32_t> prompt;  // owned by the request, which outlives the job
  const SamplingParams params;
  const std::function<bool(const TokenEvent&)> on_token;

  void post(GenerationPiece piece);
  void complete(GenerationResult result, std::exception_ptr error);  // the engine is done with the job
  // The next piece; waits for one. Empty once the job completed and every piece was taken.
  std::optional<GenerationPiece> next();
  // Its consumer (the client) is gone: the engine stops the job at its next token.
  void abandon() { abandoned_ = true; }
  bool abandoned() const { return abandoned_; }
  // After next() returned empty:
  GenerationResult& result() { return result_; }
  std::exception_ptr error() const { return error_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationPiece> pieces_;
  bool completed_ = false;
  std::atomic<bool> abandoned_{false};
  GenerationResult result_;
  std::exception_ptr error_;
};

class BatchScheduler {
 public:
  explicit BatchScheduler(const Model& model);
  ~BatchScheduler();  // cancels what is still running, fails what never started, joins the engine thread
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  void submit(std::shared_ptr<BatchJob> job);

 private:
  struct Running;
  void run();
  void start(const std::shared_ptr<BatchJob>& job);
  void step();

  const Model& model_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<BatchJob>> incoming_;
  bool stopping_ = false;
  std::vector<Running> running_;  // the engine thread's own
  std::thread thread_;
};

}  // namespace lmlab::server
