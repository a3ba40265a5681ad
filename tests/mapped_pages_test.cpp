// SafetensorsFile::drop_pages / WeightStore::drop_pages (the CPU backend lets a repacked 4-bit matrix's mapped pages
// go): a tensor's pages dropped still read back as the file's bytes, and a range that is not wholly inside the
// mapping (a heap buffer, a range running past the file's end) is refused and left untouched: MADV_DONTNEED on
// anonymous memory would zero it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <numeric>
#include <vector>

#include "lmlab/safetensors.h"
#include "lmlab/safetensors_writer.h"

namespace lmlab {
namespace {

namespace fs = std::filesystem;

class MappedPages : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("lmlab-mapped-pages-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    bytes_.resize(5 * 4096 + 123);
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<uint8_t>(i * 31 + 7);
    SafetensorsWriter w(dir_ / "model.safetensors",
                        {{"small", DType::u8, {3}}, {"big", DType::u8, {static_cast<int64_t>(bytes_.size())}}});
    const uint8_t small[3] = {1, 2, 3};
    w.write(small);
    w.write(bytes_);
    w.finish();
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::vector<uint8_t> bytes_;
};

TEST_F(MappedPages, DroppedPagesReadBackAsTheFile) {
  const WeightStore store = WeightStore::open_dir(dir_);
  const TensorRef big = store.require("big");
  const uint8_t* p = big.data();
  ASSERT_EQ(std::vector<uint8_t>(p, p + bytes_.size()), bytes_);  // resident now
  EXPECT_TRUE(store.drop_pages(p, bytes_.size()));
  EXPECT_TRUE(big.file->drop_pages(p + 1, 4096 * 2));  // an unaligned range: only its whole pages
  EXPECT_EQ(std::vector<uint8_t>(p, p + bytes_.size()), bytes_);
  const TensorRef small = store.require("small");
  EXPECT_TRUE(store.drop_pages(small.data(), 3));  // no whole page inside: nothing to do, but it is the store's
  EXPECT_EQ(small.data()[2], 3);
}

TEST_F(MappedPages, RangesOutsideTheMappingAreRefusedAndUntouched) {
  const WeightStore store = WeightStore::open_dir(dir_);
  std::vector<uint8_t> heap(6 * 4096);
  std::iota(heap.begin(), heap.end(), uint8_t{1});
  const std::vector<uint8_t> before = heap;
  EXPECT_FALSE(store.drop_pages(heap.data(), heap.size()));
  EXPECT_EQ(heap, before) << "anonymous memory must never be dropped (it would read back as zeros)";
  const TensorRef big = store.require("big");
  const SafetensorsFile& file = *big.file;
  EXPECT_FALSE(file.drop_pages(big.data(), file.file_bytes()));  // starts inside, runs past the end
  EXPECT_FALSE(file.drop_pages(big.data() - 4096 * 16, 4096));   // before the mapping
  EXPECT_EQ(std::vector<uint8_t>(big.data(), big.data() + bytes_.size()), bytes_);
}

}  // namespace
}  // namespace lmlab
