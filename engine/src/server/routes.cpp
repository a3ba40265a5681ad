// The server's endpoints: /health, /v1/models, /v1/completions, /v1/chat/completions, /metrics.
// Handlers never let an exception out: lmlab::Error becomes its OpenAI error body, anything else a 500.
// Generations (streamed or not) run inside chunked content providers, where a failed write means the client
// hung up and cancels the generation.
#include <chrono>
#include <nlohmann/json.hpp>

#include "lmlab/options.h"
#include "server/answer_stream.h"
#include "server/request.h"
#include "server/responses.h"
#include "server/server_state.h"
#include "util/device_fault.h"

namespace lmlab::server {

namespace {

constexpr const char* kJson = "application/json";
struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {{"/health", "GET"},
                             {"/v1/models", "GET"},
                             {"/v1/completions", "POST"},
                             {"/v1/chat/completions", "POST"},
                             {"/metrics", "GET"}};

using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

Handler guarded(ServerState& st, Handler h) {
  return [&st, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    try {
      h(req, res);
    } catch (const Error& e) {
      st.metrics.requests_errors_total.fetch_add(1);
      reply_error(res, http_error_from(e));
    } catch (const std::exception& e) {
      st.metrics.requests_errors_total.fetch_add(1);
      reply_error(res, http_error_internal(e.what()));
    }
  };
}

void handle_models(const LoadedModel& m, httplib::Response& res) {
  nlohmann::json model = {{"id", m.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "lmlab"}};
  res.set_content(nlohmann::json{{"object", "list"}, {"data", {model}}}.dump(), kJson);
}

void stream_generation(ServerState& st, LoadedModel& m, GenerationRequest rq, Endpoint ep, httplib::Response& res,
                       std::shared_ptr<Admission> admission) {
  auto active = std::make_shared<ActiveRequest>(st.metrics);
  auto rqp = std::make_shared<const GenerationRequest>(std::move(rq));
  const ResponseIds ids = new_response_ids(ep, m.model_id);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [&st, &m, ids, rqp, active, admission](
                                                            size_t, httplib::DataSink& sink) {
    auto write = [&](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
    try {
      AnswerStream answer(*rqp, ids, m.model->tokenizer());
      if (!write(answer.start())) {
        st.metrics.requests_cancelled_total.fetch_add(1);
        return false;
      }
      const GenerationOutcome out = run_generation(
          m.scheduler, st.slots, st.metrics, *rqp,
          [&](const std::string& text, std::span<const LoggedToken> tokens) { return write(answer.push(text, tokens)); });
      if (out.cancelled) return false;  // the client is gone: nothing more to say
      if (out.shutdown) {
        st.metrics.requests_errors_total.fetch_add(1);
        write(sse_error(error_body(http_error_shutting_down())));
      } else {
        write(answer.finish(out));
      }
    } catch (const Error& e) {
      st.metrics.requests_errors_total.fetch_add(1);
      write(sse_error(error_body(http_error_from(e))));
    } catch (const std::exception& e) {
      st.metrics.requests_errors_total.fetch_add(1);
      write(sse_error(error_body(http_error_internal(e.what()))));
    }
    write(kSseDone);
    sink.done();
    return true;
  });
}

// 429 / 503 answers carry Retry-After (seconds), as HTTP and OpenAI's clients expect.
void reply_retry_later(ServerState& st, httplib::Response& res, const HttpError& e) {
  st.metrics.requests_errors_total.fetch_add(1);
  reply_error(res, e);
  res.set_header("Retry-After", "1");
}

// A non-streamed answer is sent chunked so that a client that hangs up is noticed as it is for streams:
// while generating, a space (JSON allows leading whitespace) goes out at most once a second, and a failed
// write cancels the generation. The status is 200 from the first byte, so an error found mid-generation
// (shutdown, internal) arrives as an error body under 200; errors found before generating keep their status.
void complete_generation(ServerState& st, LoadedModel& m, GenerationRequest rq, Endpoint ep, httplib::Response& res,
                         std::shared_ptr<Admission> admission) {
  auto active = std::make_shared<ActiveRequest>(st.metrics);
  auto rqp = std::make_shared<const GenerationRequest>(std::move(rq));
  const ResponseIds ids = new_response_ids(ep, m.model_id);
  res.set_chunked_content_provider(kJson, [&st, &m, ids, rqp, active, admission](size_t, httplib::DataSink& sink) {
    using Clock = std::chrono::steady_clock;
    Clock::time_point last_write = Clock::now();
    auto heartbeat = [&](const std::string&, std::span<const LoggedToken>) {
      if (Clock::now() - last_write < std::chrono::seconds(1)) return true;
      last_write = Clock::now();
      return sink.write(" ", 1);
    };
    std::string body;
    try {
      const GenerationOutcome out = run_generation(m.scheduler, st.slots, st.metrics, *rqp, heartbeat);
      if (out.cancelled) return false;  // the client is gone
      if (out.shutdown) st.metrics.requests_errors_total.fetch_add(1);
      body = out.shutdown ? error_body(http_error_shutting_down()) : completion_body(*rqp, ids, out, m.model->tokenizer());
    } catch (const Error& e) {
      st.metrics.requests_errors_total.fetch_add(1);
      body = error_body(http_error_from(e));
    } catch (const std::exception& e) {
      st.metrics.requests_errors_total.fetch_add(1);
      body = error_body(http_error_internal(e.what()));
    }
    sink.write(body.data(), body.size());
    sink.done();
    return true;
  });
}

void handle_generation(ServerState& st, const httplib::Request& req, httplib::Response& res, Endpoint ep) {
  st.metrics.requests_total.fetch_add(1);
  if (st.draining) return reply_retry_later(st, res, http_error_shutting_down());
  LoadedModel* m = st.loaded.load();
  if (!m) return reply_retry_later(st, res, http_error_loading());
  // After a device fault every forward fails: say so at once, without Retry-After (only a restart helps).
  if (const std::string fault = device_fault(); !fault.empty()) {
    st.metrics.requests_errors_total.fetch_add(1);
    return reply_error(res, http_error_device_lost(fault));
  }
  // Admission before parsing: a full server spends nothing on the body (tokenizing may be the costly part).
  std::shared_ptr<Admission> admission = Admission::try_enter(st);
  if (!admission) return reply_retry_later(st, res, http_error_busy(st.options.parallel, st.options.queue));
  RequestContext ctx{m->model.get(), m->chat_template ? &*m->chat_template : nullptr, m->chat_template_error,
                     st.options.max_tokens, m->tool_format};
  GenerationRequest rq = parse_generation_request(req.body, ep, ctx);
  if (rq.stream) return stream_generation(st, *m, std::move(rq), ep, res, std::move(admission));
  complete_generation(st, *m, std::move(rq), ep, res, std::move(admission));
}

}  // namespace

void reply_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  res.set_content(error_body(e), kJson);
}

const char* route_method(const std::string& path) {
  for (const Route& r : kRoutes)
    if (path == r.path) return r.method;
  return nullptr;
}

void register_routes(httplib::Server& http, ServerState& st) {
  // The engine options the model runs with, from the option table: what a client needs to tell configs apart.
  // While the model loads: /health 503 {"status": "loading"} (a readiness probe), the model routes 503 with
  // Retry-After, /metrics the server's counters. After a device fault: /health 503 {"status": "error"} and the
  // generation routes 503 naming it.
  http.Get("/health", guarded(st, [&st](const httplib::Request&, httplib::Response& res) {
             const LoadedModel* m = st.loaded.load();
             if (!m) {
               res.status = 503;
               res.set_header("Retry-After", "1");
               res.set_content(nlohmann::json{{"status", "loading"}}.dump(), kJson);
               return;
             }
             nlohmann::json body = {{"status", "ok"},
                                    {"model", m->model_id},
                                    {"options", nlohmann::json::parse(options_to_json_text(m->model->options()))}};
             if (const std::string fault = device_fault(); !fault.empty()) {  // a liveness probe restarts it
               res.status = 503;
               body["status"] = "error";
               body["error"] = "device fault: " + fault;
             }
             res.set_content(body.dump(), kJson);
           }));
  http.Get("/v1/models", guarded(st, [&st](const httplib::Request&, httplib::Response& res) {
             const LoadedModel* m = st.loaded.load();
             if (!m) return reply_retry_later(st, res, http_error_loading());
             handle_models(*m, res);
           }));
  http.Post("/v1/completions", guarded(st, [&st](const httplib::Request& req, httplib::Response& res) {
              handle_generation(st, req, res, Endpoint::completions);
            }));
  http.Post("/v1/chat/completions", guarded(st, [&st](const httplib::Request& req, httplib::Response& res) {
              handle_generation(st, req, res, Endpoint::chat);
            }));
  http.Get("/metrics", guarded(st, [&st](const httplib::Request&, httplib::Response& res) {
             const LoadedModel* m = st.loaded.load();
             res.set_content(render_metrics(st.metrics, m ? m->model->counters() : ModelCounters{}),
                             "text/plain; version=0.0.4");
           }));
}

}  // namespace lmlab::server
