#include "sse_parser.h"

#include <fmt/format.h>

#include "lmlab/error.h"

namespace lmlab::harness_detail {

std::vector<std::string> SseParser::feed(std::string_view bytes) {
  std::vector<std::string> out;
  for (char c : bytes) {
    if (c == '\n' && after_cr_) {  // "\r\n": the line already ended at '\r'
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      end_line(out);
      continue;
    }
    line_ += c;
    if (line_.size() + data_.size() > max_event_bytes_)
      throw Error(ErrorKind::invalid_input, "SSE stream",
                  fmt::format("an event is longer than {} bytes without ending", max_event_bytes_));
  }
  return out;
}

void SseParser::end_line(std::vector<std::string>& out) {
  if (line_.empty()) {  // a blank line dispatches the event
    if (has_data_) out.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_.rfind("data:", 0) == 0) {
    std::string_view value(line_);
    value.remove_prefix(5);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }  // comments (":...") and other fields (event, id, retry) carry nothing an OpenAI stream needs
  line_.clear();
}

}  // namespace lmlab::harness_detail
