// A bound on how deeply JSON read from outside may nest, checked before it is parsed.
//
// nlohmann's parser and destructor are iterative, but dump() is not: every error message
// that quotes the offending value (config.json's "found ...", the tokenizer's Describe,
// safetensors' shapes, the logits request's ids) recursed once per level, and so do the
// tokenizer's walks of nested pre-tokenizers and post-processors. A value nested 100,000
// deep (200 KB of brackets) overflowed the stack: `logits` died with SIGSEGV on such a
// request instead of answering InvalidArgument. Real files nest a few levels
// (tokenizer.json 5, config.json 3), so the limit costs nothing and makes every walk of a
// parsed document shallow.
#ifndef BLOCKSERVE_ENGINE_JSON_NESTING_H_
#define BLOCKSERVE_ENGINE_JSON_NESTING_H_

#include <string_view>

#include "absl/status/status.h"

namespace blockserve::engine {

inline constexpr int kMaxJsonNesting = 128;

// InvalidArgument, naming the limit and where it was passed, when `text` opens more than
// `max_depth` arrays and objects at once; brackets inside strings do not count. A linear
// scan, no parse: for text that is not JSON the answer may be either, and the parser
// rejects such text anyway.
absl::Status CheckJsonNesting(std::string_view text, int max_depth = kMaxJsonNesting);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_JSON_NESTING_H_
