// The plain reference of blocked_attend (see blocked_attention.h): one query row and one position at a time,
// records through the codecs' scalar decode_row, a two-pass softmax in double. No tiles, splits or ISA paths.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kv/attention/blocked_attention.h"

namespace lmlab {

void blocked_attend_ref(const BlockedKvView& c, int64_t n_heads, const float* q, int64_t n_q, int64_t q_pos0,
                        const AttentionSpec& spec, float* out) {
  const int64_t d = c.head_dim, G = n_heads / c.n_kv_heads, B = c.block_tokens;
  std::vector<float> qrot(static_cast<size_t>(d)), qp(static_cast<size_t>(c.cold.k->row_floats()));
  std::vector<float> krow(qp.size()), vrow(static_cast<size_t>(std::max(c.cold.v->row_floats(), d)));
  std::vector<double> s, acc(static_cast<size_t>(d));
  for (int64_t t = 0; t < n_q; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t pos = q_pos0 + t, kh = h / G;
      const float* qh = q + (t * n_heads + h) * d;
      if (c.rotation)
        c.rotation->forward(qh, qrot.data());
      else
        std::copy(qh, qh + d, qrot.begin());
      c.cold.k->prepare_queries(qrot.data(), 1, qp.data());
      const int64_t lo = spec.window > 0 ? std::max<int64_t>(0, pos - spec.window + 1) : 0;
      const int64_t hi = std::min(c.n_tokens, pos + 1);
      auto record = [&](int64_t p, bool value) {
        const KvRecordTable& tab = p < c.n_compressed ? c.cold : c.hot;
        const int64_t k_rec = tab.k->record_bytes(), at = (kh * B + p % B);
        const uint8_t* blk = tab.blocks[p / B];
        return std::pair{&tab, value ? blk + c.n_kv_heads * B * k_rec + at * tab.v->record_bytes() : blk + at * k_rec};
      };
      s.assign(static_cast<size_t>(std::max<int64_t>(0, hi - lo)), 0.0);
      double mx = -INFINITY;
      for (int64_t p = lo; p < hi; ++p) {
        const auto [tab, rec] = record(p, false);
        tab->k->decode_row(rec, krow.data());
        double dot = 0.0;
        for (int64_t i = 0; i < tab->k->row_floats(); ++i) dot += static_cast<double>(qp[i]) * krow[i];
        double sc = dot * spec.scale;
        if (spec.softcap > 0.0f) sc = spec.softcap * std::tanh(sc / spec.softcap);
        s[p - lo] = sc;
        mx = std::max(mx, sc);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double l = 0.0;
      for (int64_t p = lo; p < hi; ++p) {
        const auto [tab, rec] = record(p, true);
        tab->v->decode_row(rec, vrow.data());
        const double w = std::exp(s[p - lo] - mx);
        l += w;
        for (int64_t i = 0; i < d; ++i) acc[i] += w * vrow[i];
      }
      float* o = out + (t * n_heads + h) * d;
      for (int64_t i = 0; i < d; ++i) o[i] = l > 0.0 ? static_cast<float>(acc[i] / l) : 0.0f;
      if (c.rotation && l > 0.0) c.rotation->inverse(o, o);
    }
}

}  // namespace lmlab
