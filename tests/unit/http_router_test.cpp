// Hermetic tests of the HTTP server's router (http/): which handler answers a method and path,
// path parameters, lanes, and the JSON error bodies. No sockets, no threads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "workflowd/http/router.hpp"

namespace workflowd::http {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

Request Req(std::string method, std::string path, std::string body = "") {
  Request request;
  request.method = std::move(method);
  request.path = std::move(path);
  request.body = std::move(body);
  return request;
}

Handler Named(std::string name) {
  return [name](const Request& req) {
    json params = req.path_params;
    return Response{.body = json{{"route", name}, {"params", params}}.dump()};
  };
}

std::string RouteOf(const Router& router, std::string method, std::string path) {
  const Response res = router.Respond(Req(std::move(method), std::move(path)));
  if (res.status != 200) return "status " + std::to_string(res.status);
  return json::parse(res.body)["route"];
}

TEST(HttpRouterTest, LiteralAndPlaceholderSegments) {
  Router router;
  router.Add("GET", "/", Named("root"));
  router.Add("GET", "/api/v1/workflows", Named("list"));
  router.Add("GET", "/api/v1/workflows/:id", Named("get"));
  router.Add("GET", "/api/v1/workflows/:id/executions/:execution_id", Named("execution"));
  router.Add("GET", "/api/v1/openapi.json", Named("openapi"));
  router.Add("GET", "/trailing/", Named("trailing"));

  EXPECT_EQ(RouteOf(router, "GET", "/"), "root");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows"), "list");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows/wf-1"), "get");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows/wf-1/executions/ex 1"), "execution");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/openapi.json"), "openapi");
  EXPECT_EQ(RouteOf(router, "GET", "/trailing/"), "trailing");

  // A placeholder matches exactly one non-empty segment; literals match only themselves.
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows/"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows/wf-1/"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows/wf-1/executions"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/workflows/a/executions/b/c"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "/api/v1/openapiXjson"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "/trailing"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "/API/v1/workflows"), "status 404");
  EXPECT_EQ(RouteOf(router, "GET", "*"), "status 404");

  const Response res = router.Respond(Req("GET", "/api/v1/workflows/wf-1/executions/ex 1"));
  EXPECT_EQ(json::parse(res.body)["params"], json::parse(R"({"id":"wf-1","execution_id":"ex 1"})"));
}

TEST(HttpRouterTest, MethodsHeadAndTheFirstMatchingRoute) {
  Router router;
  router.Add("GET", "/items/:id", Named("get"));
  router.Add("DELETE", "/items/:id", Named("delete"));
  router.Add("GET", "/items/special", Named("special"));  // after the placeholder: never reached
  EXPECT_EQ(RouteOf(router, "GET", "/items/1"), "get");
  EXPECT_EQ(RouteOf(router, "HEAD", "/items/1"), "get");  // HEAD is answered by GET's route
  EXPECT_EQ(RouteOf(router, "DELETE", "/items/1"), "delete");
  EXPECT_EQ(RouteOf(router, "GET", "/items/special"), "get");
  EXPECT_EQ(RouteOf(router, "POST", "/items/1"), "status 404");
  EXPECT_EQ(RouteOf(router, "BREW", "/items/1"), "status 400");  // a method nobody knows
}

TEST(HttpRouterTest, LanesFollowTheRoute) {
  Router router;
  router.Add("GET", "/healthz", Named("health"), 2);
  router.Add("GET", "/metrics", Named("metrics"), 1);
  router.Add("POST", "/api/:id", Named("api"));
  EXPECT_EQ(router.LaneFor("GET", "/healthz"), 2U);
  EXPECT_EQ(router.LaneFor("HEAD", "/healthz"), 2U);
  EXPECT_EQ(router.LaneFor("GET", "/metrics"), 1U);
  EXPECT_EQ(router.LaneFor("POST", "/api/x"), 0U);
  EXPECT_EQ(router.LaneFor("POST", "/healthz"), 0U);  // no route: the default lane
  EXPECT_EQ(router.LaneFor("GET", "/nothing"), 0U);
}

TEST(HttpRouterTest, ErrorsGetJsonBodies) {
  Router router;
  router.Add("GET", "/throws", [](const Request&) -> Response {
    throw std::runtime_error("secret database detail");
  });
  router.Add("GET", "/throws-anything", [](const Request&) -> Response { throw 42; });
  router.Add("GET", "/empty-409", [](const Request&) { return Response{.status = 409}; });
  router.Add("GET", "/own-body", [](const Request&) {
    return Response{.status = 422, .content_type = "text/plain", .body = "mine"};
  });

  const Response missing = router.Respond(Req("GET", "/nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.content_type, "application/json");
  EXPECT_EQ(json::parse(missing.body), json::parse(R"({"error":{"code":"not_found",
      "message":"no route for GET /nope","details":{}}})"));

  for (const char* path : {"/throws", "/throws-anything"}) {
    const Response res = router.Respond(Req("GET", path));
    EXPECT_EQ(res.status, 500) << path;
    EXPECT_EQ(json::parse(res.body)["error"]["code"], "internal") << path;
    EXPECT_THAT(res.body, Not(HasSubstr("secret"))) << path;
  }

  const Response conflict = router.Respond(Req("GET", "/empty-409"));
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(json::parse(conflict.body)["error"]["code"], "http_409");

  const Response own = router.Respond(Req("GET", "/own-body"));
  EXPECT_EQ(own.status, 422);
  EXPECT_EQ(own.content_type, "text/plain");
  EXPECT_EQ(own.body, "mine");

  const Response bad = router.Respond(Req("BREW", "/"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json::parse(bad.body)["error"]["code"], "bad_request");

  // A path that is not UTF-8 cannot break the JSON of the error.
  const Response binary = router.Respond(Req("GET", std::string("/\xff\xfe")));
  EXPECT_EQ(binary.status, 404);
  EXPECT_TRUE(json::accept(binary.body)) << binary.body;
}

TEST(HttpRouterTest, ErrorResponseCodesAndMessages) {
  EXPECT_EQ(json::parse(ErrorResponse(408).body)["error"]["code"], "request_timeout");
  EXPECT_EQ(json::parse(ErrorResponse(413).body)["error"]["code"], "payload_too_large");
  EXPECT_EQ(json::parse(ErrorResponse(431).body)["error"]["code"], "headers_too_large");
  const json custom = json::parse(ErrorResponse(400, "malformed chunk").body)["error"];
  EXPECT_EQ(custom["code"], "bad_request");
  EXPECT_EQ(custom["message"], "malformed chunk");
  EXPECT_EQ(ErrorResponse(503).status, 503);
}

TEST(HttpRouterTest, AddRejectsBadMethodsPatternsAndHandlers) {
  Router router;
  auto ok = [](const Request&) { return Response{}; };
  EXPECT_THROW(router.Add("TRACE", "/x", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("HEAD", "/x", ok), std::invalid_argument);  // GET answers HEAD
  EXPECT_THROW(router.Add("get", "/x", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "no-slash", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a/:", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a/:1st", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a/:id-x", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a/:id/b/:id", ok), std::invalid_argument);
  EXPECT_THROW(router.Add("GET", "/a", nullptr), std::invalid_argument);
  EXPECT_TRUE(router.empty());
  EXPECT_NO_THROW(router.Add("OPTIONS", "/a/:id_2", ok));
  EXPECT_FALSE(router.empty());
}

}  // namespace
}  // namespace workflowd::http
