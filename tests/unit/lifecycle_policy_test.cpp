// How the lifecycle classifies and stores failures that are not the provider's (issue 19): every
// kind of exception a dispatch or poll task can meet becomes an InternalError, and anything an
// engine sent is stored as JSON text that PostgreSQL's jsonb takes, never thrown.
#include <gtest/gtest.h>

#include <new>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "workflowd/common/utf8.hpp"
#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/matching/field_errors.hpp"
#include "workflowd/store/errors.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {
namespace {

using Json = nlohmann::json;

template <typename E>
InternalError Classify(E&& e) {
  try {
    throw std::forward<E>(e);
  } catch (...) {
    return CurrentInternalError();
  }
}

// After a throttled or failed poll: four times the usual interval, at least 2 s, at most the
// maximum (unless the usual interval is above it already).
TEST(FailedPollInterval, BacksOffWithinTheMaximum) {
  using std::chrono::milliseconds;
  EXPECT_EQ(FailedPollInterval(milliseconds(200), milliseconds(30000)), milliseconds(2000));
  EXPECT_EQ(FailedPollInterval(milliseconds(1000), milliseconds(30000)), milliseconds(4000));
  EXPECT_EQ(FailedPollInterval(milliseconds(10000), milliseconds(30000)), milliseconds(30000));
  EXPECT_EQ(FailedPollInterval(milliseconds(200), milliseconds(1000)), milliseconds(1000));
}

TEST(InternalErrors, EveryKindOfExceptionIsClassified) {
  auto down = Classify(store::StoreError("get definition version: database unreachable", true));
  EXPECT_STREQ(down.kind, "database");
  EXPECT_TRUE(down.retryable);
  EXPECT_EQ(down.message, "get definition version: database unreachable");

  auto bad_sql = Classify(store::StoreError("syntax error", false));
  EXPECT_STREQ(bad_sql.kind, "database");
  EXPECT_FALSE(bad_sql.retryable);

  matching::FieldErrors errors;
  errors.Add("trigger.conditions[0].op", "unknown operator \"frobnicate\"");
  auto definition = Classify(matching::ValidationError(errors));
  EXPECT_STREQ(definition.kind, "definition");
  EXPECT_FALSE(definition.retryable);  // the same document fails the same way next time
  EXPECT_NE(definition.message.find("frobnicate"), std::string::npos) << definition.message;

  auto memory = Classify(std::bad_alloc());
  EXPECT_STREQ(memory.kind, "memory");
  EXPECT_TRUE(memory.retryable);

  auto bug = Classify(std::out_of_range("map::at"));
  EXPECT_STREQ(bug.kind, "other");
  EXPECT_FALSE(bug.retryable);
  EXPECT_EQ(bug.message, "map::at");

  auto unknown = Classify(42);
  EXPECT_STREQ(unknown.kind, "other");
  EXPECT_FALSE(unknown.message.empty());
}

TEST(InternalErrors, MessagesAreValidUtf8AndStoredWithTheirKind) {
  auto e = Classify(std::runtime_error(std::string("engine said \xff\xfe!")));
  EXPECT_TRUE(IsValidUtf8(e.message)) << e.message;
  const Json stored = ErrorJson(e);
  EXPECT_EQ(stored["code"], "internal_error");
  EXPECT_EQ(stored["kind"], "other");
  EXPECT_EQ(stored["retryable"], false);
  EXPECT_NO_THROW(stored.dump());  // strict: no ill-formed text left
}

TEST(StorableJson, IllFormedUtf8IsReplacedNotThrown) {
  const Json output = {{"greeting", std::string("caf\xc3\xa9 \xe9t\xe9")},
                       {std::string("k\xff"), {1, std::string("\xc0\xaf")}}};
  EXPECT_THROW(output.dump(), Json::type_error);  // what the poll round used to do
  std::string text;
  ASSERT_NO_THROW(text = store::StorableJson(output));
  EXPECT_TRUE(IsValidUtf8(text)) << text;
  const Json back = Json::parse(text);
  EXPECT_EQ(back["greeting"],
            "caf\xc3\xa9 \xef\xbf\xbdt\xef\xbf\xbd");  // é kept, bad bytes: U+FFFD
}

TEST(StorableJson, NulCharactersBecomeReplacementCharacters) {
  // jsonb refuses \u0000 (SQLSTATE 22P05); an escaped backslash followed by "u0000" is text.
  const Json output = {{"a", std::string("x\0y", 3)}, {"b", "\\u0000 stays"}};
  const std::string text = store::StorableJson(output);
  EXPECT_EQ(text.find("\\u0000 stays"), text.find("\\\\u0000 stays") + 1) << text;
  const Json back = Json::parse(text);
  EXPECT_EQ(back["a"], "x\xef\xbf\xbdy");
  EXPECT_EQ(back["b"], "\\u0000 stays");
  EXPECT_EQ(store::StorableJson(Json{{"plain", 1}}), R"({"plain":1})");
}

}  // namespace
}  // namespace workflowd::lifecycle

namespace workflowd::lifecycle {
namespace {

TEST(UnchangedPollInterval, DoublesTheMinimumPerPollUpToTheMaximumAndNeverShortensTheUsualOne) {
  using std::chrono::milliseconds;
  const milliseconds min(5000), max(30000);
  EXPECT_EQ(UnchangedPollInterval(min, 0, min, max), milliseconds(5000));
  EXPECT_EQ(UnchangedPollInterval(min, 1, min, max), milliseconds(10000));
  EXPECT_EQ(UnchangedPollInterval(min, 2, min, max), milliseconds(20000));
  EXPECT_EQ(UnchangedPollInterval(min, 3, min, max), max);
  EXPECT_EQ(UnchangedPollInterval(min, 1000, min, max), max);  // no overflow
  EXPECT_EQ(UnchangedPollInterval(milliseconds(25000), 1, min, max), milliseconds(25000));
  // An interval already past the maximum (a failed poll's) stays.
  EXPECT_EQ(UnchangedPollInterval(milliseconds(40000), 5, min, max), milliseconds(40000));
}

}  // namespace
}  // namespace workflowd::lifecycle
