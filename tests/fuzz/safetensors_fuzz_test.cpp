// Fuzz-style robustness test of the safetensors parser, built with AddressSanitizer + UBSan in its own
// binary (lmlab_fuzz_asan): truncations at every length around the header and data, and thousands of
// random bit flips in the header, must give lmlab::Error (model_format) or a valid file, never a crash.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "lmlab/error.h"
#include "lmlab/safetensors.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const fs::path& p, const std::vector<uint8_t>& b, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(n));
}

// Opens the file; returns true if it parsed. Any exception other than lmlab::Error fails the test.
bool try_open(const fs::path& p, std::string* message) {
  try {
    SafetensorsFile f(p);
    for (const auto& t : f.tensors()) {  // touch every byte range the header claims
      const uint8_t* d = f.data(t);
      volatile uint8_t sink = 0;
      if (t.nbytes) sink = d[0] ^ d[t.nbytes - 1];
      (void)sink;
    }
    return true;
  } catch (const Error& e) {
    *message = e.what();
    EXPECT_TRUE(e.kind() == ErrorKind::model_format) << e.what();
    EXPECT_NE(std::string(e.what()).find(p.filename().string()), std::string::npos) << "error names the file";
    return false;
  }
}

class SafetensorsFuzz : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = fs::path(LMLAB_FIXTURES_DIR) / "models" / "llama" / "model.safetensors";
    bytes_ = read_all(src_);
    ASSERT_GT(bytes_.size(), 1000u);
    std::memcpy(&header_len_, bytes_.data(), 8);
    tmp_ = fs::temp_directory_path() / ("lmlab_fuzz_" + std::to_string(::getpid()) + ".safetensors");
  }
  void TearDown() override { fs::remove(tmp_); }
  fs::path src_, tmp_;
  std::vector<uint8_t> bytes_;
  uint64_t header_len_ = 0;
};

TEST_F(SafetensorsFuzz, TruncatedFilesFailWithANamedError) {
  std::vector<size_t> cuts = {0, 1, 7, 8, 9, 8 + header_len_ / 2, 8 + header_len_ - 1, 8 + header_len_,
                              8 + header_len_ + 1, bytes_.size() / 2, bytes_.size() - 1};
  for (size_t cut : cuts) {
    write_all(tmp_, bytes_, cut);
    std::string msg;
    EXPECT_FALSE(try_open(tmp_, &msg)) << "truncated to " << cut << " bytes but it opened";
    if (cut > 8 + header_len_) {
      EXPECT_NE(msg.find("tensor '"), std::string::npos) << "names the tensor: " << msg;
    }
  }
}

TEST_F(SafetensorsFuzz, BitFlippedHeadersNeverCrash) {
  std::mt19937_64 rng(1234);
  int rejected = 0, accepted = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::vector<uint8_t> b = bytes_;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t pos = rng() % (8 + header_len_);
      b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
    }
    write_all(tmp_, b, b.size());
    std::string msg;
    (try_open(tmp_, &msg) ? accepted : rejected)++;
  }
  EXPECT_GT(rejected, 500) << "most random flips must be caught";
  RecordProperty("accepted", accepted);
}

TEST_F(SafetensorsFuzz, HandCraftedInconsistenciesAreNamed) {
  auto make = [&](const std::string& json, size_t data_bytes) {
    std::vector<uint8_t> b(8);
    uint64_t n = json.size();
    std::memcpy(b.data(), &n, 8);
    b.insert(b.end(), json.begin(), json.end());
    b.resize(b.size() + data_bytes);
    write_all(tmp_, b, b.size());
  };
  struct Case {
    std::string json;
    size_t data;
    std::string expect;
  };
  std::vector<Case> cases = {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "overlaps"},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "needs 12"},
      {R"({"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}})", 8, "unknown dtype"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "past the data block"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "non-negative"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "reversed"},
      {R"([1,2,3])", 0, "not a JSON object"},
      {R"({"a":)", 0, "not valid JSON"},
  };
  for (const auto& c : cases) {
    make(c.json, c.data);
    std::string msg;
    EXPECT_FALSE(try_open(tmp_, &msg)) << c.json;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "message '" << msg << "' lacks '" << c.expect << "'";
  }
}

}  // namespace
}  // namespace lmlab
