// The process's first device fault (util/device_fault.h), kept under a mutex: any thread may hit one.
#include "util/device_fault.h"

#include <mutex>

namespace lmlab {

namespace {
std::mutex& fault_mutex() {
  static std::mutex m;
  return m;
}
std::string& fault_text() {
  static std::string s;
  return s;
}
}  // namespace

bool record_device_fault(const std::string& what) {
  std::lock_guard lock(fault_mutex());
  if (!fault_text().empty()) return false;
  fault_text() = what.empty() ? "unnamed device fault" : what;
  return true;
}

std::string device_fault() {
  std::lock_guard lock(fault_mutex());
  return fault_text();
}

}  // namespace lmlab
