// Sparse bookkeeping and compute kernels for the skip-convolution engine (tracking/skipconv).
//
// Layout: every feature map is one NHWC image with batch 1, seen here as (H, W, C) float32, C-contiguous.
// Position lists are int32 flat indices y * W + x, sorted ascending. "Stamp" arrays are int32 per position of a
// grid; a position is marked in one call by writing that call's unique stamp, so nothing is ever cleared.

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

struct Geometry {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
};

inline float activate(float v, int64_t act) {
  if (act == 1) return v > 0.f ? v : 0.f;
  if (act == 2) return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
  return v;
}

Geometry geometry_from(const std::vector<int64_t>& g) {
  TORCH_CHECK(g.size() == 10, "geometry must be (kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo)");
  return Geometry{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9]};
}

void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.scalar_type() == at::kFloat && t.is_contiguous(), name,
              " must be a contiguous float32 (H, W, C) tensor");
}

// Rows per parallel task so that a task moves about 1 MiB: smaller jobs run inline on the calling thread. On a
// shared CPU every parallel region can stall on a descheduled worker, so small work must not fork.
int64_t grain_for(int64_t floats_per_row) { return std::max<int64_t>(64, (1 << 18) / std::max<int64_t>(1, floats_per_row)); }

at::Tensor to_tensor(const std::vector<int32_t>& v) {
  auto out = at::empty({static_cast<int64_t>(v.size())}, at::kInt);
  if (!v.empty()) std::memcpy(out.data_ptr<int32_t>(), v.data(), v.size() * sizeof(int32_t));
  return out;
}

// For one axis: the outputs whose window contains each input coordinate (at most `taps` of them), as a table
// built once per call (a few hundred entries) so the per-pixel work has no divisions.
struct AxisMap {
  int64_t taps;
  std::vector<int32_t> count, items;
  AxisMap(int64_t n_in, int64_t n_out, int64_t k, int64_t s, int64_t p, int64_t d)
      : taps(k), count(n_in, 0), items(n_in * k) {
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t t = 0; t < k; ++t) {
        const int64_t i = o * s - p + t * d;
        if (i >= 0 && i < n_in) items[i * k + count[i]++] = static_cast<int32_t>(o);
      }
  }
  const int32_t* begin(int64_t i) const { return &items[i * taps]; }
  const int32_t* end(int64_t i) const { return &items[i * taps] + count[i]; }
};

// Marks every output touched by `inputs` and returns them sorted. Dense sets are collected by one scan of the
// stamp array, sparse ones by sorting the marked list: whichever is cheaper.
std::vector<int32_t> affected_outputs(const std::vector<int32_t>& inputs, int64_t Hi, int64_t Wi, const Geometry& g,
                                      int32_t* stamp_out, int32_t stamp) {
  std::vector<int32_t> out;
  const int64_t n_out = g.Ho * g.Wo;
  if (inputs.empty()) return out;
  const AxisMap rows(Hi, g.Ho, g.kh, g.sh, g.ph, g.dh), cols(Wi, g.Wo, g.kw, g.sw, g.pw, g.dw);
  out.reserve(std::min<int64_t>(n_out, static_cast<int64_t>(inputs.size()) * g.kh * g.kw));
  for (int32_t p : inputs) {
    const int64_t y = p / Wi, x = p - (p / Wi) * Wi;
    for (const int32_t* oy = rows.begin(y); oy != rows.end(y); ++oy) {
      const int64_t base = static_cast<int64_t>(*oy) * g.Wo;
      for (const int32_t* ox = cols.begin(x); ox != cols.end(x); ++ox) {
        const int64_t o = base + *ox;
        if (stamp_out[o] != stamp) {
          stamp_out[o] = stamp;
          out.push_back(static_cast<int32_t>(o));
        }
      }
    }
  }
  if (static_cast<int64_t>(out.size()) * 8 > n_out) {
    int64_t k = 0;
    for (int64_t o = 0; o < n_out; ++o)
      if (stamp_out[o] == stamp) out[k++] = static_cast<int32_t>(o);
  } else {
    std::sort(out.begin(), out.end());
  }
  return out;
}

}  // namespace

// Residual gate + reference update + output selection for one skip layer.
//
// X, Xhat: (Hi, Wi, C). candidates: int32 positions where X may differ from Xhat (changed inputs and positions
// pending from earlier frames; pending lists come back unsorted); all_candidates: every position is a candidate. Block gate: output positions are
// grouped in block x block tiles; a tile fires when the squared residual norm over its receptive field exceeds
// eps2_block (eps2_block <= 0: every nonzero residual fires). Xhat takes X's value at every nonzero-residual input
// position inside a fired tile's receptive field; the rest stay pending. Returns (outputs to recompute, pending
// positions, number of input positions updated, refresh flag). When more than refresh_fraction of the input
// positions would be updated, nothing is written and the refresh flag is 1: the caller refreshes the whole layer.
std::vector<at::Tensor> select_update(const at::Tensor& X, at::Tensor& Xhat, const at::Tensor& candidates,
                                      bool all_candidates, at::Tensor& stamp_in, at::Tensor& stamp_out,
                                      int64_t stamp64, std::vector<int64_t> geometry, double eps2_block,
                                      int64_t block, double refresh_fraction) {
  check_map(X, "X");
  check_map(Xhat, "Xhat");
  TORCH_CHECK(X.sizes() == Xhat.sizes(), "X and Xhat must have the same shape");
  const Geometry g = geometry_from(geometry);
  const int64_t Hi = X.size(0), Wi = X.size(1), C = X.size(2), n_in = Hi * Wi;
  const int32_t stamp = static_cast<int32_t>(stamp64);
  int32_t* sin = stamp_in.data_ptr<int32_t>();
  int32_t* sout = stamp_out.data_ptr<int32_t>();
  const float* x = X.data_ptr<float>();
  float* xh = Xhat.data_ptr<float>();

  std::vector<int32_t> cand;
  if (all_candidates) {
    cand.resize(n_in);
    for (int64_t i = 0; i < n_in; ++i) cand[i] = static_cast<int32_t>(i);
  } else {
    const int32_t* c = candidates.data_ptr<int32_t>();
    const int64_t nc = candidates.numel();
    cand.reserve(nc);
    for (int64_t i = 0; i < nc; ++i) {
      const int32_t p = c[i];
      if (sin[p] != stamp) {
        sin[p] = stamp;
        cand.push_back(p);
      }
    }
  }
  const int64_t nc = static_cast<int64_t>(cand.size());
  std::vector<float> r2(nc);
  at::parallel_for(0, nc, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* a = x + static_cast<int64_t>(cand[i]) * C;
      const float* h = xh + static_cast<int64_t>(cand[i]) * C;
      // Eight independent partial sums let the compiler vectorise the reduction.
      float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      int64_t c = 0;
      for (; c + 8 <= C; c += 8)
        for (int k = 0; k < 8; ++k) {
          const float d = a[c + k] - h[c + k];
          acc[k] += d * d;
        }
      float s = 0.f;
      for (; c < C; ++c) {
        const float d = a[c] - h[c];
        s += d * d;
      }
      for (int k = 0; k < 8; ++k) s += acc[k];
      // A NaN residual must fire, never wait: (d != d) keeps it visible.
      r2[i] = (s != s) ? INFINITY : s;
    }
  });
  std::vector<int32_t> changed;
  std::vector<float> changed_r2;
  changed.reserve(nc);
  changed_r2.reserve(nc);
  for (int64_t i = 0; i < nc; ++i)
    if (r2[i] > 0.f) {
      changed.push_back(cand[i]);
      changed_r2.push_back(r2[i]);
    }

  std::vector<int32_t> update, pending;
  if (eps2_block <= 0.0) {
    update.swap(changed);
  } else {
    const int64_t nbh = (g.Ho + block - 1) / block, nbw = (g.Wo + block - 1) / block;
    std::vector<double> energy(nbh * nbw, 0.0);
    // Block range per input row / column: the blocks holding outputs whose (dilation-free) span reaches it.
    auto block_table = [&](int64_t n_in, int64_t n_out, int64_t k, int64_t st, int64_t pd, int64_t dl) {
      std::vector<int64_t> t(n_in * 2);
      const int64_t reach = (k - 1) * dl;
      for (int64_t i = 0; i < n_in; ++i) {
        const int64_t lo_num = i + pd - reach;
        const int64_t o0 = lo_num <= 0 ? 0 : (lo_num + st - 1) / st;
        const int64_t o1 = std::min<int64_t>(n_out - 1, (i + pd) / st);
        t[2 * i] = o0 / block;
        t[2 * i + 1] = o1 < o0 ? o0 / block - 1 : o1 / block;
      }
      return t;
    };
    const std::vector<int64_t> brow = block_table(Hi, g.Ho, g.kh, g.sh, g.ph, g.dh);
    const std::vector<int64_t> bcol = block_table(Wi, g.Wo, g.kw, g.sw, g.pw, g.dw);
    auto block_range = [&](int32_t p, int64_t& by0, int64_t& by1, int64_t& bx0, int64_t& bx1) {
      const int64_t y = p / Wi, xx = p - y * Wi;
      by0 = brow[2 * y];
      by1 = brow[2 * y + 1];
      bx0 = bcol[2 * xx];
      bx1 = bcol[2 * xx + 1];
    };
    for (size_t i = 0; i < changed.size(); ++i) {
      int64_t by0, by1, bx0, bx1;
      block_range(changed[i], by0, by1, bx0, bx1);
      for (int64_t by = by0; by <= by1; ++by)
        for (int64_t bx = bx0; bx <= bx1; ++bx) energy[by * nbw + bx] += changed_r2[i];
    }
    update.reserve(changed.size());
    pending.reserve(changed.size());
    for (int32_t p : changed) {
      int64_t by0, by1, bx0, bx1;
      block_range(p, by0, by1, bx0, bx1);
      bool fired = false;
      for (int64_t by = by0; by <= by1 && !fired; ++by)
        for (int64_t bx = bx0; bx <= bx1 && !fired; ++bx) fired = energy[by * nbw + bx] > eps2_block;
      (fired ? update : pending).push_back(p);
    }
  }

  const int64_t nu = static_cast<int64_t>(update.size());
  if (nu > refresh_fraction * static_cast<double>(n_in)) {
    return {at::empty({0}, at::kInt), at::empty({0}, at::kInt), at::scalar_tensor(nu, at::kLong),
            at::scalar_tensor(1, at::kLong)};
  }
  at::parallel_for(0, nu, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t off = static_cast<int64_t>(update[i]) * C;
      std::memcpy(xh + off, x + off, C * sizeof(float));
    }
  });
  std::vector<int32_t> outputs = affected_outputs(update, Hi, Wi, g, sout, stamp);
  return {to_tensor(outputs), to_tensor(pending), at::scalar_tensor(nu, at::kLong), at::scalar_tensor(0, at::kLong)};
}

// Output positions whose window (conv/pool geometry) contains any of `inputs`, sorted.
at::Tensor dilate_positions(const at::Tensor& inputs, int64_t Hi, int64_t Wi, at::Tensor& stamp_out, int64_t stamp,
                            std::vector<int64_t> geometry) {
  const Geometry g = geometry_from(geometry);
  const int32_t* p = inputs.data_ptr<int32_t>();
  std::vector<int32_t> in(p, p + inputs.numel());
  return to_tensor(affected_outputs(in, Hi, Wi, g, stamp_out.data_ptr<int32_t>(), static_cast<int32_t>(stamp)));
}

// Output positions of an integer-factor upsampling touched by `inputs`: each input row/column reaches the output
// rows [(i - radius) * factor, (i + 1 + radius) * factor), radius 0 for nearest and 1 for bilinear.
at::Tensor upsample_positions(const at::Tensor& inputs, int64_t Wi, int64_t factor, int64_t radius, int64_t Ho,
                              int64_t Wo, at::Tensor& stamp_out, int64_t stamp64) {
  const int32_t* p = inputs.data_ptr<int32_t>();
  int32_t* s = stamp_out.data_ptr<int32_t>();
  const int32_t stamp = static_cast<int32_t>(stamp64);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < inputs.numel(); ++i) {
    const int64_t y = p[i] / Wi, x = p[i] % Wi;
    const int64_t y0 = std::max<int64_t>(0, (y - radius) * factor), y1 = std::min(Ho, (y + 1 + radius) * factor);
    const int64_t x0 = std::max<int64_t>(0, (x - radius) * factor), x1 = std::min(Wo, (x + 1 + radius) * factor);
    for (int64_t oy = y0; oy < y1; ++oy)
      for (int64_t ox = x0; ox < x1; ++ox) {
        const int64_t o = oy * Wo + ox;
        if (s[o] != stamp) {
          s[o] = stamp;
          out.push_back(static_cast<int32_t>(o));
        }
      }
  }
  std::sort(out.begin(), out.end());
  return to_tensor(out);
}

// Sorted union of position lists over one grid.
at::Tensor union_positions(const std::vector<at::Tensor>& lists, at::Tensor& stamp_arr, int64_t stamp64) {
  int32_t* s = stamp_arr.data_ptr<int32_t>();
  const int32_t stamp = static_cast<int32_t>(stamp64);
  std::vector<int32_t> out;
  for (const auto& l : lists) {
    const int32_t* p = l.data_ptr<int32_t>();
    for (int64_t i = 0; i < l.numel(); ++i)
      if (s[p[i]] != stamp) {
        s[p[i]] = stamp;
        out.push_back(p[i]);
      }
  }
  std::sort(out.begin(), out.end());
  return to_tensor(out);
}

namespace {
// im2col rows [b, e) of `o` into `a` (row i at a + (i - b) * taps * C).
void gather_range(const float* x, int64_t Hi, int64_t Wi, int64_t C, const int32_t* o, int64_t b, int64_t e,
                  const Geometry& g, float pad, float* a) {
  const int64_t taps = g.kh * g.kw;
  for (int64_t i = b; i < e; ++i) {
    const int64_t oy = o[i] / g.Wo, ox = o[i] % g.Wo;
    float* row = a + (i - b) * taps * C;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t y = oy * g.sh - g.ph + ky * g.dh;
      for (int64_t kx = 0; kx < g.kw; ++kx, row += C) {
        const int64_t xx = ox * g.sw - g.pw + kx * g.dw;
        if (y < 0 || y >= Hi || xx < 0 || xx >= Wi) {
          std::fill(row, row + C, pad);
        } else {
          std::memcpy(row, x + (y * Wi + xx) * C, C * sizeof(float));
        }
      }
    }
  }
}
}  // namespace

// im2col of the windows at `outputs`: (n, kh * kw * C), taps ordered (ky, kx, c); outside the map reads pad_value.
at::Tensor gather_windows(const at::Tensor& X, const at::Tensor& outputs, std::vector<int64_t> geometry,
                          double pad_value) {
  check_map(X, "X");
  const Geometry g = geometry_from(geometry);
  const int64_t Hi = X.size(0), Wi = X.size(1), C = X.size(2), n = outputs.numel();
  const int64_t width = g.kh * g.kw * C;
  auto A = at::empty({n, width}, X.options());
  const float* x = X.data_ptr<float>();
  const int32_t* o = outputs.data_ptr<int32_t>();
  float* a = A.data_ptr<float>();
  at::parallel_for(0, n, grain_for(width), [&](int64_t b, int64_t e) {
    gather_range(x, Hi, Wi, C, o, b, e, g, static_cast<float>(pad_value), a + b * width);
  });
  return A;
}

// Z[outputs[i], :] = rows[i, :]  (Z: (H, W, C), rows: (n, C)).
void scatter_rows(at::Tensor& Z, const at::Tensor& outputs, const at::Tensor& rows) {
  check_map(Z, "Z");
  const int64_t C = Z.size(2), n = outputs.numel();
  TORCH_CHECK(rows.dim() == 2 && rows.size(0) == n && rows.size(1) == C && rows.is_contiguous() &&
                  rows.scalar_type() == at::kFloat,
              "rows must be a contiguous float32 (n, C) tensor matching Z's channels");
  float* z = Z.data_ptr<float>();
  const float* r = rows.data_ptr<float>();
  const int32_t* o = outputs.data_ptr<int32_t>();
  at::parallel_for(0, n, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(z + static_cast<int64_t>(o[i]) * C, r + i * C, C * sizeof(float));
  });
}

// One skip layer's recompute for groups == 1: Z[outputs] = act(im2col(Xhat, outputs) @ weight + bias).
// weight: (kh * kw * Cin, Cout); act: 0 none, 1 relu, 2 relu6 (others are applied by the caller on the rows).
// One parallel region at most: each task gathers a cache-sized chunk of rows, multiplies it (single-threaded
// inside the region) and scatters the result, so the gathered matrix never leaves the cache.
void conv_rows(const at::Tensor& Xhat, const at::Tensor& outputs, std::vector<int64_t> geometry,
               const at::Tensor& weight, const at::Tensor& bias, at::Tensor& Z, int64_t act) {
  check_map(Xhat, "Xhat");
  check_map(Z, "Z");
  const Geometry g = geometry_from(geometry);
  const int64_t Hi = Xhat.size(0), Wi = Xhat.size(1), C = Xhat.size(2), n = outputs.numel();
  const int64_t width = weight.size(0), cout = weight.size(1);
  TORCH_CHECK(width == g.kh * g.kw * C && Z.size(2) == cout, "weight must be (kh * kw * Cin, Cout) matching the maps");
  const float* x = Xhat.data_ptr<float>();
  const int32_t* o = outputs.data_ptr<int32_t>();
  float* z = Z.data_ptr<float>();
  const bool has_bias = bias.defined() && bias.numel() == cout;
  const int64_t chunk = std::max<int64_t>(16, (1 << 16) / width);
  at::parallel_for(0, n, chunk, [&](int64_t b, int64_t e) {
    auto A = at::empty({std::min(chunk, e - b), width}, Xhat.options());
    for (int64_t s = b; s < e; s += chunk) {
      const int64_t m = std::min(chunk, e - s);
      auto a = A.narrow(0, 0, m);
      gather_range(x, Hi, Wi, C, o, s, s + m, g, 0.f, a.data_ptr<float>());
      auto rows = has_bias ? at::addmm(bias, a, weight) : at::mm(a, weight);
      const float* r = rows.data_ptr<float>();
      for (int64_t i = 0; i < m; ++i) {
        float* dst = z + static_cast<int64_t>(o[s + i]) * cout;
        const float* src = r + i * cout;
        for (int64_t c = 0; c < cout; ++c) dst[c] = activate(src[c], act);
      }
    }
  });
}

// Positions where `X` differs from `prev` (both (H, W, C)), copying X into prev there. Sorted.
at::Tensor changed_positions(const at::Tensor& X, at::Tensor& prev) {
  check_map(X, "X");
  check_map(prev, "prev");
  const int64_t n = X.size(0) * X.size(1), C = X.size(2);
  const float* x = X.data_ptr<float>();
  float* p = prev.data_ptr<float>();
  std::vector<int32_t> out;
  out.reserve(n);
  if (C == 1) {  // grayscale frames: compare the bit patterns directly, no call per pixel
    const uint32_t* xb = reinterpret_cast<const uint32_t*>(x);
    uint32_t* pb = reinterpret_cast<uint32_t*>(p);
    for (int64_t i = 0; i < n; ++i)
      if (xb[i] != pb[i]) {
        pb[i] = xb[i];
        out.push_back(static_cast<int32_t>(i));
      }
    return to_tensor(out);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(x + i * C, p + i * C, C * sizeof(float)) != 0) {
      std::memcpy(p + i * C, x + i * C, C * sizeof(float));
      out.push_back(static_cast<int32_t>(i));
    }
  }
  return to_tensor(out);
}


// Z[p, offset : offset + C_x] = X[p, :] for p in positions (concatenation into a channel slice).
void copy_positions(const at::Tensor& X, at::Tensor& Z, const at::Tensor& positions, int64_t offset) {
  check_map(X, "X");
  check_map(Z, "Z");
  const int64_t cx = X.size(2), cz = Z.size(2), n = positions.numel();
  TORCH_CHECK(offset >= 0 && offset + cx <= cz, "channel slice out of range");
  const float* x = X.data_ptr<float>();
  float* z = Z.data_ptr<float>();
  const int32_t* p = positions.data_ptr<int32_t>();
  at::parallel_for(0, n, grain_for(cx), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      std::memcpy(z + static_cast<int64_t>(p[i]) * cz + offset, x + static_cast<int64_t>(p[i]) * cx, cx * sizeof(float));
  });
}

// Z[p] = act(A[p] op B[p]) for p in positions; op: 0 add, 1 sub, 2 mul; act as conv_rows.
void binary_positions(const at::Tensor& A, const at::Tensor& B, at::Tensor& Z, const at::Tensor& positions, int64_t op,
                      int64_t act) {
  check_map(A, "A");
  check_map(B, "B");
  check_map(Z, "Z");
  const int64_t C = Z.size(2), n = positions.numel();
  const float* a = A.data_ptr<float>();
  const float* b = B.data_ptr<float>();
  float* z = Z.data_ptr<float>();
  const int32_t* p = positions.data_ptr<int32_t>();
  at::parallel_for(0, n, grain_for(C), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      const int64_t off = static_cast<int64_t>(p[i]) * C;
      for (int64_t c = 0; c < C; ++c) {
        const float u = a[off + c], v = b[off + c];
        const float r = op == 0 ? u + v : (op == 1 ? u - v : u * v);
        z[off + c] = activate(r, act);
      }
    }
  });
}

// Upsampling by an integer factor at `positions` of Z (Ho, Wo, C) from X (Hi, Wi, C), with PyTorch's source-index
// formulas (area_pixel_compute_source_index, float arithmetic): nearest, or bilinear with or without align_corners.
void upsample_at(const at::Tensor& X, at::Tensor& Z, const at::Tensor& positions, int64_t factor, bool bilinear,
                 bool align_corners) {
  check_map(X, "X");
  check_map(Z, "Z");
  const int64_t Hi = X.size(0), Wi = X.size(1), C = X.size(2), Ho = Z.size(0), Wo = Z.size(1), n = positions.numel();
  const float* x = X.data_ptr<float>();
  float* z = Z.data_ptr<float>();
  const int32_t* p = positions.data_ptr<int32_t>();
  const float scale = 1.0f / static_cast<float>(factor);
  const float sy = Ho > 1 ? static_cast<float>(Hi - 1) / static_cast<float>(Ho - 1) : 0.f;
  const float sx = Wo > 1 ? static_cast<float>(Wi - 1) / static_cast<float>(Wo - 1) : 0.f;
  auto source = [&](int64_t dst, float align_scale) {
    if (align_corners) return align_scale * static_cast<float>(dst);
    const float s = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
    return s < 0.f ? 0.f : s;
  };
  at::parallel_for(0, n, grain_for(C), [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      const int64_t oy = p[i] / Wo, ox = p[i] % Wo;
      float* out = z + static_cast<int64_t>(p[i]) * C;
      if (!bilinear) {
        const int64_t iy = std::min<int64_t>(oy / factor, Hi - 1), ix = std::min<int64_t>(ox / factor, Wi - 1);
        std::memcpy(out, x + (iy * Wi + ix) * C, C * sizeof(float));
        continue;
      }
      const float fy = source(oy, sy), fx = source(ox, sx);
      const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(fy), Hi - 1);
      const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(fx), Wi - 1);
      const int64_t y1 = y0 + (y0 < Hi - 1 ? 1 : 0), x1 = x0 + (x0 < Wi - 1 ? 1 : 0);
      const float ly = fy - static_cast<float>(y0), lx = fx - static_cast<float>(x0);
      const float hy = 1.f - ly, hx = 1.f - lx;
      const float* a = x + (y0 * Wi + x0) * C;
      const float* b = x + (y0 * Wi + x1) * C;
      const float* c = x + (y1 * Wi + x0) * C;
      const float* d = x + (y1 * Wi + x1) * C;
      for (int64_t k = 0; k < C; ++k) out[k] = hy * (hx * a[k] + lx * b[k]) + ly * (hx * c[k] + lx * d[k]);
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("select_update", &select_update);
  m.def("dilate_positions", &dilate_positions);
  m.def("upsample_positions", &upsample_positions);
  m.def("union_positions", &union_positions);
  m.def("gather_windows", &gather_windows);
  m.def("scatter_rows", &scatter_rows);
  m.def("conv_rows", &conv_rows);
  m.def("changed_positions", &changed_positions);
  m.def("copy_positions", &copy_positions);
  m.def("binary_positions", &binary_positions);
  m.def("upsample_at", &upsample_at);
}
