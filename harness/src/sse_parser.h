// Incremental parser of a server-sent event stream (text/event-stream): bytes in, complete events' data out.
// Bounded: an event larger than max_event_bytes is an Error (a server that never ends an event cannot make the
// lab grow without limit). Only "data:" fields matter to OpenAI streams; other fields and comments are skipped.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lmlab::harness_detail {

class SseParser {
 public:
  explicit SseParser(size_t max_event_bytes = size_t{1} << 20) : max_event_bytes_(max_event_bytes) {}

  // Appends bytes; returns the data of every event they complete (multi-line data joined with '\n').
  // Throws Error(invalid_input, "SSE stream") when an event or a line passes max_event_bytes.
  std::vector<std::string> feed(std::string_view bytes);
  // True when bytes of an unfinished event are pending (a stream that ends here was cut).
  bool pending() const { return !line_.empty() || has_data_; }

 private:
  void end_line(std::vector<std::string>& out);

  size_t max_event_bytes_;
  std::string line_;  // the current line, without its end
  std::string data_;  // data of the current event so far
  bool has_data_ = false;
  bool after_cr_ = false;  // the previous byte was '\r' (a following '\n' belongs to the same line end)
};

}  // namespace lmlab::harness_detail
