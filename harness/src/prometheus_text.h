// Parser of Prometheus text exposition (GET /metrics): "name{labels} value [timestamp]" lines; "#" lines are
// comments. Bounded: at most max_bytes of text. A line that is not a sample is an Error naming its number, so
// a page that is not Prometheus text is never read as zeros.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace lmlab::harness_detail {

class PrometheusText {
 public:
  // Throws Error(invalid_input, "/metrics line N") on a malformed line, or when text passes max_bytes.
  static PrometheusText parse(std::string_view text, size_t max_bytes = size_t{4} << 20);

  // The value of a sample by its full name (labels included, as written: `name{a="b"}`); nullopt when absent.
  std::optional<double> value(const std::string& name) const;
  size_t size() const { return samples_.size(); }

 private:
  std::map<std::string, double> samples_;
};

}  // namespace lmlab::harness_detail
