// Seeded mutation fuzzing of the lab's parsers of server output (SSE, Prometheus text, --url): any bytes give
// results or an lmlab::Error, never a crash, a hang or unbounded memory. Runs under ASan + UBSan.
#include <gtest/gtest.h>

#include <random>

#include "http_client.h"
#include "lmlab/error.h"
#include "prometheus_text.h"
#include "sse_parser.h"

namespace lmlab::harness_detail {
namespace {

std::string mutate(std::string s, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits; ++i) {
    const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 4) {
      case 0: s.insert(at, 1, static_cast<char>(rng() % 256)); break;
      case 1: if (at < s.size()) s.erase(at, 1 + rng() % 4); break;
      case 2: if (at < s.size()) s[at] = static_cast<char>(rng() % 256); break;
      default: if (!s.empty()) s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 16)); break;
    }
  }
  return s;
}

TEST(HttpParsersFuzz, SeededMutationsNeverCrash) {
  const std::vector<std::string> seeds = {
      "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: [DONE]\n\n",
      "lmlab_requests_total 7\nx{le=\"0.1\"} 3 17\n# HELP y z\n",
      "http://127.0.0.1:8090/v1",
  };
  std::mt19937_64 rng(20261203);
  size_t events = 0, samples = 0, urls = 0;
  for (int i = 0; i < 30000; ++i) {
    const std::string input = mutate(seeds[static_cast<size_t>(i) % seeds.size()], rng);
    try {
      SseParser p(4096);
      for (size_t at = 0; at < input.size(); at += 1 + rng() % 7) events += p.feed(input.substr(at, 1 + rng() % 7)).size();
    } catch (const Error&) {
    }
    try {
      samples += PrometheusText::parse(input).size();
    } catch (const Error&) {
    }
    try {
      urls += parse_http_url(input).port > 0;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(events + samples + urls, 0u);  // some mutants stay valid: the parsers were exercised, not just refusing
}

}  // namespace
}  // namespace lmlab::harness_detail
