#include "util/memory_stats.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace lmlab {

static uint64_t status_kb(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kb = 0;
  const size_t len = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, len) == 0) {
      std::sscanf(line + len, " %lu", &kb);
      break;
    }
  std::fclose(f);
  return kb * 1024;
}

uint64_t process_rss_bytes() { return status_kb("VmRSS:"); }
uint64_t process_peak_rss_bytes() { return status_kb("VmHWM:"); }

std::optional<uint64_t> process_read_bytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  uint64_t v = 0;
  while (in >> key >> v)
    if (key == "read_bytes:") return v;
  return std::nullopt;
}

}  // namespace lmlab
