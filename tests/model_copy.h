// DiskModelCopy: a fixture model copied into a fresh directory on a disk-backed filesystem (not tmpfs, so
// O_DIRECT works and /proc/self/io counts real reads), synced, and removed at the end of the test.
#pragma once

#include <sys/vfs.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "fixtures.h"

namespace lmlab::test {

class DiskModelCopy {
 public:
  explicit DiskModelCopy(const std::string& name) {
    namespace fs = std::filesystem;
    fs::path base = fs::temp_directory_path();
    struct statfs sf {};
    constexpr long kTmpfsMagic = 0x01021994;
    if (::statfs(base.c_str(), &sf) == 0 && sf.f_type == kTmpfsMagic) base = fs::current_path();
    std::string tmpl = (base / "lmlab-model-copy-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed in " + base.string());
    dir_ = tmpl;
    for (const auto& e : fs::directory_iterator(model_dir(name))) fs::copy_file(e.path(), dir_ / e.path().filename());
    ::sync();  // the copies' pages are written back, so later direct reads find nothing dirty to flush
  }
  ~DiskModelCopy() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  DiskModelCopy(const DiskModelCopy&) = delete;
  DiskModelCopy& operator=(const DiskModelCopy&) = delete;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

}  // namespace lmlab::test
