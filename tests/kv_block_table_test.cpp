// A KV layer's block table as a device backend mirrors it: take_first_changed_block() names every entry that
// changed, so a mirror that walks only from there stays equal to the table (what DeviceBlockTable::sync uploads),
// through allocation, copy-on-write of adopted blocks, sliding-window release and truncation; and a release that
// starts at the null watermarks still frees what a walk over the whole table would.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kv/kv_block_pool.h"
#include "kv/kv_layer_blocked.h"
#include "kv/kv_layer_spec.h"

namespace lmlab {
namespace {

constexpr int64_t kB = 8;  // block tokens

KvLayerSpec small_spec(int64_t window) { return f32_kv_layer_spec({2, 1, 4}, window); }

// DeviceBlockTable::sync's walk, over host pointers.
struct Mirror {
  std::vector<const uint8_t*> entries;
  int64_t held = 0;
  bool walked = false;
  int64_t walked_entries = 0;  // entries compared by the last sync
  void sync(KvLayerBlocked& layer) {
    const auto& blocks = layer.blocks();
    const int64_t first = layer.take_first_changed_block();
    const int64_t n = std::max(static_cast<int64_t>(blocks.size()), held);
    if (static_cast<int64_t>(entries.size()) < n) entries.resize(static_cast<size_t>(n), nullptr);
    walked_entries = 0;
    for (int64_t b = walked ? first : 0; b < n; ++b, ++walked_entries)
      entries[b] = b < static_cast<int64_t>(blocks.size()) && blocks[b] ? blocks[b]->data : nullptr;
    held = static_cast<int64_t>(blocks.size());
    walked = true;
  }
  void expect_equal(const KvLayerBlocked& layer, const std::string& step) const {
    const auto& blocks = layer.blocks();
    for (int64_t b = 0; b < static_cast<int64_t>(entries.size()); ++b) {
      const uint8_t* want = b < static_cast<int64_t>(blocks.size()) && blocks[b] ? blocks[b]->data : nullptr;
      ASSERT_EQ(entries[b], want) << "entry " << b << " after " << step;
    }
  }
};

// Blocks the layer must hold after its last release at next_query_pos: every one with a position a query at or
// after it can see, and (no window) exactly the blocks of its tokens.
void expect_held(const KvLayerBlocked& layer, int64_t next_query_pos, const std::string& step) {
  const auto& blocks = layer.blocks();
  const int64_t n = layer.n_tokens(), window = layer.spec().window;
  for (int64_t b = layer.first_needed_position(next_query_pos) / kB; b * kB < n; ++b)
    ASSERT_TRUE(b < static_cast<int64_t>(blocks.size()) && blocks[b]) << "block " << b << " missing after " << step;
  int64_t live = 0;
  for (const auto& blk : blocks) live += blk != nullptr;
  if (window == 0) {
    EXPECT_EQ(live, (n + kB - 1) / kB) << step;
  } else {
    // The window, the newest append's positions and two blocks of margin (KvLayerBlocked's release rule).
    EXPECT_LE(live, (window + (n - next_query_pos)) / kB + 3) << step;
  }
}

TEST(KvBlockTable, AMirrorWalkingFromTheFirstChangeEqualsTheTable) {
  for (const int64_t window : {int64_t{0}, int64_t{20}}) {
    for (const bool adopted : {false, true}) {
      SCOPED_TRACE("window " + std::to_string(window) + (adopted ? ", adopted prefix" : ""));
      KvBlockPool pool(kB);
      KvLayerBlocked donor(pool, small_spec(window));
      donor.extend(5 * kB + 3);
      KvLayerBlocked layer(pool, small_spec(window));
      int64_t last_release = 0;
      if (adopted) {  // the prompt cache's full blocks: the next write into the last one copies it
        layer.adopt(std::vector<std::shared_ptr<KvBlock>>(donor.blocks().begin(), donor.blocks().begin() + 4),
                    4 * kB - 2);
        last_release = 4 * kB - 2;
      }
      Mirror m;
      m.sync(layer);
      m.expect_equal(layer, "adopt");
      std::mt19937 rng(static_cast<unsigned>(window + adopted));
      for (int step = 0; step < 600; ++step) {
        const int64_t n = layer.n_tokens();
        std::string what;
        if (rng() % 10 == 0 && n > 0) {
          const int64_t to = n - 1 - static_cast<int64_t>(rng() % std::min<int64_t>(n, 2 * kB));
          if (!layer.can_truncate(to)) continue;
          layer.truncate(to);
          last_release = to;
          what = "truncate to " + std::to_string(to);
        } else {
          const int64_t add = rng() % 4 == 0 ? 1 + static_cast<int64_t>(rng() % (3 * kB)) : 1;  // decode or a chunk
          last_release = n;
          layer.extend(add);
          what = "extend by " + std::to_string(add) + " at " + std::to_string(n);
        }
        m.sync(layer);
        m.expect_equal(layer, what);
        expect_held(layer, last_release, what);
        if (HasFatalFailure()) return;
        // A decode step walks the entries it touched: its block, and a window's released one and those after it
        // (the window's worth), however long the sequence.
        if (what.rfind("extend by 1 ", 0) == 0)
          EXPECT_LE(m.walked_entries, window > 0 ? window / kB + 6 : 2) << what;
      }
      EXPECT_GT(layer.n_tokens(), 10 * kB) << "the walk reached a long sequence";
    }
  }
}

}  // namespace
}  // namespace lmlab
