// RoPE with a precomputed cos / sin table (kernels::rope_table, RopeArgs::cos_sin, shared by a forward's layers)
// against RoPE computing its own angles: identical bits on every ISA path, odd shapes, partial rotation, scaling.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "rope_inputs.h"
#include "isa_test.h"
#include "kernels/kernels.h"

namespace lmlab {
namespace {

class RopeTable : public test::IsaTest {};

TEST_P(RopeTable, SameBitsAsPerCallAngles) {
  struct Case {
    int64_t n_tokens, n_heads, head_dim, rot_dim;
    float scaling;
  };
  const Case cases[] = {{1, 1, 8, 8, 1.0f}, {17, 2, 128, 128, 1.0f}, {5, 3, 128, 64, 1.0f}, {4, 2, 14, 6, 1.0f},
                        {70, 4, 256, 256, 1.2f}};
  uint32_t seed = 40;
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << GetParam() << ": tokens " << c.n_tokens << " rot_dim " << c.rot_dim);
    const auto x = test::random_vector(static_cast<size_t>(c.n_tokens * c.n_heads * c.head_dim), seed++);
    const test::RopeInputs in = test::rope_inputs(c.n_tokens, c.rot_dim);
    auto got = x, want = x;
    kernels::RopeArgs a{want.data(), c.n_tokens, c.n_heads, c.head_dim, c.rot_dim, in.positions.data(), in.inv_freq.data(), c.scaling};
    kernels::rope(a);
    std::vector<float> table(static_cast<size_t>(c.n_tokens * (c.rot_dim / 2) * 2));
    kernels::rope_table(a, table.data());
    a.x = got.data();
    a.cos_sin = table.data();
    kernels::rope(a);
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, RopeTable, ::testing::Values("scalar", "avx2", "avx512"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace lmlab
