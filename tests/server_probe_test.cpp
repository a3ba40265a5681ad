// Server startup probe findings (issue 14), each on a model this test writes: a port already in use is
// refused (no SO_REUSEPORT sharing), a model id that is not UTF-8 is refused at startup instead of a 500 on
// /v1/models, and a chat template that fails to load is named in the chat 400 instead of "no chat template".
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "lmlab/error.h"
#include "lmlab/model.h"
#include "lmlab/server.h"
#include "tiny_model.h"

namespace lmlab {
namespace {

ServerOptions any_port() {
  ServerOptions o;
  o.port = 0;
  o.max_tokens = 4;
  return o;
}

TEST(ServerProbe, APortInUseIsRefused) {
  test::TinyModel tiny;
  auto model = Model::load(tiny.dir());
  Server first(model, any_port());
  ServerOptions same = any_port();
  same.port = first.bound_port();
  try {
    Server second(model, same);
    FAIL() << "a second server bound port " << same.port;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    EXPECT_NE(e.where().find(std::to_string(same.port)), std::string::npos) << e.what();
  }
}

TEST(ServerProbe, ANonUtf8ModelIdIsRefusedAtStartup) {
  test::TinyModel tiny("m\xff\xfe");
  auto model = Model::load(tiny.dir());
  try {
    Server s(model, any_port());
    FAIL() << "served a non-UTF-8 model id";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_input);
    EXPECT_EQ(e.where(), "model directory name");
  }
  ServerOptions o = any_port();
  o.model_id = "bad\xc3";
  EXPECT_THROW(Server(model, o), Error);
  o.model_id = "tiny-\xc3\xa9";  // valid UTF-8 is served as given
  Server ok(model, o);
  std::thread t([&] { ok.listen(); });
  httplib::Client c("127.0.0.1", ok.bound_port());
  auto r = c.Get("/v1/models");
  ok.stop();
  t.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(nlohmann::json::parse(r->body)["data"][0]["id"], "tiny-\xc3\xa9");
}

TEST(ServerProbe, ATemplateThatFailsToLoadIsNamedInTheChat400) {
  test::TinyModel tiny;
  std::ofstream(tiny.dir() / "chat_template.jinja") << "{% for m in messages %}{{ m.content }";
  auto model = Model::load(tiny.dir());
  Server s(model, any_port());
  EXPECT_NE(s.chat_template_error().find("chat_template.jinja"), std::string::npos) << s.chat_template_error();
  std::thread t([&] { s.listen(); });
  httplib::Client c("127.0.0.1", s.bound_port());
  auto chat = c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})", "application/json");
  auto plain = c.Post("/v1/completions", R"({"prompt":"def f():","max_tokens":2})", "application/json");
  s.stop();
  t.join();
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 400);
  const auto err = nlohmann::json::parse(chat->body)["error"];
  EXPECT_EQ(err["param"], "messages");
  const std::string msg = err["message"];
  EXPECT_NE(msg.find("chat_template.jinja"), std::string::npos) << msg;
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200) << "completions still work without a template";
}

}  // namespace
}  // namespace lmlab
