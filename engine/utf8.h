// UTF-8 checks for text that crosses a boundary: requests must be valid UTF-8, and
// generated text (which a random or partial token stream can leave as broken bytes)
// must be made valid before it goes into a proto string or a terminal.
#ifndef BLOCKSERVE_ENGINE_UTF8_H_
#define BLOCKSERVE_ENGINE_UTF8_H_

#include <string>
#include <string_view>

namespace blockserve::engine {

// Decodes the character starting at text[pos] into `cp` and returns its length in
// bytes, or 0 if it is ill-formed (overlong, surrogate, > U+10FFFF) or cut off.
size_t DecodeUtf8Char(std::string_view text, size_t pos, char32_t& cp);

// True if `text` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Length of the longest prefix of `text` that ends on a character boundary: a stream
// of token bytes can be printed up to there and the rest held for the next token.
size_t CompleteUtf8Prefix(std::string_view text);

// `text` with every ill-formed sequence replaced by U+FFFD; with `printable`, also
// control characters other than newline and tab.
std::string SanitizeUtf8(std::string_view text, bool printable = false);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_UTF8_H_
