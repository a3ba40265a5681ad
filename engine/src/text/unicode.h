// Unicode helpers for the tokenizer: UTF-8 walking and validation, Rust-compatible lossy decoding,
// character classes (as Rust's char methods define them), normalization forms and lowercasing (ICU),
// and GPT-2's byte <-> printable-character table used by byte-level BPE.
// Invariants: functions taking text assume valid UTF-8 unless their name says otherwise; the caller
// validates once at the API boundary (Tokenizer::encode).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lmlab::tok {

// Length in bytes of the UTF-8 sequence starting with `lead` (1 for continuation/invalid bytes, so
// that loops always advance).
inline size_t utf8_seq_len(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i past it.
char32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(char32_t cp);

// Checks the sequence at p[0..n): returns its length (1-4) when valid, or -k where k >= 1 is the length
// of the maximal invalid subpart (the bytes one U+FFFD replaces, as Rust's from_utf8_lossy does).
int utf8_check(const unsigned char* p, size_t n);
// Byte offset of the first invalid sequence, or npos when `s` is valid UTF-8.
size_t utf8_find_invalid(std::string_view s);
inline bool utf8_valid(std::string_view s) { return utf8_find_invalid(s) == std::string_view::npos; }
// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Character classes with Rust's definitions (char::is_whitespace etc.), from ICU properties.
bool is_whitespace(char32_t cp);       // White_Space
bool is_alphanumeric(char32_t cp);     // Alphabetic or numeric
bool is_numeric(char32_t cp);          // general category Nd, Nl or No
bool is_nonspacing_mark(char32_t cp);  // general category Mn
bool is_punctuation(char32_t cp);      // ASCII punctuation or general category P*

enum class NormalForm { nfc, nfd, nfkc, nfkd };
std::string normalize(std::string_view s, NormalForm form);
// Per-character full lowercase mapping (Rust's char::to_lowercase applied to each char).
std::string to_lower(std::string_view s);

// GPT-2 bytes_to_unicode: every byte maps to a printable character (as UTF-8); the reverse map gives
// the byte of such a character, or -1.
const std::array<std::string, 256>& byte_to_unicode();
int unicode_to_byte(char32_t cp);

}  // namespace lmlab::tok
