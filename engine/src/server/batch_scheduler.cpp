// Continuous batching: the engine thread's loop and its steps (see batch_scheduler.h).
#include "server/batch_scheduler.h"

#include <algorithm>
#include <chrono>

#include "lmlab/error.h"

namespace lmlab::server {

void BatchJob::post(GenerationPiece piece) {
  {
    std::lock_guard lock(mu_);
    pieces_.push_back(std::move(piece));
  }
  cv_.notify_one();
}

void BatchJob::complete(GenerationResult result, std::exception_ptr error) {
  {
    std::lock_guard lock(mu_);
    result_ = std::move(result);
    error_ = std::move(error);
    completed_ = true;
  }
  cv_.notify_one();
}

std::optional<GenerationPiece> BatchJob::next() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return completed_ || !pieces_.empty(); });
  if (pieces_.empty()) return std::nullopt;
  GenerationPiece piece = std::move(pieces_.front());
  pieces_.pop_front();
  return piece;
}

struct BatchScheduler::Running {
  std::shared_ptr<BatchJob> job;
  std::unique_ptr<Session> session;
  std::unique_ptr<SequenceGenerator> gen;
  bool over = false;

  // The session goes (its KV back to the pool) before the request's thread learns the job is over.
  void finish(std::exception_ptr error = nullptr) {
    GenerationResult result;
    if (!error && gen) {
      try {
        result = gen->finish();
      } catch (...) {
        error = std::current_exception();
      }
    }
    gen.reset();
    session.reset();
    over = true;
    job->complete(std::move(result), error);
  }
};

BatchScheduler::BatchScheduler(const Model& model) : model_(model), thread_([this] { run(); }) {}

BatchScheduler::~BatchScheduler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void BatchScheduler::submit(std::shared_ptr<BatchJob> job) {
  {
    std::lock_guard lock(mu_);
    incoming_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void BatchScheduler::run() {
  for (;;) {
    std::deque<std::shared_ptr<BatchJob>> joining;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !incoming_.empty() || !running_.empty(); });
      joining.swap(incoming_);
      if (stopping_) break;
    }
    for (const auto& job : joining) start(job);
    step();
    std::erase_if(running_, [](const Running& r) { return r.over; });
  }
  // Only reached once the server stopped (its drain already ended or cancelled every generation).
  for (Running& r : running_) {
    r.gen->cancel();
    r.finish();
  }
  running_.clear();
  std::lock_guard lock(mu_);
  for (const auto& job : incoming_)
    job->complete({}, std::make_exception_ptr(Error(ErrorKind::cancelled, "server", "the server is stopping")));
}

void BatchScheduler::start(const std::shared_ptr<BatchJob>& job) {
  Running r{job, nullptr, nullptr};
  try {
    r.session = model_.new_session();
    r.gen = std::make_unique<SequenceGenerator>(*r.session, job->prompt, job->params);
  } catch (...) {
    r.finish(std::current_exception());
    return;
  }
  running_.push_back(std::move(r));
}

void BatchScheduler::step() {
  // Decoding sequences first (running streams keep flowing), then prompt chunks in arrival order within what
  // is left of --prefill-size; the oldest prompt always advances by at least one token.
  int64_t budget = model_.options().prefill_size;
  std::vector<BatchAppend> entries;
  std::vector<Running*> owners;
  bool decoding = false;
  for (const bool prefill_pass : {false, true}) {
    for (Running& r : running_) {
      if (r.over || r.gen->prefilling() != prefill_pass) continue;
      if (prefill_pass && budget <= 0 && !entries.empty()) break;
      std::span<const int32_t> input;
      try {
        input = r.gen->next_input(prefill_pass ? std::max<int64_t>(budget, 1) : 1);
      } catch (...) {
        r.finish(std::current_exception());
        continue;
      }
      if (input.empty()) {
        r.finish();
        continue;
      }
      decoding = decoding || !prefill_pass;
      budget -= static_cast<int64_t>(input.size());
      entries.push_back({r.session.get(), input});
      owners.push_back(&r);
    }
  }
  if (entries.empty()) return;

  std::vector<std::span<const float>> logits(entries.size());
  try {
    logits = model_.append_batch(entries);
  } catch (...) {
    // Find the sequence at fault (context overflow, KV budget): each alone; the others go on.
    if (entries.size() == 1) {
      owners[0]->finish(std::current_exception());
      return;
    }
    for (size_t i = 0; i < entries.size(); ++i) {
      try {
        logits[i] = model_.append_batch(std::span<const BatchAppend>(&entries[i], 1))[0];
      } catch (...) {
        owners[i]->finish(std::current_exception());
      }
    }
  }
  // Test-only (--debug-token-delay-us): a slow decode step, as generate() makes one.
  if (const int64_t us = model_.options().debug_token_delay_us; us > 0 && decoding)
    std::this_thread::sleep_for(std::chrono::microseconds(2 * us));
  for (size_t i = 0; i < entries.size(); ++i) {
    Running& r = *owners[i];
    if (r.over) continue;
    try {
      const std::optional<TokenEvent> ev = r.gen->accept(logits[i]);
      if (ev && !r.job->on_token(*ev)) r.gen->cancel();
    } catch (...) {
      r.finish(std::current_exception());
    }
  }
}

}  // namespace lmlab::server
