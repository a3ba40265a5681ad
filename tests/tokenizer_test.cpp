// Tokenizer tests: golden encode/decode against Hugging Face `tokenizers` output
// (fixtures/tokenizers/golden.json), streaming detokenization, load errors, every component type on
// hand-checked examples (mostly those of `tokenizers`' own unit tests), and a seeded fuzz run.
#include "lmlab/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "lmlab/error.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "text/unicode.h"

namespace lmlab {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

fs::path tokenizers_dir() { return fs::path(LMLAB_FIXTURES_DIR) / "tokenizers"; }

const json& golden() {
  static const json g = [] {
    std::ifstream in(tokenizers_dir() / "golden.json");
    return json::parse(in);
  }();
  return g;
}

const Tokenizer& fixture(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, Tokenizer::from_file(tokenizers_dir() / name / "tokenizer.json")).first;
  return it->second;
}

std::vector<int32_t> ids_of(const json& v) { return v.get<std::vector<int32_t>>(); }

std::string trace_label(size_t index, const json& entry) {
  std::string text = entry["text"].get<std::string>();
  if (text.size() > 60) text = text.substr(0, 60) + "...";
  return "entry " + std::to_string(index) + " (" + entry["tokenizer"].get<std::string>() + "): " + json(text).dump();
}

std::string stream_all(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  StreamDecoder stream(tok, skip_special);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  return out + stream.flush();
}

// ---- golden ---------------------------------------------------------------------------------------

TEST(TokenizerGolden, StringsEncodeAndDecodeExactly) {
  const json& strings = golden()["strings"];
  size_t checked = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const json& e = strings[i];
    SCOPED_TRACE(trace_label(i, e));
    const Tokenizer& tok = fixture(e["tokenizer"].get<std::string>());
    const std::string text = e["text"].get<std::string>();
    const std::vector<int32_t> expected = ids_of(e["ids"]);
    const std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(ids, expected);
    EXPECT_EQ(tok.decode(expected), e["decoded"].get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, 116u);
}

TEST(TokenizerGolden, ChatTextsWithLiteralSpecialTokens) {
  const json& chats = golden()["chat"];
  size_t checked = 0;
  for (size_t i = 0; i < chats.size(); ++i) {
    const json& e = chats[i];
    SCOPED_TRACE(trace_label(i, e));
    const Tokenizer& tok = fixture(e["tokenizer"].get<std::string>());
    EXPECT_EQ(tok.encode(e["text"].get<std::string>()), ids_of(e["ids"]));
    ++checked;
  }
  EXPECT_EQ(checked, 6u);
}

TEST(TokenizerGolden, AddSpecialTokensAppliesTemplate) {
  const Tokenizer& spm = fixture("spm");
  const std::vector<int32_t> plain = spm.encode("Hello world");
  std::vector<int32_t> with_bos = spm.encode("Hello world", true);
  ASSERT_EQ(with_bos.size(), plain.size() + 1);
  EXPECT_EQ(with_bos[0], 1);
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), plain);
  // No post-processor: nothing is added.
  EXPECT_EQ(fixture("bytelevel").encode("Hello world", true), fixture("bytelevel").encode("Hello world"));
}

TEST(TokenizerGolden, VocabularyAccessors) {
  const Tokenizer& bl = fixture("bytelevel");
  const Tokenizer& spm = fixture("spm");
  EXPECT_EQ(bl.vocab_size(), 4096);
  EXPECT_EQ(spm.vocab_size(), 4098);
  EXPECT_EQ(bl.token_to_id("<|im_start|>"), 1);
  EXPECT_EQ(spm.token_to_id("<end_of_turn>"), 4097);
  EXPECT_EQ(spm.id_to_token(1), "<s>");
  EXPECT_EQ(bl.id_to_token(-5), "");
  EXPECT_EQ(bl.id_to_token(1 << 20), "");
  EXPECT_FALSE(bl.token_to_id("no such token").has_value());
  EXPECT_TRUE(bl.is_special(2));
  EXPECT_FALSE(bl.is_special(100));
  EXPECT_TRUE(spm.is_special(4096));
  EXPECT_EQ(spm.decode(std::vector<int32_t>{1, 4096}, true), "");
  EXPECT_EQ(spm.decode(std::vector<int32_t>{4096, 1 << 20, -1}, false), "<start_of_turn>");
}

TEST(TokenizerGolden, ModelFixtureTokenizersLoad) {
  size_t loaded = 0;
  for (const auto& dir : fs::directory_iterator(fs::path(LMLAB_FIXTURES_DIR) / "models")) {
    const fs::path path = dir.path() / "tokenizer.json";
    if (!fs::exists(path)) continue;
    SCOPED_TRACE(path.string());
    const Tokenizer tok = Tokenizer::from_file(path);
    const std::string kind = tok.vocab_size() == fixture("spm").vocab_size() ? "spm" : "bytelevel";
    for (const json& e : golden()["strings"]) {
      if (e["tokenizer"] != kind) continue;
      EXPECT_EQ(tok.encode(e["text"].get<std::string>()), ids_of(e["ids"])) << e["text"];
    }
    ++loaded;
  }
  EXPECT_GE(loaded, 1u);
}

// ---- streaming ------------------------------------------------------------------------------------

// encode_at_most: the server's bound on a prompt. Below the limit it is encode(); past it, the first limit + 1
// ids of encode(), with the special-token post-processor applied as encode() applies it.
TEST(TokenizerBounded, EncodeAtMostIsAPrefixOfEncode) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "def f" + std::to_string(i) + "(x):\n    return x * " + std::to_string(i) + "\n";
  for (const auto& entry : std::filesystem::directory_iterator(tokenizers_dir())) {
    if (!entry.is_directory()) continue;
    const Tokenizer& tok = fixture(entry.path().filename().string());
    for (bool special : {false, true}) {
      const std::vector<int32_t> all = tok.encode(text, special);
      ASSERT_GT(all.size(), 100u);
      EXPECT_EQ(tok.encode_at_most(text, special, static_cast<int64_t>(all.size())), all) << entry.path();
      EXPECT_EQ(tok.encode_at_most(text, special, 1 << 20), all) << entry.path();
      for (int64_t limit : {0, 1, 7, 100}) {
        const std::vector<int32_t> got = tok.encode_at_most(text, special, limit);
        ASSERT_EQ(static_cast<int64_t>(got.size()), limit + 1) << entry.path() << " limit " << limit;
        if (!special) EXPECT_TRUE(std::equal(got.begin(), got.end(), all.begin())) << entry.path();
      }
    }
  }
}

TEST(TokenizerStream, PushOneByOneReproducesDecode) {
  const json& strings = golden()["strings"];
  size_t checked = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const json& e = strings[i];
    SCOPED_TRACE(trace_label(i, e));
    const Tokenizer& tok = fixture(e["tokenizer"].get<std::string>());
    const std::vector<int32_t> ids = ids_of(e["ids"]);
    for (bool skip : {false, true}) EXPECT_EQ(stream_all(tok, ids, skip), tok.decode(ids, skip)) << "skip=" << skip;
    ++checked;
  }
  EXPECT_EQ(checked, 116u);
}

TEST(TokenizerStream, HoldsBackIncompleteCharacters) {
  for (const char* name : {"bytelevel", "spm"}) {
    SCOPED_TRACE(name);
    const Tokenizer& tok = fixture(name);
    const std::string text = "日本語 😀 ok 𝔘鑫龘";  // the last three are byte tokens (spm) or byte pieces
    const std::vector<int32_t> ids = tok.encode(text);
    StreamDecoder stream(tok, false);
    std::string out;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(tok::utf8_valid(piece));
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "emitted a partial character";
      out += piece;
    }
    out += stream.flush();
    EXPECT_EQ(out, tok.decode(ids));
  }
}

TEST(TokenizerStream, FlushEmitsTruncatedTailAsReplacement) {
  const Tokenizer& tok = fixture("spm");
  // U+1D518 is four byte-fallback tokens in this vocabulary; stop after three of them.
  std::vector<int32_t> ids = tok.encode("a\U0001D518");  // MATHEMATICAL FRAKTUR CAPITAL U
  ASSERT_GE(ids.size(), 4u);
  ASSERT_TRUE(tok.id_to_token(ids.back()).starts_with("<0x")) << tok.id_to_token(ids.back());
  ids.pop_back();
  StreamDecoder stream(tok, true);
  std::string out;
  for (int32_t id : ids) out += stream.push(id);
  EXPECT_EQ(out, "a");
  out += stream.flush();
  EXPECT_EQ(out, tok.decode(ids, true));
  EXPECT_EQ(out, "a\uFFFD\uFFFD\uFFFD");
}

// ---- errors ---------------------------------------------------------------------------------------

std::string bytelevel_json_text() {
  std::ifstream in(tokenizers_dir() / "bytelevel" / "tokenizer.json");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Expects from_json_text to throw lmlab::Error of `kind` whose text contains `needle`.
void expect_load_error(const std::string& text, ErrorKind kind, const std::string& needle) {
  try {
    (void)Tokenizer::from_json_text(text, "tokenizer.json");
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}

std::string edited(const std::function<void(json&)>& edit) {
  json j = json::parse(bytelevel_json_text());
  edit(j);
  return j.dump();
}

TEST(TokenizerErrors, MalformedJson) {
  expect_load_error("{\"model\": ", ErrorKind::model_format, "invalid JSON");
  expect_load_error("[1, 2]", ErrorKind::model_format, "top level");
  expect_load_error("", ErrorKind::model_format, "invalid JSON");
}

TEST(TokenizerErrors, NamesTheFieldAtFault) {
  expect_load_error(edited([](json& j) { j["model"]["type"] = "WordPiece"; }), ErrorKind::unsupported,
                    "model.type 'WordPiece' is not supported");
  expect_load_error(edited([](json& j) { j.erase("model"); }), ErrorKind::model_format, "model is missing");
  expect_load_error(edited([](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Foo"; }),
                    ErrorKind::unsupported, "pre_tokenizer.pretokenizers[1].type 'Foo' is not supported");
  expect_load_error(edited([](json& j) {
                      j["pre_tokenizer"] = {{"type", "Foo"}};
                    }),
                    ErrorKind::unsupported, "pre_tokenizer.type 'Foo' is not supported");
  expect_load_error(edited([](json& j) {
                      j["normalizer"] = {{"type", "Precompiled"}};
                    }),
                    ErrorKind::unsupported, "normalizer.type 'Precompiled' is not supported");
  expect_load_error(edited([](json& j) {
                      j["decoder"] = {{"type", "CTC"}};
                    }),
                    ErrorKind::unsupported, "decoder.type 'CTC' is not supported");
  expect_load_error(edited([](json& j) {
                      j["post_processor"] = {{"type", "Nope"}};
                    }),
                    ErrorKind::unsupported, "post_processor.type 'Nope' is not supported");
  expect_load_error(edited([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; }),
                    ErrorKind::model_format, "pre_tokenizer.pretokenizers[0].pattern");
  expect_load_error(edited([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; }),
                    ErrorKind::unsupported, "pre_tokenizer.pretokenizers[0].behavior 'Sideways'");
  expect_load_error(edited([](json& j) {
                      j["model"]["merges"][3] = json::array({"Ġ", "no-such-token"});
                    }),
                    ErrorKind::model_format, "model.merges[3] token 'no-such-token' is not in model.vocab");
  expect_load_error(edited([](json& j) { j["model"]["merges"][0] = "nospace"; }), ErrorKind::model_format,
                    "model.merges[0]");
  expect_load_error(edited([](json& j) { j["model"]["vocab"] = json::array(); }), ErrorKind::model_format,
                    "model.vocab must be an object");
  expect_load_error(edited([](json& j) { j["model"]["dropout"] = 0.1; }), ErrorKind::unsupported, "model.dropout");
  expect_load_error(edited([](json& j) { j["added_tokens"][0]["content"] = 7; }), ErrorKind::model_format,
                    "added_tokens[0].content must be a string");
  expect_load_error(edited([](json& j) { j["model"]["unk_token"] = "<nope>"; }), ErrorKind::model_format,
                    "model.unk_token '<nope>'");
}

TEST(TokenizerErrors, MissingFileAndInvalidUtf8Input) {
  try {
    (void)Tokenizer::from_file("/nonexistent/tokenizer.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
  }
  try {
    (void)fixture("bytelevel").encode("ab\xC3(");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(e.what()).find("byte offset 2"), std::string::npos) << e.what();
  }
}

// ---- components -----------------------------------------------------------------------------------

std::vector<std::string> pre_tokenize(const json& config, const std::string& text, bool at_start = true) {
  const auto pre = tok::make_pre_tokenizer(config, tok::JsonCtx{"test.json", "pre_tokenizer"});
  std::vector<tok::Piece> pieces{tok::Piece{text, -1, at_start}};
  pre->pre_tokenize(pieces);
  std::vector<std::string> out;
  for (const auto& p : pieces) out.push_back(p.text);
  return out;
}

using Strings = std::vector<std::string>;

TEST(TokenizerPreTokenizers, ByteLevelWithRegexAndPrefixSpace) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  EXPECT_EQ(pre_tokenize(bl, "Hello my friend, how is your day going?"),
            (Strings{"ĠHello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"}));
  EXPECT_EQ(pre_tokenize(bl, "I'm  ok\n"), (Strings{"ĠI", "'m", "Ġ", "Ġok", "Ċ"}));
  const json no_prefix = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  EXPECT_EQ(pre_tokenize(no_prefix, "Hi 42"), (Strings{"Hi", "Ġ42"}));
  const json no_regex = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  EXPECT_EQ(pre_tokenize(no_regex, "a b\t\xC3\xA9"), (Strings{"aĠbĉÃ©"}));
}

TEST(TokenizerPreTokenizers, Metaspace) {
  const json always = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}};
  EXPECT_EQ(pre_tokenize(always, "Hey friend!"), (Strings{"▁Hey", "▁friend!"}));
  EXPECT_EQ(pre_tokenize(always, "Hey   friend!"), (Strings{"▁Hey", "▁", "▁", "▁friend!"}));
  const json first = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", true}};
  EXPECT_EQ(pre_tokenize(first, "Hey friend!", true), (Strings{"▁Hey", "▁friend!"}));
  EXPECT_EQ(pre_tokenize(first, "Hey friend!", false), (Strings{"Hey", "▁friend!"}));
  const json never = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "never"}, {"split", false}};
  EXPECT_EQ(pre_tokenize(never, "Hey friend!"), (Strings{"Hey▁friend!"}));
  const json legacy = {{"type", "Metaspace"}, {"replacement", "_"}, {"add_prefix_space", true}};
  EXPECT_EQ(pre_tokenize(legacy, "a b"), (Strings{"_a", "_b"}));
}

TEST(TokenizerPreTokenizers, WhitespaceDigitsPunctuation) {
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "Hey man!"), (Strings{"Hey", "man", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "How are you doing?"), (Strings{"How", "are", "you", "doing", "?"}));
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "\n"), Strings{});
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, "Hey, man, Good?"), (Strings{"Hey,", "man,", "Good?"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "Hey 123 friend!"),
            (Strings{"Hey ", "1", "2", "3", " friend!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "Hey 123 friend!"),
            (Strings{"Hey ", "123", " friend!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}, {"behavior", "Isolated"}}, "Hey friend!     How are you?!?"),
            (Strings{"Hey friend", "!", "     How are you", "?", "!", "?"}));
  EXPECT_EQ(pre_tokenize({{"type", "BertPreTokenizer"}}, "Hey friend!  How?"),
            (Strings{"Hey", "friend", "!", "How", "?"}));
}

TEST(TokenizerPreTokenizers, SplitBehaviors) {
  auto split = [](const std::string& behavior, bool invert = false, const std::string& pat = " ") {
    return json{{"type", "Split"}, {"pattern", {{"String", pat}}}, {"behavior", behavior}, {"invert", invert}};
  };
  const std::string text = "How are you doing?";
  EXPECT_EQ(pre_tokenize(split("Removed"), text), (Strings{"How", "are", "you", "doing?"}));
  EXPECT_EQ(pre_tokenize(split("Isolated"), text), (Strings{"How", " ", "are", " ", "you", " ", "doing?"}));
  EXPECT_EQ(pre_tokenize(split("MergedWithPrevious"), text), (Strings{"How ", "are ", "you ", "doing?"}));
  EXPECT_EQ(pre_tokenize(split("MergedWithNext"), text), (Strings{"How", " are", " you", " doing?"}));
  EXPECT_EQ(pre_tokenize(split("Contiguous", false, "-"), "The-final--countdown"),
            (Strings{"The", "-", "final", "--", "countdown"}));
  EXPECT_EQ(pre_tokenize(split("Removed", true), "Hello Hello Hello"), (Strings{" ", " "}));
  const json regex = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Removed"}, {"invert", false}};
  EXPECT_EQ(pre_tokenize(regex, "a \t b\u3000c"), (Strings{"a", "b", "c"}));
  // Oniguruma's \s does not include U+180E (PCRE2's does): the pattern is translated.
  EXPECT_EQ(pre_tokenize(regex, "a\u180Eb"), (Strings{"a\u180Eb"}));
}

std::string normalize(const json& config, const std::string& text) {
  return tok::make_normalizer(config, tok::JsonCtx{"test.json", "normalizer"})->normalize(text);
}

TEST(TokenizerNormalizers, AllTypes) {
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\u0301"), "\u00E9");
  EXPECT_EQ(normalize({{"type", "NFD"}}, "\u00E9"), "e\u0301");
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\uFB01 \u2460"), "fi 1");
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "\u00C5"), "A\u030A");
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "ÀÉ ΣΑΣ İ"), "àé σασ i\u0307");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, " \u3000 a b  "), "a b  ");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, "  a b \n"), "a b");
  const json accents = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFD"}}, {{"type", "StripAccents"}}}}};
  EXPECT_EQ(normalize(accents, "café naïve"), "cafe naive");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}}, "a    b c"), "a b c");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "▁"}}, "x"), "▁x");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "▁"}}, ""), "");
  EXPECT_EQ(normalize({{"type", "ByteLevel"}}, "a b"), "aĠb");
}

std::string decode_tokens(const json& config, std::vector<std::string> tokens) {
  tok::make_decoder(config, tok::JsonCtx{"test.json", "decoder"})->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

TEST(TokenizerDecoders, AllTypes) {
  const json meta = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(decode_tokens(meta, {"▁Hey", "▁friend!"}), "Hey friend!");
  const json meta_never = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "never"}};
  EXPECT_EQ(decode_tokens(meta_never, {"▁Hey", "▁friend!"}), " Hey friend!");
  EXPECT_EQ(decode_tokens({{"type", "BPEDecoder"}, {"suffix", "</w>"}}, {"My</w>", "na", "me</w>"}), "My name");
  EXPECT_EQ(decode_tokens({{"type", "Strip"}, {"content", "x"}, {"start", 2}, {"stop", 1}}, {"xxxaxx", "yx"}), "xaxy");
  // An invalid run of byte tokens becomes one U+FFFD per byte; a valid one its characters.
  EXPECT_EQ(decode_tokens({{"type", "ByteFallback"}}, {"<0xE3>", "<0x81>", "a", "<0xE3>", "<0x81>", "<0x82>"}),
            "\uFFFD\uFFFDaあ");
  // Byte-level: bytes of all tokens joined, invalid sequences replaced like from_utf8_lossy.
  EXPECT_EQ(decode_tokens({{"type", "ByteLevel"}}, {"ãģ", "Ĥ", "Ġx", "ã", "!"}), "あ x\uFFFD!");
  EXPECT_EQ(decode_tokens({{"type", "ByteLevel"}}, {"<|im_end|>", "\u4E00"}), "<|im_end|>\u4E00");
  EXPECT_EQ(decode_tokens({{"type", "Replace"}, {"pattern", {{"String", "_"}}}, {"content", " "}}, {"a_b"}), "a b");
}

// A tiny BPE tokenizer for model and added-token features.
std::string mini_json(const json& model_extra, const json& added = json::array(), const json& normalizer = nullptr,
                      const json& pre = json{{"type", "WhitespaceSplit"}}) {
  json vocab = json::object();
  int id = 0;
  for (const char* t :
       {"<unk>", "a", "b", "c", "h", "i", "x", " ", "ab", "abc", "##b", "##c", "##bc", "d</w>", "ad</w>"})
    vocab[t] = id++;
  json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}, {"unk_token", "<unk>"}};
  model.update(model_extra);
  return json{{"model", model}, {"added_tokens", added}, {"normalizer", normalizer}, {"pre_tokenizer", pre}}.dump();
}

TEST(TokenizerBpe, MergeFormatsAndOptions) {
  using Ids = std::vector<int32_t>;
  const auto strings = Tokenizer::from_json_text(mini_json({{"merges", json::array({"a b", "ab c"})}}));
  const auto pairs = Tokenizer::from_json_text(
      mini_json({{"merges", json::array({json::array({"a", "b"}), json::array({"ab", "c"})})}}));
  EXPECT_EQ(strings.encode("abc"), Ids{9});
  EXPECT_EQ(pairs.encode("abc ab ba"), (Ids{9, 8, 2, 1}));
  // ignore_merges: a word found in the vocabulary is taken whole.
  EXPECT_EQ(Tokenizer::from_json_text(mini_json(json::object())).encode("abc"), (Ids{1, 2, 3}));
  EXPECT_EQ(Tokenizer::from_json_text(mini_json({{"ignore_merges", true}})).encode("abc"), Ids{9});
  // Unknown characters: fused into one <unk> or one each.
  EXPECT_EQ(Tokenizer::from_json_text(mini_json({{"fuse_unk", true}})).encode("zzaqq"), (Ids{0, 1, 0}));
  EXPECT_EQ(Tokenizer::from_json_text(mini_json({{"fuse_unk", false}})).encode("zza"), (Ids{0, 0, 1}));
  // continuing_subword_prefix: "a" "##b" "##c" -> merge "##b ##c" gives "##bc".
  const auto prefixed =
      Tokenizer::from_json_text(mini_json({{"continuing_subword_prefix", "##"}, {"merges", json::array({"##b ##c"})}}));
  EXPECT_EQ(prefixed.encode("abc"), (Ids{1, 12}));
  // end_of_word_suffix: the last character carries "</w>".
  const auto suffixed =
      Tokenizer::from_json_text(mini_json({{"end_of_word_suffix", "</w>"}, {"merges", json::array({"a d</w>"})}}));
  EXPECT_EQ(suffixed.encode("ad"), Ids{14});
}

TEST(TokenizerAddedTokens, Flags) {
  using Ids = std::vector<int32_t>;
  auto added = [](const std::string& content, int id, json flags) {
    json t = {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", false}, {"special", true}};
    t.update(flags);
    return t;
  };
  const json no_pre = nullptr;
  // lstrip swallows the spaces before, rstrip those after.
  const auto l = Tokenizer::from_json_text(
      mini_json(json::object(), json::array({added("<m>", 20, {{"lstrip", true}})}), nullptr, no_pre));
  EXPECT_EQ(l.encode("hi  <m> x"), (Ids{4, 5, 20, 7, 6}));
  const auto r = Tokenizer::from_json_text(
      mini_json(json::object(), json::array({added("<m>", 20, {{"rstrip", true}})}), nullptr, no_pre));
  EXPECT_EQ(r.encode("hi <m>  x"), (Ids{4, 5, 7, 20, 6}));
  // single_word: only between non-word characters. A token the model knows keeps the model's id.
  const auto sw = Tokenizer::from_json_text(mini_json(
      json::object(), json::array({added("hi", 21, {{"single_word", true}, {"special", false}})}), nullptr, no_pre));
  EXPECT_EQ(sw.encode("hi chi"), (Ids{21, 7, 3, 4, 5}));
  // Longest match first.
  const auto longest = Tokenizer::from_json_text(
      mini_json(json::object(), json::array({added("<a>", 22, json::object()), added("<a><b>", 23, json::object())}),
                nullptr, no_pre));
  EXPECT_EQ(longest.encode("<a><b><a>"), (Ids{23, 22}));
  // normalized=true tokens are matched after normalization, normalized=false ones before.
  const json lower = {{"type", "Lowercase"}};
  const auto norm = Tokenizer::from_json_text(mini_json(
      json::object(),
      json::array({added("hix", 24, {{"normalized", true}, {"special", false}}), added("<X>", 25, json::object())}),
      lower, no_pre));
  EXPECT_EQ(norm.encode("HIX<X>"), (Ids{24, 25}));
  EXPECT_EQ(norm.encode("<x>"), (Ids{0, 6, 0}));
  EXPECT_EQ(norm.decode(Ids{24, 25}, true), "hix");
}

TEST(TokenizerPostProcessors, TemplateRobertaSequence) {
  using Ids = std::vector<int32_t>;
  json base = json::parse(mini_json(json::object()));
  base["post_processor"] = {{"type", "TemplateProcessing"},
                            {"single",
                             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
                            {"special_tokens",
                             {{"<s>", {{"id", "<s>"}, {"ids", {30}}, {"tokens", {"<s>"}}}},
                              {"</s>", {{"id", "</s>"}, {"ids", {31}}, {"tokens", {"</s>"}}}}}}};
  EXPECT_EQ(Tokenizer::from_json_text(base.dump()).encode("ab", true), (Ids{30, 1, 2, 31}));
  base["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}}, {{"type", "RobertaProcessing"}, {"cls", {"<s>", 40}}, {"sep", {"</s>", 41}}}}}};
  EXPECT_EQ(Tokenizer::from_json_text(base.dump()).encode("ab", true), (Ids{40, 1, 2, 41}));
  EXPECT_EQ(Tokenizer::from_json_text(base.dump()).encode("ab", false), (Ids{1, 2}));
}

// ---- fuzz -----------------------------------------------------------------------------------------

std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> kPieces = {"a",           "Z",       " ",
                                                   "  ",          "\n",      "\r\n",
                                                   "\t",          "'s",      "1",
                                                   "2024",        ".",       "=>",
                                                   "é",           "e\u0301", "\u00C5",
                                                   "A\u030A",     "日本",    "語",
                                                   "😀",           "🚀",       "\u200D",
                                                   "\u3000",      "▁",       "<|im_start|>",
                                                   "<|im_end|>",  "<s>",     "<start_of_turn>",
                                                   "<|endoftext", "ﬁ",       "Ω",
                                                   "\u0085",      "def",     "_x"};
  std::uniform_int_distribution<int> mode(0, 3), len(0, 24), byte(0, 255),
      piece(0, static_cast<int>(kPieces.size()) - 1);
  std::string s;
  const int n = len(rng);
  const int m = mode(rng);
  for (int k = 0; k < n; ++k) {
    if (m == 0) {
      s += static_cast<char>(byte(rng));  // arbitrary bytes, mostly invalid UTF-8
    } else if (m == 1 && k % 5 == 4) {
      s += static_cast<char>(0x80 + byte(rng) % 0x40);  // stray continuation bytes inside valid text
    } else {
      s += kPieces[static_cast<size_t>(piece(rng))];
    }
  }
  return s;
}

TEST(TokenizerFuzz, RandomBytesNeverCrashAndRoundTrip) {
  const Tokenizer& bl = fixture("bytelevel");
  const Tokenizer& spm = fixture("spm");
  std::mt19937 rng(20240611);
  size_t valid = 0, invalid = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const std::string s = random_text(rng);
    SCOPED_TRACE("iteration " + std::to_string(iter) + ": " + json(tok::utf8_lossy(s)).dump());
    if (!tok::utf8_valid(s)) {
      ++invalid;
      for (const Tokenizer* t : {&bl, &spm}) {
        try {
          (void)t->encode(s);
          ADD_FAILURE() << "invalid UTF-8 was accepted";
        } catch (const Error& e) {
          EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
        }
      }
      continue;
    }
    ++valid;
    const std::vector<int32_t> ids = bl.encode(s);
    EXPECT_EQ(bl.decode(ids), tok::normalize(s, tok::NormalForm::nfc));
    EXPECT_EQ(stream_all(bl, ids, false), bl.decode(ids));
    const std::vector<int32_t> spm_ids = spm.encode(s, true);
    const std::string spm_text = spm.decode(spm_ids, true);
    EXPECT_TRUE(tok::utf8_valid(spm_text));
    if (s.find('<') == std::string::npos && s.find("▁") == std::string::npos) {
      EXPECT_EQ(spm_text, s);
    }
    EXPECT_EQ(stream_all(spm, spm_ids, true), spm_text);
  }
  EXPECT_GT(valid, 1000u);
  EXPECT_GT(invalid, 300u);
}

TEST(TokenizerFuzz, RandomIdsDecodeToValidUtf8) {
  std::mt19937 rng(7);
  for (const char* name : {"bytelevel", "spm"}) {
    const Tokenizer& tok = fixture(name);
    std::uniform_int_distribution<int32_t> id(-3, tok.vocab_size() + 3), len(0, 20);
    for (int iter = 0; iter < 1000; ++iter) {
      std::vector<int32_t> ids(static_cast<size_t>(len(rng)));
      for (auto& v : ids) v = id(rng);
      const std::string text = tok.decode(ids);
      ASSERT_TRUE(tok::utf8_valid(text)) << name;
      StreamDecoder stream(tok, false);
      std::string streamed;
      for (int32_t v : ids) streamed += stream.push(v);
      streamed += stream.flush();
      EXPECT_TRUE(tok::utf8_valid(streamed)) << name;
    }
  }
}

}  // namespace
}  // namespace lmlab
