// The lab's parsers of what servers send: SSE streams, Prometheus text, and the --url flag. Exact results on
// well-formed input (from lmlab's and llama.cpp's own output shapes), clear errors on bad input.
#include <gtest/gtest.h>

#include "http_client.h"
#include "lmlab/error.h"
#include "prometheus_text.h"
#include "sse_parser.h"

namespace lmlab::harness_detail {
namespace {

TEST(SseParser, SplitsEventsAcrossAnyChunkingAndLineEnds) {
  const std::string stream = "data: {\"a\":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\n";
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    SseParser p;
    auto ev = p.feed(stream.substr(0, cut));
    const auto more = p.feed(stream.substr(cut));
    ev.insert(ev.end(), more.begin(), more.end());
    ASSERT_EQ(ev, (std::vector<std::string>{"{\"a\":1}", "x\ny", "[DONE]"})) << "cut at " << cut;
    EXPECT_FALSE(p.pending());
  }
  SseParser cut;
  cut.feed("data: half");
  EXPECT_TRUE(cut.pending());
}

TEST(SseParser, RefusesAnEventThatNeverEnds) {
  SseParser p(1024);
  EXPECT_THROW(p.feed("data: " + std::string(2000, 'x')), Error);
}

TEST(PrometheusText, ReadsLmlabAndLlamaCppExpositions) {
  const auto m = PrometheusText::parse(
      "# HELP lmlab_requests_total Generation requests received.\n# TYPE lmlab_requests_total counter\n"
      "lmlab_requests_total 7\nllamacpp:prompt_tokens_total 1.5e3\n"
      "lmlab_read_seconds_bucket{le=\"0.001\",x=\"a}b\"} 3 1700000000\nlmlab_nan NaN\n");
  EXPECT_EQ(m.value("lmlab_requests_total"), 7.0);
  EXPECT_EQ(m.value("llamacpp:prompt_tokens_total"), 1500.0);
  EXPECT_EQ(m.value("lmlab_read_seconds_bucket{le=\"0.001\",x=\"a}b\"}"), 3.0);
  EXPECT_FALSE(m.value("lmlab_absent").has_value());
  EXPECT_EQ(m.size(), 4u);
}

TEST(PrometheusText, NamesTheBadLine) {
  try {
    PrometheusText::parse("ok 1\n<html>\n");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/metrics line 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PrometheusText::parse("x{a=\"1\" 2\n"), Error);
  EXPECT_THROW(PrometheusText::parse("x 1e999\n"), Error);
  EXPECT_THROW(PrometheusText::parse(std::string(100, 'a') + " 1\n", 50), Error);
}

TEST(HttpUrl, AcceptsAServerRootAndRefusesTheRest) {
  const HttpTarget t = parse_http_url("http://127.0.0.1:8090/v1");
  EXPECT_EQ(t.host, "127.0.0.1");
  EXPECT_EQ(t.port, 8090);
  EXPECT_EQ(parse_http_url("http://localhost").port, 80);
  for (const char* bad : {"https://x", "http://", "http://x:0", "http://x:70000", "http://x:80/other", "x:80",
                          "http://a b"})
    EXPECT_THROW(parse_http_url(bad), Error) << bad;
  EXPECT_THROW(parse_http_url("http://" + std::string(3000, 'a')), Error);
}

}  // namespace
}  // namespace lmlab::harness_detail
