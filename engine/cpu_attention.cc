#include "engine/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <type_traits>
#include <vector>

#include "engine/simd.h"

namespace blockserve::engine {
namespace {

// How the work is cut. A task takes the query rows of one row block for all the query
// heads that share one KV head (GQA), stacked into R = rows x group "lanes", so each K/V
// tile is read once per group rather than once per head. The kernels below vectorize
// across those stacked rows: scores are kept transposed, St[key][row], so a key's
// element is broadcast from K (or V) as stored, with no packing of fp32 K/V at all.
constexpr int64_t kTile = 128;        // keys per tile (the St tile is kTile x R floats)
constexpr int64_t kStackedRows = 128;  // target R per task (128 measured faster than 32 or 64)
constexpr int64_t kBlock = 6;         // keys (scores) or head dims (PV) per micro-kernel

// GCC vector types of 8 lanes: one ymm on AVX2 and AVX-512 (where the clone also gets 32
// registers), two xmm on the baseline. Wider types are not used: gcc lowers a vector
// wider than the target's registers through the stack, which made the kernels ~5x slower.
typedef float Vf __attribute__((vector_size(32)));
typedef int32_t Vi __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;

template <typename V>
BLOCKSERVE_INLINE V Load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V>
BLOCKSERVE_INLINE void Store(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename V>
BLOCKSERVE_INLINE V Max(V a, V b) {
  return a > b ? a : b;
}

// 2^x for x <= 0, the only inputs softmax has here (a score minus its row's running
// max, in log2 units): 2^n * 2^r with n = round(x), r = x - n exact, |r| <= 1/2, and 2^r
// by a degree-6 polynomial (Taylor coefficients of e^(r ln 2); with rounding, within 3e-7
// relative). Base 2 saves the range reduction's two multiply-adds by ln 2 (scores come
// pre-scaled by log2(e)). x below -125 (-inf included) gives 0, so results are never
// subnormal. T is float or a vector of floats, I the matching ints.
template <typename T, typename I>
BLOCKSERVE_INLINE T Exp2NonPositive(T x) {
  const T lo = T{} - 125.0f;
  const T v = x < lo ? lo : x;
  const T t = v + 12582912.0f;  // round to nearest via 1.5 * 2^23
  const T r = v - (t - 12582912.0f);
  T p = T{} + 1.5403530e-4f;  // (ln 2)^6 / 720
  p = p * r + 1.3333558e-3f;  // (ln 2)^5 / 120
  p = p * r + 9.6181291e-3f;  // (ln 2)^4 / 24
  p = p * r + 5.5504109e-2f;  // (ln 2)^3 / 6
  p = p * r + 2.4022651e-1f;  // (ln 2)^2 / 2
  p = p * r + 6.9314718e-1f;  // ln 2
  p = p * r + 1.0f;
  I bits;
  std::memcpy(&bits, &t, sizeof bits);
  const I e = (bits - 0x4B400000 + 127) << 23;  // 2^n as float bits
  T scale;
  std::memcpy(&scale, &e, sizeof scale);
  return x < lo ? T{} : p * scale;
}

BLOCKSERVE_MULTIVERSION void Exp2Kernel(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = Exp2NonPositive<float, int32_t>(x[i]);
}

// bf16 bit patterns (a float's top 16 bits) to fp32, 8 at a time: zero-extend 16 -> 32
// bits and shift left 16, in registers.
BLOCKSERVE_INLINE void WidenRows(const uint16_t* src, int64_t ld, int64_t rows, int64_t d,
                                 float* dst) {
  typedef uint16_t U16x8 __attribute__((vector_size(16)));
  typedef uint32_t U32x8 __attribute__((vector_size(32)));
  for (int64_t j = 0; j < rows; ++j, src += ld, dst += d) {
    int64_t e = 0;
    for (; e + 8 <= d; e += 8) {
      U16x8 h;
      std::memcpy(&h, src + e, sizeof h);
      const U32x8 w = __builtin_convertvector(h, U32x8) << 16;
      std::memcpy(dst + e, &w, sizeof w);
    }
    for (; e < d; ++e) {
      const uint32_t w = static_cast<uint32_t>(src[e]) << 16;
      std::memcpy(dst + e, &w, 4);
    }
  }
}

// st[x][r] = sum_e k[x][e] * qt[e][r] for the N keys at k (row stride ks) and the C x 8
// stacked rows at column rc: K's elements are broadcast, Q^T's rows loaded as vectors.
// N = 6, C = 2 holds 12 accumulators, 2 loads and a broadcast: 15 of AVX2's 16 ymm.
template <int N, int C>
BLOCKSERVE_INLINE void Scores(const float* k, int64_t ks, const float* qt, int64_t d, int64_t rp,
                              int64_t rc, float* st) {
  Vf acc[N][C] = {};
  for (int64_t e = 0; e < d; ++e) {
    Vf qv[C];
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) qv[c] = Load<Vf>(qt + e * rp + rc + c * kLanes);
#pragma GCC unroll 6
    for (int x = 0; x < N; ++x) {
      const float kx = k[x * ks + e];
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) acc[x][c] += qv[c] * kx;
    }
  }
#pragma GCC unroll 6
  for (int x = 0; x < N; ++x) {
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) Store(st + x * rp + rc + c * kLanes, acc[x][c]);
  }
}

// ot[x][r] += sum_j v[j][x] * st[j][r] for N head dims starting at v (row stride vs) and
// the C x 8 stacked rows at column rc, over the jn keys of the tile.
template <int N, int C>
BLOCKSERVE_INLINE void Values(const float* v, int64_t vs, const float* st, int64_t jn, int64_t rp,
                              int64_t rc, float* ot) {
  Vf acc[N][C];
#pragma GCC unroll 6
  for (int x = 0; x < N; ++x) {
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) acc[x][c] = Load<Vf>(ot + x * rp + rc + c * kLanes);
  }
  for (int64_t j = 0; j < jn; ++j) {
    Vf p[C];
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) p[c] = Load<Vf>(st + j * rp + rc + c * kLanes);
    const float* vr = v + j * vs;
#pragma GCC unroll 6
    for (int x = 0; x < N; ++x) {
      const float vx = vr[x];
#pragma GCC unroll 2
      for (int c = 0; c < C; ++c) acc[x][c] += p[c] * vx;
    }
  }
#pragma GCC unroll 6
  for (int x = 0; x < N; ++x) {
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) Store(ot + x * rp + rc + c * kLanes, acc[x][c]);
  }
}

// The two kernels over one strip of C x 8 stacked rows at column rc: the scores of the
// tile's jn keys, kBlock keys at a time; then the strip's O^T += P V, kBlock head dims at
// a time.
template <int C>
BLOCKSERVE_INLINE void ScoresStrip(const float* k, int64_t ks, const float* qt, int64_t d,
                                   int64_t rp, int64_t rc, int64_t jn, float* st) {
  for (int64_t jb = 0; jb < jn; jb += kBlock) {
    const float* kb = k + jb * ks;
    float* sb = st + jb * rp;
    switch (std::min(kBlock, jn - jb)) {
      case 6: Scores<6, C>(kb, ks, qt, d, rp, rc, sb); break;
      case 5: Scores<5, C>(kb, ks, qt, d, rp, rc, sb); break;
      case 4: Scores<4, C>(kb, ks, qt, d, rp, rc, sb); break;
      case 3: Scores<3, C>(kb, ks, qt, d, rp, rc, sb); break;
      case 2: Scores<2, C>(kb, ks, qt, d, rp, rc, sb); break;
      default: Scores<1, C>(kb, ks, qt, d, rp, rc, sb); break;
    }
  }
}

template <int C>
BLOCKSERVE_INLINE void ValuesStrip(const float* v, int64_t vs, const float* st, int64_t jn,
                                   int64_t d, int64_t rp, int64_t rc, float* ot) {
  for (int64_t eb = 0; eb < d; eb += kBlock) {
    const float* vb = v + eb;
    float* ob = ot + eb * rp;
    switch (std::min(kBlock, d - eb)) {
      case 6: Values<6, C>(vb, vs, st, jn, rp, rc, ob); break;
      case 5: Values<5, C>(vb, vs, st, jn, rp, rc, ob); break;
      case 4: Values<4, C>(vb, vs, st, jn, rp, rc, ob); break;
      case 3: Values<3, C>(vb, vs, st, jn, rp, rc, ob); break;
      case 2: Values<2, C>(vb, vs, st, jn, rp, rc, ob); break;
      default: Values<1, C>(vb, vs, st, jn, rp, rc, ob); break;
    }
  }
}

// One strip of C x 8 stacked rows at column r0 through one tile of jn keys starting at
// key j0: scores, the online softmax update (masked: apply each row's [first, last]
// key limits) and O^T += P V.
template <int C>
BLOCKSERVE_INLINE void Strip(const float* kp, int64_t kst, const float* vp, int64_t vst,
                             const float* qt, int64_t d, int64_t Rp, int64_t r0, int64_t j0,
                             int64_t jn, bool masked, const int32_t* first, const int32_t* last,
                             float* st, float* mx, float* sum, float* ot) {
  using V = Vf;
  using I = Vi;
  constexpr int64_t L = kLanes;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  ScoresStrip<C>(kp, kst, qt, d, Rp, r0, jn, st);
  for (int64_t rc = r0; rc < r0 + C * L; rc += L) {
    const V ninf = V{} - kInf;
    V tile_max = ninf;
    if (masked) {
      I f, l;
      std::memcpy(&f, first + rc, sizeof f);
      std::memcpy(&l, last + rc, sizeof l);
      for (int64_t j = 0; j < jn; ++j) {
        const I key = I{} + static_cast<int32_t>(j0 + j);
        V s = Load<V>(st + j * Rp + rc);
        s = (key > l) | (key < f) ? ninf : s;
        Store(st + j * Rp + rc, s);
        tile_max = Max(tile_max, s);
      }
    } else {
      for (int64_t j = 0; j < jn; ++j) tile_max = Max(tile_max, Load<V>(st + j * Rp + rc));
    }
    const V old_max = Load<V>(mx + rc), new_max = Max(old_max, tile_max);
    // A row with no key yet keeps max -inf; subtracting 0 then makes every p 0.
    const V base = new_max == ninf ? V{} : new_max;
    const V correction = Exp2NonPositive<V, I>(old_max - base);
    V tile_sum = {};
    for (int64_t j = 0; j < jn; ++j) {
      const V p = Exp2NonPositive<V, I>(Load<V>(st + j * Rp + rc) - base);
      Store(st + j * Rp + rc, p);
      tile_sum += p;
    }
    Store(sum + rc, Load<V>(sum + rc) * correction + tile_sum);
    Store(mx + rc, new_max);
    for (int64_t e = 0; e < d; ++e) Store(ot + e * Rp + rc, Load<V>(ot + e * Rp + rc) * correction);
  }
  ValuesStrip<C>(vp, vst, st, jn, d, Rp, r0, ot);
}

// One call's arguments and how its work is cut (see Run).
template <typename KV>
struct Job {
  const float* q;
  int64_t m;
  const KV* k;
  const KV* v;
  int64_t past, window;
  int64_t heads, kv_heads, d, group;  // group: query heads per KV head
  float* out;
  int64_t rows, blocks, splits;  // query rows per block, blocks, key splits per block
  float* partial;                // splits > 1: each task's softmax state, `slot` floats
  int64_t slot;

  // Row i (0-based among the m new rows) sees keys [First(i), past + i].
  int64_t First(int64_t i) const {
    return window > 0 ? std::max<int64_t>(0, past + i - window + 1) : 0;
  }
};

// Stacked rows are padded to whole vectors.
int64_t Padded(int64_t r) { return (r + kLanes - 1) / kLanes * kLanes; }

// The task for row block b, KV head g and key split sp: an online softmax over the
// split's key tiles for the block's rows of every query head in g's group. Stacked row
// r is query row i0 + r / group of head g * group + r % group, so the rows of one
// position are adjacent and share their causal and window limits.
template <typename KV>
BLOCKSERVE_INLINE void AttendGroup(const Job<KV>& J, int64_t b, int64_t g, int64_t sp) {
  using V = Vf;
  using I = Vi;
  constexpr int64_t L = kLanes;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const int64_t d = J.d, G = J.group, q_ld = J.heads * d, kv_ld = J.kv_heads * d;
  const int64_t i0 = b * J.rows, i1 = std::min(J.m, i0 + J.rows);
  const int64_t R = (i1 - i0) * G, Rp = Padded(R);
  // The block's keys, then this split's share of their tiles.
  const int64_t lo = J.First(i0), hi = J.past + i1;
  const int64_t tiles = (hi - lo + kTile - 1) / kTile;
  const int64_t ks = lo + tiles * sp / J.splits * kTile;
  const int64_t ke = std::min(hi, lo + tiles * (sp + 1) / J.splits * kTile);

  constexpr bool kWiden = !std::is_same_v<KV, float>;
  thread_local std::vector<float> buf;
  thread_local std::vector<int32_t> limits;
  buf.resize(2 * d * Rp + kTile * Rp + 2 * Rp + (kWiden ? 2 * kTile * d : 0));
  limits.resize(2 * Rp);
  float* qt = buf.data();  // Q^T, pre-scaled by log2(e) / sqrt(d): [d][Rp]
  float* ot = qt + d * Rp;  // unnormalized O^T: [d][Rp]
  float* st = ot + d * Rp;  // scores, then probabilities, of one tile: [kTile][Rp]
  float* mx = st + kTile * Rp;  // running max per stacked row
  float* sum = mx + Rp;  // running softmax denominator per stacked row
  float* kf = sum + Rp;  // bf16 only: the tile's K and V widened, [kTile][d] each
  float* vf = kf + kTile * d;
  int32_t* first = limits.data();  // per stacked row: first and last key it sees
  int32_t* last = first + Rp;

  // Scores in log2 units, for Exp2NonPositive; the running max and sum are too.
  const float scale = static_cast<float>(std::numbers::log2e / std::sqrt(static_cast<double>(d)));
  for (int64_t r = 0; r < Rp; ++r) {
    const int64_t rr = std::min(r, R - 1);  // padding lanes copy the last row's limits
    const int64_t i = i0 + rr / G, h = g * G + rr % G;
    const float* qi = J.q + i * q_ld + h * d;
    for (int64_t e = 0; e < d; ++e) qt[e * Rp + r] = r < R ? qi[e] * scale : 0.0f;
    first[r] = static_cast<int32_t>(J.First(i));
    last[r] = static_cast<int32_t>(J.past + i);
    mx[r] = -kInf;
    sum[r] = 0;
  }
  std::fill(ot, ot + d * Rp, 0.0f);
  // Keys after past + i0 are hidden from some row (causal), and so are keys before
  // First(i1 - 1) (window); tiles clear of both need no mask.
  const int64_t unmasked_hi = J.past + i0, unmasked_lo = J.First(i1 - 1);

  for (int64_t j0 = ks; j0 < ke; j0 += kTile) {
    const int64_t jn = std::min(kTile, ke - j0);
    // Ask for the next tile's K and V rows now: with few stacked rows (decode) the
    // kernels wait on memory more than on arithmetic.
    for (int64_t j = j0 + kTile; j < std::min(ke, j0 + 2 * kTile); ++j) {
      const char* kr = reinterpret_cast<const char*>(J.k + j * kv_ld + g * d);
      const char* vr = reinterpret_cast<const char*>(J.v + j * kv_ld + g * d);
      for (int64_t off = 0; off < d * static_cast<int64_t>(sizeof(KV)); off += 64) {
        __builtin_prefetch(kr + off);
        __builtin_prefetch(vr + off);
      }
    }
    const float *kp, *vp;
    int64_t kst, vst;
    if constexpr (kWiden) {
      WidenRows(J.k + j0 * kv_ld + g * d, kv_ld, jn, d, kf);
      WidenRows(J.v + j0 * kv_ld + g * d, kv_ld, jn, d, vf);
      kp = kf, vp = vf, kst = vst = d;
    } else {
      kp = J.k + j0 * kv_ld + g * d, vp = J.v + j0 * kv_ld + g * d, kst = vst = kv_ld;
    }
    // One strip of 16 stacked rows at a time through scores, softmax and P V, so its
    // kTile x 16 scores stay in L1 between the three steps (the K and V tile are read
    // once per strip, from L1 or L2).
    const bool masked = j0 + jn - 1 > unmasked_hi || j0 < unmasked_lo;
    int64_t r0 = 0;
    for (; r0 + 2 * L <= Rp; r0 += 2 * L) {
      Strip<2>(kp, kst, vp, vst, qt, d, Rp, r0, j0, jn, masked, first, last, st, mx, sum, ot);
    }
    if (r0 < Rp) Strip<1>(kp, kst, vp, vst, qt, d, Rp, r0, j0, jn, masked, first, last, st, mx, sum, ot);
  }

  if (J.splits == 1) {
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = i0 + r / G, h = g * G + r % G;
      const float inv = 1.0f / sum[r];
      float* o = J.out + i * q_ld + h * d;
      for (int64_t e = 0; e < d; ++e) o[e] = ot[e * Rp + r] * inv;
    }
  } else {  // the state goes to Run's merge: max, sum, then O^T
    float* p = J.partial + ((b * J.kv_heads + g) * J.splits + sp) * J.slot;
    std::copy(mx, mx + Rp, p);
    std::copy(sum, sum + Rp, p + Rp);
    std::copy(ot, ot + d * Rp, p + 2 * Rp);
  }
}

BLOCKSERVE_MULTIVERSION void AttendF32(const Job<float>& J, int64_t b, int64_t g, int64_t sp) {
  AttendGroup(J, b, g, sp);
}

BLOCKSERVE_MULTIVERSION void AttendBF16(const Job<uint16_t>& J, int64_t b, int64_t g, int64_t sp) {
  AttendGroup(J, b, g, sp);
}

void AttendTask(const Job<float>& J, int64_t b, int64_t g, int64_t sp) { AttendF32(J, b, g, sp); }
void AttendTask(const Job<uint16_t>& J, int64_t b, int64_t g, int64_t sp) { AttendBF16(J, b, g, sp); }

template <typename KV>
void Run(const float* q, int64_t m, const KV* k, const KV* v, int64_t past, const AttentionShape& s,
         float* out, ThreadPool& pool, int64_t window) {
  if (m <= 0) return;
  Job<KV> J{q, m, k, v, past, window, s.num_heads, s.num_kv_heads, s.head_dim,
            s.num_heads / s.num_kv_heads, out};
  // Row blocks of about kStackedRows stacked rows, evened out so the last is not a stub.
  J.blocks = (m * J.group + kStackedRows - 1) / kStackedRows;
  J.rows = (m + J.blocks - 1) / J.blocks;
  J.blocks = (m + J.rows - 1) / J.rows;
  // Too few tasks to keep every thread busy (a short query or a decode step over a long
  // past): split each block's keys and merge the partial softmax states afterwards, as
  // long as each split keeps a couple of tiles.
  const int64_t tasks = J.blocks * J.kv_heads, want = 4 * pool.size();
  const int64_t span = past + m - J.First(std::max<int64_t>(0, m - J.rows));
  J.splits = 1;
  if (tasks < want) {
    J.splits = std::max<int64_t>(1, std::min((want + tasks - 1) / tasks, span / (2 * kTile)));
  }
  std::vector<float> partial;
  if (J.splits > 1) {
    J.slot = (2 + J.d) * Padded(J.rows * J.group);
    partial.resize(tasks * J.splits * J.slot);
    J.partial = partial.data();
  }
  // Row blocks late in the sequence see more keys; handing out the last blocks first
  // keeps the tail of the parallel loop short.
  const int64_t per_block = J.kv_heads * J.splits;
  pool.ParallelFor(tasks * J.splits, [&](int64_t t) {
    const int64_t b = J.blocks - 1 - t / per_block, rest = t % per_block;
    AttendTask(J, b, rest / J.splits, rest % J.splits);
  });
  if (J.splits == 1) return;
  pool.ParallelFor(tasks, [&](int64_t t) {
    const int64_t b = t / J.kv_heads, g = t % J.kv_heads, G = J.group, d = J.d;
    const int64_t i0 = b * J.rows, R = (std::min(m, i0 + J.rows) - i0) * G, Rp = Padded(R);
    const float* base = J.partial + t * J.splits * J.slot;
    for (int64_t r = 0; r < R; ++r) {
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t sp = 0; sp < J.splits; ++sp) top = std::max(top, base[sp * J.slot + r]);
      double total = 0;
      float* o = out + (i0 + r / G) * J.heads * d + (g * G + r % G) * d;
      std::fill(o, o + d, 0.0f);
      for (int64_t sp = 0; sp < J.splits; ++sp) {
        const float* p = base + sp * J.slot;
        const float w = std::exp2(p[r] - top);  // 0 for a split that saw no key of row r
        if (w == 0) continue;
        total += w * p[Rp + r];
        for (int64_t e = 0; e < d; ++e) o[e] += w * p[2 * Rp + e * Rp + r];
      }
      const float inv = static_cast<float>(1.0 / total);
      for (int64_t e = 0; e < d; ++e) o[e] *= inv;
    }
  });
}

}  // namespace

void Exp2InPlace(float* x, int64_t n) { Exp2Kernel(x, n); }

void CausalAttention(const float* q, int64_t m, const float* k, const float* v, int64_t past,
                     const AttentionShape& shape, float* out, ThreadPool& pool, int64_t window) {
  Run(q, m, k, v, past, shape, out, pool, window);
}

void CausalAttention(const float* q, int64_t m, const uint16_t* k, const uint16_t* v, int64_t past,
                     const AttentionShape& shape, float* out, ThreadPool& pool, int64_t window) {
  Run(q, m, k, v, past, shape, out, pool, window);
}

}  // namespace blockserve::engine
