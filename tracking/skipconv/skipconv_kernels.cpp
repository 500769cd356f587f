// Sparse bookkeeping and compute kernels for the skip-convolution engine (tracking/skipconv).
//
// Layout: every feature map is one NHWC image with batch 1, seen here as (H, W, C) float32, C-contiguous.
// Position lists are int32 flat indices y * W + x, sorted ascending. The gate's block "stamp" array is int32 per
// block; a block is marked in one call by writing that call's unique stamp, so nothing is ever cleared. Position
// sets are collected in byte masks (`PositionMask`, and the gate's shared masks when its threads mark together).

#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

struct Geometry {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
};

// Row and column of flat positions on a grid of width W by a multiply instead of a division (a 64-bit division
// costs tens of cycles, and the gate splits several positions per change).
struct Grid {
  int64_t W;
  double inv;
  explicit Grid(int64_t w) : W(w), inv(1.0 / static_cast<double>(w)) {}
  int64_t row(int64_t p) const {
    int64_t y = static_cast<int64_t>(static_cast<double>(p) * inv);
    if (y * W > p) --y;  // the product may round either way by one
    else if ((y + 1) * W <= p) ++y;
    return y;
  }
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

// Rows per parallel task so that a task moves about 128 KiB: smaller jobs run inline on the calling thread (on a
// shared CPU every parallel region can stall on a descheduled worker). From 1 MiB down to this, the copies, sums
// and resampling of a vtest.avi frame (a few thousand positions of 32-64 channels, their rows cold) went to both
// cores: 3.9 % of the frame (stop 24).
int64_t grain_for(int64_t floats_per_row) { return std::max<int64_t>(64, (1 << 15) / std::max<int64_t>(1, floats_per_row)); }

at::Tensor to_tensor(const std::vector<int32_t>& v) {
  auto out = at::empty({static_cast<int64_t>(v.size())}, at::kInt);
  if (!v.empty()) std::memcpy(out.data_ptr<int32_t>(), v.data(), v.size() * sizeof(int32_t));
  return out;
}

// For one axis: the outputs whose window contains each input coordinate (at most `taps` of them), as a table
// (a few hundred entries, built once per geometry: `cached`) so the per-pixel work has no divisions.
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

// An axis table (AxisMap, BlockAxis) for these arguments, built on this thread's first call with them and kept:
// they depend only on the geometry along one axis, a model at one input size has a few dozen, and building them
// on every gate call (divisions, allocations) cost 1.7 % of a still_hand frame. Entries are never dropped (a
// reference handed out stays valid); one per geometry and input size seen, a few kilobytes each.
template <class Table, class... Args>
const Table& cached(Args... args) {
  thread_local std::map<std::array<int64_t, sizeof...(Args)>, std::unique_ptr<const Table>> tables;
  const std::array<int64_t, sizeof...(Args)> key{static_cast<int64_t>(args)...};
  auto it = tables.find(key);
  if (it == tables.end()) it = tables.emplace(key, std::make_unique<const Table>(args...)).first;
  return *it->second;
}

// The marked bytes of mask[begin, end) appended to `out` as positions, ascending, and cleared. Only those bytes are
// read or written (another thread may be collecting the next range of the same mask).
void collect_marked(uint8_t* mask, int64_t begin, int64_t end, std::vector<int32_t>& out) {
  int64_t p = begin;
  auto one = [&](int64_t q) {
    if (mask[q]) {
      mask[q] = 0;
      out.push_back(static_cast<int32_t>(q));
    }
  };
  for (; p < end && (p & 7); ++p) one(p);
  for (; p + 8 <= end; p += 8) {
    uint64_t v;
    std::memcpy(&v, mask + p, 8);
    if (!v) continue;  // runs of unmarked positions pass eight at a time
    std::memset(mask + p, 0, 8);
    while (v) {
      const int b = __builtin_ctzll(v) >> 3;  // lowest marked byte (little-endian: the first position)
      out.push_back(static_cast<int32_t>(p + b));
      v &= ~(0xffULL << (b * 8));
    }
  }
  for (; p < end; ++p) one(p);
}

// Marks, in a byte mask over the output grid (width Wo), the outputs whose windows hold input (y, x). A relaxed
// atomic store is a plain byte store; it lets the gate's threads mark the same output at once.
inline void mark_outputs(const AxisMap& rows, const AxisMap& cols, int64_t y, int64_t x, uint8_t* mask, int64_t Wo) {
  for (const int32_t* oy = rows.begin(y); oy != rows.end(y); ++oy) {
    uint8_t* row = mask + static_cast<int64_t>(*oy) * Wo;
    for (const int32_t* ox = cols.begin(x); ox != cols.end(x); ++ox)
      __atomic_store_n(row + *ox, uint8_t(1), __ATOMIC_RELAXED);
  }
}

// Calls f(y, xa, xb, p) for each run of consecutive positions y * W + xa .. y * W + xb (one row at most) of the
// ascending list [first, last), p pointing at the run's first entry. A camera layer's changes and updates come in
// such runs (the deadband takes tiles whole, a fired block updates its window's pixels side by side), and a run's
// pixels share their gate blocks and output windows: one pass per block or output row instead of one per pixel.
template <class F>
inline void for_runs(const int32_t* first, const int32_t* last, const Grid& grid, int64_t W, F&& f) {
  for (const int32_t* p = first; p != last;) {
    const int64_t i0 = *p, y = grid.row(i0), xa = i0 - y * W;
    const int64_t room = W - xa;  // positions left in the row
    const int32_t* q = p + 1;
    while (q != last && q - p < room && *q == i0 + (q - p)) ++q;
    f(y, xa, xa + (q - p) - 1, p);
    p = q;
  }
}

// A byte per position of one grid, marked by a kernel and collected sorted by one scan that also clears it. One
// mask per thread serves every call (tens of kilobytes that stay in cache): an int32 stamp array per grid is four
// times larger and cold after the other layers ran, and sorting a marked list costs more than the scan (stop 22:
// 5 % of the skip pass on still_hand, 7 % on vtest.avi). One mask is in use at a time on a thread.
class PositionMask {
 public:
  explicit PositionMask(int64_t n) : n_(n) {
    thread_local std::vector<uint8_t> buffer;
    if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n, 0);
    bytes_ = buffer.data();
  }
  uint8_t* bytes() { return bytes_; }
  void mark(int64_t p) { bytes_[p] = 1; }
  // The marked positions, ascending; the mask is clear afterwards.
  std::vector<int32_t> take() {
    std::vector<int32_t> out;
    collect_marked(bytes_, 0, n_, out);
    return out;
  }

 private:
  int64_t n_;
  uint8_t* bytes_;
};

// Every output touched by `inputs`, sorted.
std::vector<int32_t> affected_outputs(const std::vector<int32_t>& inputs, int64_t Hi, int64_t Wi, const Geometry& g) {
  if (inputs.empty()) return {};
  const AxisMap& rows = cached<AxisMap>(Hi, g.Ho, g.kh, g.sh, g.ph, g.dh);
  const AxisMap& cols = cached<AxisMap>(Wi, g.Wo, g.kw, g.sw, g.pw, g.dw);
  const Grid grid(Wi);
  PositionMask mask(g.Ho * g.Wo);
  for (int32_t p : inputs) {
    const int64_t y = grid.row(p);
    mark_outputs(rows, cols, y, p - y * Wi, mask.bytes(), g.Wo);
  }
  return mask.take();
}

}  // namespace

namespace {
// Gate blocks along one axis: for each input coordinate the range [lo, hi] of blocks (of `block` outputs) holding an
// output whose dilation-free span reaches it (hi < lo: none), and for each block the input range [first, last]
// of coordinates whose range contains it. A few hundred entries, built once per geometry (`cached`).
struct BlockAxis {
  std::vector<int32_t> lo, hi, first, last;
  bool contiguous = true;  // every block's inputs form one range [first, last] (not so for 1x1 stride-2 windows)
  BlockAxis(int64_t n_in, int64_t n_out, int64_t k, int64_t s, int64_t p, int64_t d, int64_t block)
      : lo(n_in), hi(n_in) {
    const int64_t reach = (k - 1) * d, n_blocks = (n_out + block - 1) / block;
    first.assign(n_blocks, static_cast<int32_t>(n_in));
    last.assign(n_blocks, -1);
    for (int64_t i = 0; i < n_in; ++i) {
      const int64_t lo_num = i + p - reach;
      const int64_t o0 = lo_num <= 0 ? 0 : (lo_num + s - 1) / s;
      const int64_t o1 = std::min<int64_t>(n_out - 1, (i + p) / s);
      lo[i] = static_cast<int32_t>(o0 / block);
      hi[i] = static_cast<int32_t>(o1 < o0 ? o0 / block - 1 : o1 / block);
      for (int64_t b = lo[i]; b <= hi[i]; ++b) {
        first[b] = std::min<int32_t>(first[b], static_cast<int32_t>(i));
        last[b] = std::max<int32_t>(last[b], static_cast<int32_t>(i));
      }
    }
    for (int64_t b = 0; b < n_blocks; ++b)
      for (int64_t i = first[b]; i <= last[b]; ++i) contiguous = contiguous && contains(i, b);
  }
  bool contains(int64_t i, int64_t b) const { return lo[i] <= b && b <= hi[i]; }
};

// Calls f(bx, u0, u1) for each gate block column bx that the run of input columns xa..xb reaches, u0..u1 the run's
// columns inside its window (`cols` contiguous).
template <class F>
inline void for_run_blocks(const BlockAxis& cols, int64_t nbw, int64_t xa, int64_t xb, F&& f) {
  for (int64_t bx = cols.lo[xa]; bx < nbw && cols.first[bx] <= xb; ++bx) {
    const int64_t u0 = std::max<int64_t>(xa, cols.first[bx]), u1 = std::min<int64_t>(xb, cols.last[bx]);
    if (u0 <= u1) f(bx, u0, u1);
  }
}

// Changes to look ahead when prefetching. The maps are megabytes, each touched at scattered positions once a
// frame after the other layers (and the other camera's model) have run: every position's row is a cache miss
// that the loop would otherwise wait on.
constexpr int64_t kAhead = 8;

inline void prefetch_row(const float* p, int64_t C) {
  for (int64_t c = 0; c < C; c += 16) __builtin_prefetch(p + c);
}

// The X and Xhat rows of change k + kAhead of the nc in `changes`, for a loop over the changes now at k.
inline void prefetch_ahead(const float* x, const float* xh, const int32_t* changes, int64_t k, int64_t nc, int64_t C) {
  if (k + kAhead < nc) {
    prefetch_row(x + static_cast<int64_t>(changes[k + kAhead]) * C, C);
    prefetch_row(xh + static_cast<int64_t>(changes[k + kAhead]) * C, C);
  }
}

typedef float Lanes8 __attribute__((vector_size(8 * sizeof(float))));

__attribute__((always_inline)) inline float residual2(const float* a, const float* h, int64_t C) {
  if (C == 1) {  // the first layer: one grey value
    const float d = a[0] - h[0];
    return (d != d) ? INFINITY : d * d;
  }
  // Vector partial sums (GCC vector extensions, lowered to the machine's SIMD), then the tail.
  Lanes8 acc = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    Lanes8 va, vh;
    std::memcpy(&va, a + c, sizeof(Lanes8));
    std::memcpy(&vh, h + c, sizeof(Lanes8));
    const Lanes8 d = va - vh;
    acc += d * d;
  }
  float s = 0.f;
  for (; c < C; ++c) {
    const float d = a[c] - h[c];
    s += d * d;
  }
  for (int k = 0; k < 8; ++k) s += acc[k];
  // A NaN residual must fire, never wait: (s != s) keeps it visible.
  return (s != s) ? INFINITY : s;
}
// Work (values read) above which a gate call runs on a team of threads: below it the parallel region's cost, a few
// microseconds with the workers awake, is more than the second thread saves.
constexpr int64_t kTeamWork = 1 << 11;

// Threads for a gate call: torch's intra-op thread count (one per camera where NetworkKeypointProvider runs the
// cameras' networks in threads), one inside a parallel region or for small work.
int team_for(int64_t work) {
  if (work < kTeamWork || at::in_parallel_region()) return 1;
  at::internal::lazy_init_num_threads();
  return std::max(1, at::get_num_threads());
}

// A byte mask over n positions, all clear, shared by the threads of the calling thread's gate call (slot 0 its
// inputs, 1 its outputs); `collect_marked` leaves it clear again.
uint8_t* shared_mask(int slot, int64_t n) {
  thread_local std::vector<uint8_t> masks[2];
  if (static_cast<int64_t>(masks[slot].size()) < n) masks[slot].resize(n, 0);
  return masks[slot].data();
}

// The exact gate (no threshold): every input whose residual is nonzero updates now; the residuals and energies
// stay zero. The return value as select_update's.
std::tuple<at::Tensor, int64_t, int64_t, bool> exact_update(const float* x, float* xh, int64_t Hi, int64_t Wi,
                                                            int64_t C, const at::Tensor& changes, bool dense,
                                                            const Geometry& g, double refresh_fraction) {
  const int64_t n_in = Hi * Wi;
  std::vector<int32_t> update;
  if (dense) {
    for (int64_t i = 0; i < n_in; ++i)
      if (residual2(x + i * C, xh + i * C, C) > 0.f) update.push_back(static_cast<int32_t>(i));
  } else {
    const int32_t* c = changes.data_ptr<int32_t>();
    const int64_t nc = changes.numel();
    for (int64_t i = 0; i < nc; ++i) {
      prefetch_ahead(x, xh, c, i, nc, C);
      if (residual2(x + static_cast<int64_t>(c[i]) * C, xh + static_cast<int64_t>(c[i]) * C, C) > 0.f)
        update.push_back(c[i]);
    }
  }
  const int64_t nu = static_cast<int64_t>(update.size());
  if (nu > refresh_fraction * static_cast<double>(n_in)) return {at::empty({0}, at::kInt), nu, 0, true};
  at::parallel_for(0, nu, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t off = static_cast<int64_t>(update[i]) * C;
      std::memcpy(xh + off, x + off, C * sizeof(float));
    }
  });
  return {to_tensor(affected_outputs(update, Hi, Wi, g)), nu, 0, false};
}

}  // namespace

// Residual gate + reference update + output selection for one skip layer, incremental in the changes.
//
// X, Xhat: (Hi, Wi, C). State kept by the caller between frames: r2 (Hi * Wi float32), the squared residual
// |X - Xhat|^2 of every input position still pending (0 elsewhere), and energy (blocks, float64), each gate
// block's sum of r2 over its receptive field. `changes`: int32 positions whose X changed since the last call
// (all_changed: every position). Only those residuals are recomputed: a pending position whose input did not
// change keeps its residual, so a frame costs O(changes), not O(pending). A block fires when its energy exceeds
// eps2_block (eps2_block <= 0: exact mode, every nonzero residual updates at once); Xhat takes X's value at every
// pending position inside a fired block's receptive field whose residual is at least update_floor (0: all of them;
// the caller's floor keeps the positions left pending below the threshold in every block). Returns (outputs to
// recompute (sorted), number of input positions updated, number still pending, refresh flag). When more than
// refresh_fraction of the input positions would be updated, Xhat is left alone and the refresh flag is 1: the
// caller refreshes the whole layer and zeroes r2 and energy. Runs on torch's intra-op threads when the work is
// large enough (`team_for`), with the same result on any number of them (docs/skipconv.md, "Execution").
std::tuple<at::Tensor, int64_t, int64_t, bool> select_update(
    const at::Tensor& X, at::Tensor& Xhat, const at::Tensor& changes, bool all_changed, at::Tensor& r2_state,
    at::Tensor& energy_state, at::Tensor& stamp_blk, int64_t stamp64,
    std::vector<int64_t> geometry, double eps2_block, int64_t block, double refresh_fraction, int64_t pending_in,
    double update_floor) {
  check_map(X, "X");
  check_map(Xhat, "Xhat");
  TORCH_CHECK(X.sizes() == Xhat.sizes(), "X and Xhat must have the same shape");
  const Geometry g = geometry_from(geometry);
  const int64_t Hi = X.size(0), Wi = X.size(1), C = X.size(2), n_in = Hi * Wi;
  const int64_t nbh = (g.Ho + block - 1) / block, nbw = (g.Wo + block - 1) / block;
  TORCH_CHECK(r2_state.numel() == n_in && r2_state.scalar_type() == at::kFloat, "r2 must be (Hi * Wi,) float32");
  TORCH_CHECK(energy_state.numel() == nbh * nbw && energy_state.scalar_type() == at::kDouble,
              "energy must be (blocks,) float64");
  TORCH_CHECK(stamp_blk.numel() >= nbh * nbw, "block stamps too small");
  const int32_t stamp = static_cast<int32_t>(stamp64);
  int32_t* sblk = stamp_blk.data_ptr<int32_t>();
  float* r2 = r2_state.data_ptr<float>();
  double* energy = energy_state.data_ptr<double>();
  const float* x = X.data_ptr<float>();
  float* xh = Xhat.data_ptr<float>();
  const Grid grid(Wi);
  // A full pass reads every position's C channels; an incremental one pays about 16 more operations per change
  // (block energies, scattered access): pick the cheaper for this change count. A one-channel input's full pass is
  // one flat loop the compiler vectorises, about 12x cheaper per position than a change (measured on the first
  // layer of the keypoint network, 5-20 % of the pixels changed): it wins from about a sixteenth of them.
  const bool dense =
      all_changed || (C == 1 ? changes.numel() * 16 > n_in : changes.numel() * (C + 16) > n_in * (C + 2));
  if (eps2_block <= 0.0)
    return exact_update(x, xh, Hi, Wi, C, changes, dense, g, refresh_fraction);

  const BlockAxis& rows = cached<BlockAxis>(Hi, g.Ho, g.kh, g.sh, g.ph, g.dh, block);
  const BlockAxis& cols = cached<BlockAxis>(Wi, g.Wo, g.kw, g.sw, g.pw, g.dw, block);
  const AxisMap& out_rows = cached<AxisMap>(Hi, g.Ho, g.kh, g.sh, g.ph, g.dh);
  const AxisMap& out_cols = cached<AxisMap>(Wi, g.Wo, g.kw, g.sw, g.pw, g.dw);
  // One-channel input (the camera layer) on windows whose columns cover their stride without gaps: changes and
  // updates taken in runs along a row (`for_runs`). The energies then add a run's residuals per block before they
  // reach the block's sum, an order of additions that differs from one pixel at a time in the last bits only.
  const bool by_runs = C == 1 && cols.contiguous && g.dw == 1 && g.kw >= g.sw;
  const int32_t* c = dense ? nullptr : changes.data_ptr<int32_t>();
  const int64_t nc = dense ? n_in : changes.numel();
  const int nt = team_for(dense ? n_in * C : nc * (C + 16));
  thread_local std::vector<double> deltas;
  if (!dense && static_cast<int64_t>(deltas.size()) < nc) deltas.resize(nc);
  double* dk = deltas.data();
  // Block rows [split[t], split[t + 1]) belong to thread t: it alone adds to and subtracts from their energies, in
  // the changes' order and then the updates' (both ascending), so every block's sum comes out the same whatever
  // the threads. Incremental: the threads take equal shares of the changes (a hand in one half of the image), each
  // band starting at the first block row its first change's input row reaches.
  auto band_start = [&](int32_t p) { return std::min<int64_t>(nbh, rows.lo[grid.row(p)]); };
  std::vector<int64_t> split(nt + 1, nbh);
  split[0] = 0;
  for (int t = 1; t < nt; ++t) split[t] = std::max(split[t - 1], dense ? nbh * t / nt : band_start(c[nc * t / nt]));
  // The calling thread's lists, kept from call to call (their capacity: a few thousand positions each, grown anew
  // on every call before: 1.7 % of a still_hand frame); the team reaches them through these references (a
  // thread_local named inside the region would be the worker's own).
  thread_local std::vector<std::vector<int32_t>> kept[3];
  thread_local std::vector<int32_t> kept_merged;
  for (auto& parts : kept) {
    parts.resize(nt);
    for (auto& part : parts) part.clear();
  }
  kept_merged.clear();
  std::vector<std::vector<int32_t>>& touched = kept[0];
  std::vector<std::vector<int32_t>>& updates = kept[1];
  std::vector<std::vector<int32_t>>& outputs = kept[2];
  std::vector<int32_t>& merged = kept_merged;
  std::vector<int64_t> counted(nt, 0);
  uint8_t* in_mask = shared_mask(0, n_in);
  uint8_t* out_mask = shared_mask(1, g.Ho * g.Wo);
  int64_t nu = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = nt > 1 ? omp_get_thread_num() : 0;
    // Input rows [y0, y1) whose positions reach block rows [b0, b1).
    auto input_rows = [&](int64_t b0, int64_t b1) {
      int64_t y0 = Hi, y1 = 0;
      for (int64_t by = b0; by < b1; ++by) {
        y0 = std::min<int64_t>(y0, rows.first[by]);
        y1 = std::max<int64_t>(y1, rows.last[by] + 1);
      }
      return std::make_pair(y0, std::max(y0, y1));
    };
    int64_t b0 = split[t], b1 = split[t + 1], y0, y1;
    std::tie(y0, y1) = input_rows(b0, b1);
    std::vector<int32_t>& mine = touched[t];
    if (dense) {
      // Every residual (rows shared out), then every block's energy from them (block rows owned).
      const int64_t ya = Hi * t / nt, yb = Hi * (t + 1) / nt;
      int64_t count = 0;
      if (C == 1) {  // the first layer on a noisy camera: one flat loop the compiler vectorises
        for (int64_t i = ya * Wi; i < yb * Wi; ++i) {
          const float d = x[i] - xh[i];
          const float v = d * d;
          const float r = v != v ? INFINITY : v;
          r2[i] = r;
          count += r > 0.f;
        }
      } else {
        for (int64_t i = ya * Wi; i < yb * Wi; ++i) {
          r2[i] = residual2(x + i * C, xh + i * C, C);
          count += r2[i] > 0.f;
        }
      }
      counted[t] = count;
#pragma omp barrier
      std::vector<double> column_energy(Wi);
      double* ce = column_energy.data();
      for (int64_t by = b0; by < b1; ++by) {
        std::fill(column_energy.begin(), column_energy.end(), 0.0);
        for (int64_t y = rows.first[by]; y <= rows.last[by]; ++y) {
          if (!rows.contiguous && !rows.contains(y, by)) continue;
          const float* rr = r2 + y * Wi;
          for (int64_t xx = 0; xx < Wi; ++xx) ce[xx] += rr[xx];
        }
        double* e = energy + by * nbw;
        for (int64_t bx = 0; bx < nbw; ++bx) {
          double sum = 0.0;
          for (int64_t xx = cols.first[bx]; xx <= cols.last[bx]; ++xx)
            if (cols.contiguous || cols.contains(xx, bx)) sum += ce[xx];
          e[bx] = sum;
        }
      }
      // Every block was touched; the threads take alternate block rows of them, so that the fired ones (where the
      // image moves, often in one half of it) are shared out.
#pragma omp barrier
      for (int64_t by = t; by < nbh; by += nt)
        for (int64_t bx = 0; bx < nbw; ++bx) mine.push_back(static_cast<int32_t>(by * nbw + bx));
    } else {
      // The residuals of the changes (shared out: each reads two rows the other layers have evicted from the
      // cache, and the threads wait on their misses side by side), then the energies of the blocks they reach.
      const int64_t ka = nc * t / nt, kb = nc * (t + 1) / nt;
      int64_t moved = 0;
      for (int64_t k = ka; k < kb; ++k) {
        prefetch_ahead(x, xh, c, k, kb, C);
        const int64_t i = c[k];
        const float v = residual2(x + i * C, xh + i * C, C);
        dk[k] = static_cast<double>(v) - static_cast<double>(r2[i]);
        moved += (v > 0.f) - (r2[i] > 0.f);
        r2[i] = v;
      }
      counted[t] = moved;
#pragma omp barrier
      const int32_t* first = std::lower_bound(c, c + nc, static_cast<int32_t>(y0 * Wi));
      const int32_t* last = std::lower_bound(first, c + nc, static_cast<int32_t>(y1 * Wi));
      mine.reserve(4 * (last - first));
      auto touch = [&](int64_t lo, int64_t hi, int64_t bx, double d) {
        for (int64_t by = lo; by <= hi; ++by) {
          const int64_t b = by * nbw + bx;
          energy[b] += d;
          if (sblk[b] != stamp) {
            sblk[b] = stamp;
            mine.push_back(static_cast<int32_t>(b));
          }
        }
      };
      if (by_runs) {
        for_runs(first, last, grid, Wi, [&](int64_t y, int64_t xa, int64_t xb, const int32_t* p) {
          const int64_t lo = std::max<int64_t>(rows.lo[y], b0), hi = std::min<int64_t>(rows.hi[y], b1 - 1);
          if (lo > hi) return;
          const double* d = dk + (p - c) - xa;  // d[xx]: the change at column xx
          for_run_blocks(cols, nbw, xa, xb, [&](int64_t bx, int64_t u0, int64_t u1) {
            double sum = 0.0;
            bool moved_any = false;
            for (int64_t xx = u0; xx <= u1; ++xx) {
              sum += d[xx];
              moved_any = moved_any || d[xx] != 0.0;
            }
            if (moved_any) touch(lo, hi, bx, sum);
          });
        });
      } else {
        for (const int32_t* p = first; p != last; ++p) {
          const double d = dk[p - c];
          if (d == 0.0) continue;
          const int64_t i = *p, y = grid.row(i), xx = i - y * Wi;
          const int64_t lo = std::max<int64_t>(rows.lo[y], b0), hi = std::min<int64_t>(rows.hi[y], b1 - 1);
          for (int64_t bx = cols.lo[xx]; bx <= cols.hi[xx]; ++bx) touch(lo, hi, bx, d);
        }
      }
    }
    // Fired blocks mark their pending inputs (a byte each: two threads may mark the same one, with the same value).
    const Grid block_grid(nbw);
    for (int32_t b : mine) {
      if (!(energy[b] > eps2_block)) continue;
      const int64_t by = block_grid.row(b), bx = b - by * nbw;
      for (int64_t y = rows.first[by]; y <= rows.last[by]; ++y) {
        if (!rows.contains(y, by)) continue;
        for (int64_t xx = cols.first[bx]; xx <= cols.last[bx]; ++xx) {
          const float v = r2[y * Wi + xx];
          if (v > 0.f && v >= update_floor && cols.contains(xx, bx))
            __atomic_store_n(in_mask + y * Wi + xx, uint8_t(1), __ATOMIC_RELAXED);
        }
      }
    }
#pragma omp barrier
    collect_marked(in_mask, Hi * t / nt * Wi, Hi * (t + 1) / nt * Wi, updates[t]);
#pragma omp barrier
    if (t == 0) {
      for (const auto& part : updates) merged.insert(merged.end(), part.begin(), part.end());
      nu = static_cast<int64_t>(merged.size());
    }
#pragma omp barrier
    if (nu <= refresh_fraction * static_cast<double>(n_in)) {
      // Each block's energy loses the residuals it held, in the updates' order, by the thread that owns it: block
      // rows shared out anew by the updates (the fired blocks need not lie where the changes did).
      const int32_t* u = merged.data();
      if (nt > 1 && nu > 0) {
        b0 = t == 0 ? 0 : band_start(u[nu * t / nt]);
        b1 = t == nt - 1 ? nbh : band_start(u[nu * (t + 1) / nt]);
        std::tie(y0, y1) = input_rows(b0, b1);
      }
      const int32_t* first = std::lower_bound(u, u + nu, static_cast<int32_t>(y0 * Wi));
      const int32_t* last = std::lower_bound(first, u + nu, static_cast<int32_t>(y1 * Wi));
      if (by_runs) {
        for_runs(first, last, grid, Wi, [&](int64_t y, int64_t xa, int64_t xb, const int32_t*) {
          const int64_t lo = std::max<int64_t>(rows.lo[y], b0), hi = std::min<int64_t>(rows.hi[y], b1 - 1);
          if (lo > hi) return;
          const float* rr = r2 + y * Wi;
          for_run_blocks(cols, nbw, xa, xb, [&](int64_t bx, int64_t u0, int64_t u1) {
            double sum = 0.0;
            for (int64_t xx = u0; xx <= u1; ++xx) sum += static_cast<double>(rr[xx]);
            for (int64_t by = lo; by <= hi; ++by) energy[by * nbw + bx] -= sum;
          });
        });
      } else {
        for (const int32_t* p = first; p != last; ++p) {
          const int64_t q = *p, y = grid.row(q), xx = q - y * Wi;
          const double v = r2[q];
          const int64_t lo = std::max<int64_t>(rows.lo[y], b0), hi = std::min<int64_t>(rows.hi[y], b1 - 1);
          for (int64_t by = lo; by <= hi; ++by)
            for (int64_t bx = cols.lo[xx]; bx <= cols.hi[xx]; ++bx) energy[by * nbw + bx] -= v;
        }
      }
#pragma omp barrier
      // The updated inputs take X's value and mark the outputs whose windows hold them (equal shares).
      if (by_runs) {
        auto update_run = [&](int64_t y, int64_t xa, int64_t xb, const int32_t*) {
          const int64_t row = y * Wi;
          for (int64_t xx = xa; xx <= xb; ++xx) {
            r2[row + xx] = 0.f;
            xh[row + xx] = x[row + xx];
          }
          // The run's output columns: one range (windows at least as wide as their stride, no dilation).
          while (xa <= xb && out_cols.count[xa] == 0) ++xa;
          while (xb >= xa && out_cols.count[xb] == 0) --xb;
          if (xa > xb) return;
          const int64_t o0 = *out_cols.begin(xa), o1 = *(out_cols.end(xb) - 1);
          for (const int32_t* oy = out_rows.begin(y); oy != out_rows.end(y); ++oy) {
            uint8_t* mrow = out_mask + static_cast<int64_t>(*oy) * g.Wo;
            for (int64_t ox = o0; ox <= o1; ++ox) __atomic_store_n(mrow + ox, uint8_t(1), __ATOMIC_RELAXED);
          }
        };
        for_runs(u + nu * t / nt, u + nu * (t + 1) / nt, grid, Wi, update_run);
      } else {
        for (int64_t k = nu * t / nt; k < nu * (t + 1) / nt; ++k) {
          const int64_t q = u[k];
          r2[q] = 0.f;
          const int64_t off = q * C;
          if (C == 1) xh[off] = x[off];
          else std::memcpy(xh + off, x + off, C * sizeof(float));
          const int64_t y = grid.row(q);
          mark_outputs(out_rows, out_cols, y, q - y * Wi, out_mask, g.Wo);
        }
      }
#pragma omp barrier
      collect_marked(out_mask, g.Ho * t / nt * g.Wo, g.Ho * (t + 1) / nt * g.Wo, outputs[t]);
    }
  }
  if (nu > refresh_fraction * static_cast<double>(n_in)) return {at::empty({0}, at::kInt), nu, 0, true};
  int64_t pending = dense ? 0 : pending_in;
  for (int64_t v : counted) pending += v;
  int64_t n_out = 0;
  for (const auto& o : outputs) n_out += static_cast<int64_t>(o.size());
  auto result = at::empty({n_out}, at::kInt);
  int32_t* dst = result.data_ptr<int32_t>();
  for (const auto& o : outputs) {
    if (!o.empty()) std::memcpy(dst, o.data(), o.size() * sizeof(int32_t));
    dst += o.size();
  }
  return {result, nu, pending - nu, false};
}

// Output positions whose window (conv/pool geometry) contains any of `inputs`, sorted.
at::Tensor dilate_positions(const at::Tensor& inputs, int64_t Hi, int64_t Wi, std::vector<int64_t> geometry) {
  const Geometry g = geometry_from(geometry);
  const int32_t* p = inputs.data_ptr<int32_t>();
  std::vector<int32_t> in(p, p + inputs.numel());
  return to_tensor(affected_outputs(in, Hi, Wi, g));
}

// Output positions of an integer-factor upsampling touched by `inputs`: each input row/column reaches the output
// rows [(i - radius) * factor, (i + 1 + radius) * factor), radius 0 for nearest and 1 for bilinear.
at::Tensor upsample_positions(const at::Tensor& inputs, int64_t Wi, int64_t factor, int64_t radius, int64_t Ho,
                              int64_t Wo) {
  const int32_t* p = inputs.data_ptr<int32_t>();
  PositionMask mask(Ho * Wo);
  for (int64_t i = 0; i < inputs.numel(); ++i) {
    const int64_t y = p[i] / Wi, x = p[i] % Wi;
    const int64_t y0 = std::max<int64_t>(0, (y - radius) * factor), y1 = std::min(Ho, (y + 1 + radius) * factor);
    const int64_t x0 = std::max<int64_t>(0, (x - radius) * factor), x1 = std::min(Wo, (x + 1 + radius) * factor);
    if (x1 <= x0) continue;  // an input past the output's width (a caller's size mismatch): nothing to mark
    for (int64_t oy = y0; oy < y1; ++oy) std::memset(mask.bytes() + oy * Wo + x0, 1, x1 - x0);
  }
  return to_tensor(mask.take());
}

// Sorted union of position lists over one grid of `n` positions.
at::Tensor union_positions(const std::vector<at::Tensor>& lists, int64_t n) {
  PositionMask mask(n);
  for (const auto& l : lists) {
    const int32_t* p = l.data_ptr<int32_t>();
    for (int64_t i = 0; i < l.numel(); ++i) mask.mark(p[i]);
  }
  return to_tensor(mask.take());
}

namespace {
// im2col rows [b, e) of `o` into `a` (row i at a + (i - b) * taps * C).
void gather_range(const float* x, int64_t Hi, int64_t Wi, int64_t C, const int32_t* o, int64_t b, int64_t e,
                  const Geometry& g, float pad, float* a) {
  const int64_t taps = g.kh * g.kw;
  for (int64_t i = b; i < e; ++i) {
    const int64_t oy = o[i] / g.Wo, ox = o[i] % g.Wo;
    float* row = a + (i - b) * taps * C;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    if (y0 >= 0 && x0 >= 0 && y0 + (g.kh - 1) * g.dh < Hi && x0 + (g.kw - 1) * g.dw < Wi) {
      // The window lies inside the map: no tap needs a bounds check.
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const float* src = x + ((y0 + ky * g.dh) * Wi + x0) * C;
        for (int64_t kx = 0; kx < g.kw; ++kx, row += C, src += g.dw * C) {
          if (C < 16)
            for (int64_t c = 0; c < C; ++c) row[c] = src[c];
          else
            std::memcpy(row, src, C * sizeof(float));
        }
      }
      continue;
    }
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t y = oy * g.sh - g.ph + ky * g.dh;
      for (int64_t kx = 0; kx < g.kw; ++kx, row += C) {
        const int64_t xx = ox * g.sw - g.pw + kx * g.dw;
        if (y < 0 || y >= Hi || xx < 0 || xx >= Wi) {
          std::fill(row, row + C, pad);
        } else if (C < 16) {  // a few channels (the first layer): a plain loop beats a memcpy call per tap
          const float* src = x + (y * Wi + xx) * C;
          for (int64_t c = 0; c < C; ++c) row[c] = src[c];
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

namespace {
constexpr int64_t kLanes = 16;  // output channels per accumulator vector (one AVX-512 register)
constexpr int64_t kRows = 8;    // output positions per register tile: each weight load feeds kRows FMAs

// out_r = act(bias + a_r @ w) for kRows rows at once: a (kRows, width), w (width, cout_padded) with cout_padded a
// multiple of kLanes, results written to the first `cout` channels of each rows' destination.
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));  // lowered to AVX-512/AVX2/SSE

void tile_gemm(const float* a, int64_t rows, int64_t width, const float* w, int64_t cout, int64_t cout_padded,
               const float* bias, float* const* dst, int64_t act) {
  for (int64_t c0 = 0; c0 < cout_padded; c0 += kLanes) {
    Lanes b;
    std::memcpy(&b, bias + c0, sizeof(Lanes));
    Lanes acc[kRows];
    for (int64_t r = 0; r < kRows; ++r) acc[r] = b;
    for (int64_t k = 0; k < width; ++k) {
      Lanes wk;
      std::memcpy(&wk, w + k * cout_padded + c0, sizeof(Lanes));
      for (int64_t r = 0; r < kRows; ++r) acc[r] += a[r * width + k] * wk;
    }
    const int64_t n = std::min(kLanes, cout - c0);
    const Lanes zero = {}, six = zero + 6.f;  // the activation on whole vectors, as `activate` does (NaN kept)
    if (act == 1)
      for (int64_t r = 0; r < rows; ++r) acc[r] = acc[r] > zero ? acc[r] : zero;
    else if (act == 2)
      for (int64_t r = 0; r < rows; ++r) acc[r] = acc[r] < zero ? zero : (acc[r] > six ? six : acc[r]);
    if (n == kLanes) {
      for (int64_t r = 0; r < rows; ++r) std::memcpy(dst[r] + c0, &acc[r], sizeof(Lanes));
    } else {
      for (int64_t r = 0; r < rows; ++r) std::memcpy(dst[r] + c0, &acc[r], n * sizeof(float));
    }
  }
}
}  // namespace

// A convolution's weights and output map for `conv_rows_into`.
struct ConvHead {
  const at::Tensor& weight;
  const at::Tensor& bias;
  at::Tensor& Z;
  int64_t act;
};

// Z[outputs] = act(im2col(Xhat, outputs) @ weight + bias) for each head: convolutions with the same windows on
// the same input (the keypoint network's three 1x1 heads) share each tile's gathered windows.
void conv_rows_into(const at::Tensor& Xhat, const at::Tensor& outputs, const std::vector<int64_t>& geometry,
                    const std::vector<ConvHead>& heads) {
  check_map(Xhat, "Xhat");
  const Geometry g = geometry_from(geometry);
  const int64_t Hi = Xhat.size(0), Wi = Xhat.size(1), C = Xhat.size(2), n = outputs.numel();
  const int64_t width = g.kh * g.kw * C;
  for (const ConvHead& h : heads) {
    check_map(h.Z, "Z");
    TORCH_CHECK(h.weight.size(0) == width && h.weight.size(1) % kLanes == 0 && h.Z.size(2) <= h.weight.size(1),
                "weight must be (kh * kw * Cin, Cout padded to a multiple of 16) matching the maps");
    TORCH_CHECK(h.weight.is_contiguous() && h.weight.scalar_type() == at::kFloat, "weight must be contiguous float32");
    TORCH_CHECK(h.bias.numel() == h.weight.size(1) && h.bias.is_contiguous() && h.bias.scalar_type() == at::kFloat,
                "bias must be contiguous float32 of the padded Cout");
  }
  const float* x = Xhat.data_ptr<float>();
  const int32_t* o = outputs.data_ptr<int32_t>();
  const int64_t tiles = (n + kRows - 1) / kRows;
  // Two tiles a task at least: the work is waiting on the rows of cold maps more than arithmetic, and the threads
  // wait side by side.
  const int64_t grain = 2;
  at::parallel_for(0, tiles, grain, [&](int64_t tb, int64_t te) {
    std::vector<float> a(kRows * width, 0.f);
    float* dst[kRows];
    for (int64_t t = tb; t < te; ++t) {
      const int64_t s = t * kRows, m = std::min(kRows, n - s);
      gather_range(x, Hi, Wi, C, o, s, s + m, g, 0.f, a.data());
      for (const ConvHead& h : heads) {
        const int64_t cout = h.Z.size(2);
        float* z = h.Z.data_ptr<float>();
        for (int64_t r = 0; r < m; ++r) dst[r] = z + static_cast<int64_t>(o[s + r]) * cout;
        tile_gemm(a.data(), m, width, h.weight.data_ptr<float>(), cout, h.weight.size(1), h.bias.data_ptr<float>(),
                  dst, h.act);
      }
    }
  });
}

// One skip layer's recompute for groups == 1: Z[outputs] = act(im2col(Xhat, outputs) @ weight + bias).
// weight: (kh * kw * Cin, Cout_padded), bias: (Cout_padded,), Cout_padded a multiple of 16 (kLanes) holding Z's
// Cout channels first and zeros after (padded once per layer by the caller); act: 0 none, 1 relu, 2 relu6.
// Register-tiled: each task gathers kRows windows into a small buffer and multiplies them against the weight held
// in cache, so no matrix is materialised and no library call is made per chunk (at these sizes the call and its
// threading cost more than the arithmetic).
void conv_rows(const at::Tensor& Xhat, const at::Tensor& outputs, std::vector<int64_t> geometry,
               const at::Tensor& weight, const at::Tensor& bias, at::Tensor& Z, int64_t act) {
  conv_rows_into(Xhat, outputs, geometry, {ConvHead{weight, bias, Z, act}});
}

// Positions where `X` differs from `prev` (both (H, W, C)), copying X into prev there. Sorted. When more than
// dense_fraction of the positions differ, the list is not built: X is copied whole and an empty list comes back
// with the count (the caller treats the frame as changed everywhere, e.g. sensor noise). Returns (list, count).
std::tuple<at::Tensor, int64_t> changed_positions(const at::Tensor& X, at::Tensor& prev, double dense_fraction) {
  check_map(X, "X");
  check_map(prev, "prev");
  const int64_t n = X.size(0) * X.size(1), C = X.size(2);
  const float* x = X.data_ptr<float>();
  float* p = prev.data_ptr<float>();
  std::vector<int32_t> out;
  if (C == 1) {  // grayscale frames: one pass over the bit patterns, 16 pixels at a time
    const uint32_t* xb = reinterpret_cast<const uint32_t*>(x);
    uint32_t* pb = reinterpret_cast<uint32_t*>(p);
    thread_local std::vector<int32_t> found_here;
    if (static_cast<int64_t>(found_here.size()) < n + 16) found_here.resize(n + 16);
    int32_t* found = found_here.data();
    // The changed pixels of [b, e) written at found + b (at most e - b of them); returns their count.
    auto scan = [&](int64_t b, int64_t e) {
      int32_t* dst = found + b;
      int64_t i = b;
#ifdef __AVX512F__
      // A run of 16 with a change writes the indices of its changed pixels in one compress-store and takes the run
      // whole (a still_hand frame through the deadband changes 9-24 % of its pixels in patches: testing and
      // branching pixel by pixel cost 90 µs a 320x240 frame).
      const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      for (; i + 16 <= e; i += 16) {
        const __m512i xv = _mm512_loadu_si512(xb + i), pv = _mm512_loadu_si512(pb + i);
        const __mmask16 differ = _mm512_cmpneq_epi32_mask(xv, pv);
        if (!differ) continue;
        _mm512_mask_compressstoreu_epi32(dst, differ,
                                         _mm512_add_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(i))));
        dst += __builtin_popcount(differ);
        _mm512_storeu_si512(pb + i, xv);
      }
#else
      // Runs of 16 unchanged pixels are passed over with one test; a run with a change is collected without
      // branches.
      for (; i + 16 <= e; i += 16) {
        uint32_t differ = 0;
        for (int64_t k = 0; k < 16; ++k) differ |= xb[i + k] ^ pb[i + k];
        if (differ == 0) continue;
        for (int64_t k = i; k < i + 16; ++k) {
          *dst = static_cast<int32_t>(k);
          dst += xb[k] != pb[k];
          pb[k] = xb[k];
        }
      }
#endif
      for (; i < e; ++i) {
        *dst = static_cast<int32_t>(i);
        dst += xb[i] != pb[i];
        pb[i] = xb[i];
      }
      return static_cast<int64_t>(dst - (found + b));
    };
    // Two cold frames' worth of memory: the threads take equal runs of it.
    const int nt = team_for(n);
    std::vector<int64_t> begins(nt + 1, n), counts(nt, 0);
    for (int t = 0; t < nt; ++t) begins[t] = (n * t / nt) & ~int64_t{15};
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int t = nt > 1 ? omp_get_thread_num() : 0;
      counts[t] = scan(begins[t], begins[t + 1]);
    }
    int64_t count = 0;
    for (int64_t c : counts) count += c;
    // Above dense_fraction the list is not handed on (the frame counts as changed everywhere); prev is X either way.
    if (count == 0 || count > dense_fraction * static_cast<double>(n)) return {at::empty({0}, at::kInt), count};
    auto result = at::empty({count}, at::kInt);
    int32_t* out_dst = result.data_ptr<int32_t>();
    for (int t = 0; t < nt; ++t) {
      std::memcpy(out_dst, found + begins[t], counts[t] * sizeof(int32_t));
      out_dst += counts[t];
    }
    return {result, count};
  }
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(x + i * C, p + i * C, C * sizeof(float)) != 0) {
      std::memcpy(p + i * C, x + i * C, C * sizeof(float));
      out.push_back(static_cast<int32_t>(i));
    }
  }
  const int64_t count = static_cast<int64_t>(out.size());
  if (count > dense_fraction * static_cast<double>(n)) out.clear();
  return {to_tensor(out), count};
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

// A whole sparse frame of a converted network in one call (tracking/skipconv/plan.py builds it from the layers).
// Each step is one layer past the input, in the graph's order, holding the same tensors as its Python layer (its
// inputs' and its own output map, X̂ and the gate state), so the per-layer rules of tracking/skipconv/layers.py run
// here without Python between the kernels, and without the GIL: two cameras' networks run in parallel threads.
// `run` stops at the first layer that needs more than a sparse update (a dense run, a refresh the gate asks for,
// a change too broad for the sparse path): the caller runs that layer and the rest in Python.
class FramePlan {
 public:
  enum Kind : int64_t { kGated = 0, kFollow = 1, kBinary = 2, kUpsample = 3 };
  enum Column : int64_t { kPath, kActive, kPositions, kMacs, kDenseMacs, kUpdated, kPending, kRanGate, kColumns };
  enum PathCode : int64_t { kIdle = 0, kSparse = 1 };
  using StatsRow = std::array<int64_t, kColumns>;

  explicit FramePlan(int64_t layers) : steps_(layers), ran_gate_(layers, 0) {}

  void add_conv(int64_t index, bool gated, std::vector<int64_t> inputs, at::Tensor x, at::Tensor out, at::Tensor xhat,
                at::Tensor r2, at::Tensor energy, at::Tensor st_blk,
                std::vector<int64_t> geometry, double eps2_block, double noise_tail, double block_field,
                double update_floor, int64_t block, double break_even, bool broad_bails, bool reads_camera,
                int64_t pending, at::Tensor weight, at::Tensor bias, int64_t act, int64_t macs_per_position) {
    Step& s = begin(index, gated ? kGated : kFollow, std::move(inputs), {x}, out);
    s.xhat = xhat;
    s.r2 = r2;
    s.energy = energy;
    s.st_blk = st_blk;
    s.geometry = std::move(geometry);
    s.eps2_block = eps2_block;
    s.noise_tail = noise_tail;
    s.block_field = block_field;
    s.update_floor = update_floor;
    s.block = block;
    s.break_even = break_even;
    s.broad_bails = broad_bails;
    s.reads_camera = reads_camera;
    s.pending = pending;
    s.weight = weight;
    s.bias = bias;
    s.act = act;
    s.macs_per_position = macs_per_position;
  }

  void add_binary(int64_t index, std::vector<int64_t> inputs, at::Tensor a, at::Tensor b, at::Tensor out,
                  int64_t op, int64_t act) {
    Step& s = begin(index, kBinary, std::move(inputs), {a, b}, out);
    s.op = op;
    s.act = act;
  }

  void add_upsample(int64_t index, std::vector<int64_t> inputs, at::Tensor x, at::Tensor out, int64_t factor,
                    bool bilinear, bool align_corners) {
    Step& s = begin(index, kUpsample, std::move(inputs), {x}, out);
    s.factor = factor;
    s.bilinear = bilinear;
    s.align = align_corners;
  }

  // The input layer's map (the last frame, updated in place where the new one differs), and the list of all its
  // positions (the frame's changes when it changed almost everywhere: a camera that moves, every frame of it).
  void add_input(at::Tensor last, at::Tensor everywhere) {
    input_ = last;
    everywhere_ = everywhere;
  }

  using Result =
      std::tuple<int64_t, std::vector<at::Tensor>, bool, at::Tensor, int64_t, int64_t, bool, std::vector<StatsRow>>;

  // One frame: `frame` the camera image ((1, C, H, W) or its (H, W, C) view), compared here with the last one as
  // the input layer's step does (`changed_positions`; above dense_fraction of the pixels every position counts as
  // changed); gate stamps from `stamp` on (one per gated layer), the context's noise margin and energy and the
  // camera layer's wide-change fraction. Returns (the count of changed pixels; the layer it stopped at, 0 when the
  // frame did not change, or the layer count; every layer's changed positions up to it (after a whole frame only
  // layer `keep`'s, the rest undefined: each tensor handed to Python costs a microsecond or two); whether that
  // layer's gate ran, and its result: outputs, inputs updated, pending, refresh; the stats rows, kColumns ints per
  // layer, of the layers it ran when it stopped early). After a whole frame the stats stay here (`take_stats`,
  // `take_gate_state`): handing them to Python and writing them into the layers cost 5 % of a still_hand frame.
  std::tuple<int64_t, int64_t, std::vector<at::Tensor>, bool, at::Tensor, int64_t, int64_t, bool,
             std::vector<StatsRow>>
  run(const at::Tensor& frame, double dense_fraction, int64_t stamp, double noise_margin, double noise_energy,
      double camera_wide_change, int64_t keep) {
    TORCH_CHECK(input_.defined(), "frame plan: the input layer's map was never added");
    const at::Tensor hwc = hwc_view(frame);
    auto [first, count] = changed_positions(hwc, input_, dense_fraction);
    if (count == 0) return {0, 0, {}, false, at::empty({0}, at::kInt), 0, 0, false, {}};
    if (first.numel() == 0) first = everywhere_;
    auto result = from(first, stamp, noise_margin, noise_energy, camera_wide_change, keep);
    auto& rows = std::get<7>(result);
    if (std::get<0>(result) == static_cast<int64_t>(steps_.size())) {
      rows[0] = StatsRow{kSparse, count, hwc.size(0) * hwc.size(1), 0, 0, 0, 0, 0};
      for (size_t i = 1; i < rows.size(); ++i) ran_gate_[i] = std::max(ran_gate_[i], rows[i][kRanGate]);
      last_stats_ = std::move(rows);
      rows = {};
    }
    return std::tuple_cat(std::make_tuple(count), std::move(result));
  }

  // The stats rows of the last whole frame the plan ran (row 0 the input layer's compare), if not taken yet;
  // none after that.
  std::vector<StatsRow> take_stats() { return std::exchange(last_stats_, {}); }

  // (layer, its gate's pending count, 2 when it ran at a threshold else 1) for each layer whose gate ran on a whole
  // frame since the last call; the record starts again.
  std::vector<std::array<int64_t, 3>> take_gate_state() {
    std::vector<std::array<int64_t, 3>> out;
    for (size_t i = 1; i < ran_gate_.size(); ++i)
      if (ran_gate_[i]) {
        out.push_back({static_cast<int64_t>(i), steps_[i].pending, ran_gate_[i]});
        ran_gate_[i] = 0;
      }
    return out;
  }

 private:
  // The frame from the input's changed positions `first` on (run's result without the count).
  Result from(const at::Tensor& first, int64_t stamp, double noise_margin, double noise_energy,
              double camera_wide_change, int64_t keep) {
    const int64_t n = static_cast<int64_t>(steps_.size());
    std::vector<at::Tensor> changes(n);
    changes[0] = first;
    std::vector<StatsRow> stats(n, StatsRow{});  // Python lists of ints: a tensor's tolist() cost 19 µs a frame
    auto record = [&](int64_t i, int64_t path, int64_t active, int64_t positions, int64_t macs, int64_t dense,
                      int64_t updated, int64_t pending) {
      int64_t* r = stats[i].data();
      r[kPath] = path;
      r[kActive] = active;
      r[kPositions] = positions;
      r[kMacs] = macs;
      r[kDenseMacs] = dense;
      r[kUpdated] = updated;
      r[kPending] = pending;
    };
    const at::Tensor none = at::empty({0}, at::kInt);
    for (int64_t i = 1; i < n; ++i) {
      Step& s = steps_[i];
      TORCH_CHECK(s.kind >= 0, "frame plan: layer ", i, " was never added");
      const int64_t ho = s.out.size(0), wo = s.out.size(1);
      if (s.kind == kGated || s.kind == kFollow) {
        const at::Tensor& c = changes[s.inputs[0]];
        const int64_t dense_macs = ho * wo * s.macs_per_position;
        if (s.kind == kFollow) {
          // This follower and the next ones on the same input with the same windows (the heads) up to the first
          // that would run dense: one pass over the changes for all of them.
          int64_t last = i;
          for (int64_t j = i; j < n; ++j) {
            const Step& f = steps_[j];
            if (f.kind != kFollow || f.inputs[0] != s.inputs[0] || f.geometry != s.geometry) break;
            if (static_cast<double>(c.numel()) > f.break_even * static_cast<double>(ho * wo)) {
              if (j == i) return {i, changes, false, none, 0, 0, false, stats};
              break;
            }
            last = j;
          }
          const int64_t count = c.numel();
          if (count) {
            std::vector<ConvHead> heads;
            for (int64_t j = i; j <= last; ++j)
              heads.push_back(ConvHead{steps_[j].weight, steps_[j].bias, steps_[j].out, steps_[j].act});
            conv_rows_into(s.x[0], c, s.geometry, heads);
          }
          for (int64_t j = i; j <= last; ++j) {
            const int64_t macs = count * steps_[j].macs_per_position, dense = ho * wo * steps_[j].macs_per_position;
            record(j, count ? kSparse : kIdle, count, ho * wo, macs, dense, count, 0);
            changes[j] = c;
          }
          i = last;
          continue;
        }
        if (c.numel() == 0) {
          record(i, kIdle, 0, ho * wo, 0, dense_macs, 0, s.pending);
          changes[i] = c;
          continue;
        }
        const int64_t hi = s.x[0].size(0), wi = s.x[0].size(1);
        const bool broad = static_cast<double>(c.numel()) > s.break_even * static_cast<double>(hi) * wi;
        if (broad && s.broad_bails) return {i, changes, false, none, 0, 0, false, stats};
        double eps2 = s.eps2_block;
        if (eps2 > 0.0 && s.noise_tail > 0.0 && noise_margin > 0.0)
          eps2 = std::max(eps2, noise_margin * s.noise_tail * noise_energy * s.block_field);
        const double floor = eps2 > 0.0 && !s.reads_camera ? s.update_floor * eps2 / s.block_field : 0.0;
        auto [active, updated, pending, refresh] =
            select_update(s.x[0], s.xhat, c, false, s.r2, s.energy, s.st_blk, stamp++,
                          s.geometry, eps2, s.block, s.break_even, s.pending, floor);
        s.pending = pending;
        stats[i][kRanGate] = eps2 > 0.0 ? 2 : 1;  // the gate ran (2: at a threshold, its state dirty)
        const int64_t count = active.numel();
        const double dense_above = s.reads_camera ? std::min(s.break_even, camera_wide_change) : s.break_even;
        if (refresh || static_cast<double>(count) > dense_above * static_cast<double>(ho) * wo)
          return {i, changes, true, active, updated, pending, refresh, stats};
        if (count) conv_rows(s.xhat, active, s.geometry, s.weight, s.bias, s.out, s.act);
        record(i, count ? kSparse : kIdle, count, ho * wo, count * s.macs_per_position, dense_macs, updated,
               pending);
        changes[i] = active;
      } else if (s.kind == kBinary) {
        std::vector<at::Tensor> live;
        for (int64_t j : s.inputs)
          if (changes[j].numel()) live.push_back(changes[j]);
        at::Tensor active = live.empty() ? changes[s.inputs[0]]
                                         : (live.size() == 1 ? live[0] : union_positions(live, ho * wo));
        if (active.numel()) binary_positions(s.x[0], s.x[1], s.out, active, s.op, s.act);
        record(i, active.numel() ? kSparse : kIdle, active.numel(), ho * wo, 0, 0, 0, 0);
        changes[i] = active;
      } else {
        const at::Tensor& c = changes[s.inputs[0]];
        if (c.numel() == 0) {
          record(i, kIdle, 0, ho * wo, 0, 0, 0, 0);
          changes[i] = c;
          continue;
        }
        const int64_t radius = s.bilinear ? 1 : 0;
        at::Tensor active =
            upsample_positions(c, s.x[0].size(1), s.factor, radius, ho, wo);
        upsample_at(s.x[0], s.out, active, s.factor, s.bilinear, s.align);
        record(i, kSparse, active.numel(), ho * wo, 0, 0, 0, 0);
        changes[i] = active;
      }
    }
    std::vector<at::Tensor> kept(n);
    if (keep > 0 && keep < n) kept[keep] = changes[keep];
    return {n, kept, false, none, 0, 0, false, stats};
  }

  struct Step {
    int64_t kind = -1;
    std::vector<int64_t> inputs;
    std::vector<at::Tensor> x;
    at::Tensor out, xhat, r2, energy, st_blk, weight, bias;
    std::vector<int64_t> geometry;
    double eps2_block = 0.0, noise_tail = 0.0, block_field = 1.0, update_floor = 0.0, break_even = 1.0;
    int64_t block = 1, act = 0, macs_per_position = 0, pending = 0, op = 0, factor = 1;
    bool broad_bails = false, reads_camera = false, bilinear = false, align = false;
  };

  // The fields every kind of step has.
  Step& begin(int64_t index, Kind kind, std::vector<int64_t> inputs, std::vector<at::Tensor> x, at::Tensor out) {
    TORCH_CHECK(index >= 1 && index < static_cast<int64_t>(steps_.size()), "plan step index out of range");
    Step& s = steps_[index];
    s.kind = kind;
    s.inputs = std::move(inputs);
    s.x = std::move(x);
    s.out = std::move(out);
    return s;
  }

  // (H, W, C) contiguous of a (1, C, H, W) frame: a view when it is channels_last (always so with one channel), a
  // copy otherwise; an (H, W, C) frame as it is.
  static at::Tensor hwc_view(const at::Tensor& frame) {
    if (frame.dim() != 4) return frame;
    TORCH_CHECK(frame.size(0) == 1, "frame plan: one frame at a time, (1, C, H, W)");
    return frame.select(0, 0).permute({1, 2, 0}).contiguous();
  }

  std::vector<Step> steps_;
  at::Tensor input_, everywhere_;
  std::vector<StatsRow> last_stats_;
  std::vector<int64_t> ran_gate_;
};

// The kernels touch no Python object: they release the GIL, so that two cameras' networks run in parallel threads.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("select_update", &select_update, py::call_guard<py::gil_scoped_release>());
  m.def("dilate_positions", &dilate_positions, py::call_guard<py::gil_scoped_release>());
  m.def("upsample_positions", &upsample_positions, py::call_guard<py::gil_scoped_release>());
  m.def("union_positions", &union_positions, py::call_guard<py::gil_scoped_release>());
  m.def("gather_windows", &gather_windows, py::call_guard<py::gil_scoped_release>());
  m.def("scatter_rows", &scatter_rows, py::call_guard<py::gil_scoped_release>());
  m.def("conv_rows", &conv_rows, py::call_guard<py::gil_scoped_release>());
  m.def("changed_positions", &changed_positions, py::call_guard<py::gil_scoped_release>());
  m.def("copy_positions", &copy_positions, py::call_guard<py::gil_scoped_release>());
  m.def("binary_positions", &binary_positions, py::call_guard<py::gil_scoped_release>());
  m.def("upsample_at", &upsample_at, py::call_guard<py::gil_scoped_release>());
  py::class_<FramePlan>(m, "FramePlan", py::module_local())
      .def(py::init<int64_t>())
      .def("add_conv", &FramePlan::add_conv)
      .def("add_binary", &FramePlan::add_binary)
      .def("add_upsample", &FramePlan::add_upsample)
      .def("add_input", &FramePlan::add_input)
      .def("run", &FramePlan::run, py::call_guard<py::gil_scoped_release>())
      .def("take_stats", &FramePlan::take_stats)
      .def("take_gate_state", &FramePlan::take_gate_state);
}
