// After a device fault that loses the GPU context (an illegal address, a kernel's trap), every later CUDA call fails
// with it again: the engine keeps the first (util/device_fault.h), later errors name it, and the server's /health
// and generation routes answer 503 naming it instead of a new symptom per request. The fault is process-wide and
// cannot be undone, so each test runs in a child process (a death test, "threadsafe": the child re-runs only it).
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "fixtures.h"
#include "lmlab/error.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "util/device_fault.h"
#ifdef LMLAB_HAVE_CUDA
#include "cuda/cuda_check.h"
#endif

namespace lmlab {
namespace {

// Ends the child: 0 when `ok`, else 1 after printing `why` (the parent's EXPECT_EXIT shows the child's stderr).
[[noreturn]] void finish(bool ok, const std::string& why) {
  if (!ok) std::fprintf(stderr, "%s\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(ok ? 0 : 1);
}

class DeviceFault : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(DeviceFault, TheFirstFaultIsKept) {
  EXPECT_EXIT(
      {
        const bool none = device_fault().empty();
        const bool first = record_device_fault("cuda: gemv: an illegal memory access was encountered");
        const bool second = record_device_fault("cuda: tokens: an illegal memory access was encountered");
        finish(none && first && !second && device_fault() == "cuda: gemv: an illegal memory access was encountered",
               "kept: '" + device_fault() + "'");
      },
      ::testing::ExitedWithCode(0), "");
}

#ifdef LMLAB_HAVE_CUDA
// Host code only (no GPU needed): throw_cuda's messages and what it records.
TEST_F(DeviceFault, AContextLosingCudaErrorIsRecordedAndNamedByLaterErrors) {
  EXPECT_EXIT(
      {
        auto message_of = [](cudaError_t e, const char* what, ErrorKind* kind = nullptr) {
          try {
            cuda::throw_cuda(e, what);
          } catch (const Error& err) {
            if (kind) *kind = err.kind();
            return std::string(err.what());
          }
          return std::string();
        };
        ErrorKind kind = ErrorKind::internal;
        const std::string oom = message_of(cudaErrorMemoryAllocation, "weights", &kind);
        const bool oom_ok = kind == ErrorKind::out_of_memory && device_fault().empty();
        const std::string lost = message_of(cudaErrorIllegalAddress, "gemv");
        const bool lost_ok = lost.find("the GPU context is lost") != std::string::npos &&
                             device_fault().find("cuda: gemv: ") == 0;
        const std::string later = message_of(cudaErrorIllegalAddress, "tokens");
        const bool later_ok = later.find("lost earlier (cuda: gemv: ") != std::string::npos;
        finish(oom_ok && lost_ok && later_ok,
               "oom: '" + oom + "'\nlost: '" + lost + "'\nlater: '" + later + "'\nfault: '" + device_fault() + "'");
      },
      ::testing::ExitedWithCode(0), "");
}
#endif

// The real server on loopback with coder-dense: healthy first, then, with a fault recorded, /health 503
// {"status": "error"} naming it and a completion 503 "device_lost" (no Retry-After: only a restart helps).
TEST_F(DeviceFault, TheServerAnswers503NamingTheFault) {
  EXPECT_EXIT(
      {
        auto model = Model::load(test::model_dir("coder-dense"));
        ServerOptions o;
        o.port = 0;
        Server server(model, o);
        std::thread listening([&] { server.listen(); });
        httplib::Client c("127.0.0.1", server.bound_port());
        c.set_read_timeout(30, 0);
        const auto before = c.Get("/health");
        const bool healthy = before && before->status == 200;
        record_device_fault("cuda: gemv: an illegal memory access was encountered");
        const auto health = c.Get("/health");
        const auto completion = c.Post("/v1/completions", R"({"prompt": "def", "max_tokens": 2})", "application/json");
        std::string why;
        bool ok = healthy && health && completion;
        if (ok) {
          const auto h = nlohmann::json::parse(health->body, nullptr, false);
          const auto e = nlohmann::json::parse(completion->body, nullptr, false);
          ok = health->status == 503 && h.is_object() && h.value("status", "") == "error" &&
               h.value("error", "").find("illegal memory access") != std::string::npos && completion->status == 503 &&
               e.is_object() && e["error"].value("code", "") == "device_lost" &&
               e["error"].value("message", "").find("cuda: gemv") != std::string::npos &&
               !completion->has_header("Retry-After");
          why = "health " + std::to_string(health->status) + " " + health->body + "\ncompletion " +
                std::to_string(completion->status) + " " + completion->body;
        } else {
          why = "a request failed (healthy before: " + std::to_string(healthy) + ")";
        }
        server.stop();
        listening.join();
        finish(ok, why);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace lmlab
