#include "engine/flops.h"

namespace blockserve::engine {

double ForwardFlops(const ModelConfig& c, int64_t new_tokens, int64_t past, bool logits) {
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
               kv = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  const double m = new_tokens;
  const double per_token = 2 * h * (q + 2 * kv) + 2 * q * h + 6 * h * inter;
  const double keys = m * past + m * (m + 1) / 2;  // sum over new tokens of keys attended
  const double per_layer = m * per_token + 4 * keys * q;
  return c.num_hidden_layers * per_layer + (logits ? 2 * h * c.vocab_size : 0);
}

}  // namespace blockserve::engine
