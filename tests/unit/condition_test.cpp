// The condition language: every op against every JSON type, missing fields, paths, envelope
// attributes and headers, groups, explanations, and every compile-time error.
#include "workflowd/matching/condition.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "workflowd/matching/field_errors.hpp"

namespace workflowd::matching {
namespace {

using nlohmann::json;

const json& Payload() {
  static const json kPayload = json::parse(R"({
    "s": "abc",
    "n": 5,
    "f": 2.5,
    "neg": -3,
    "big": 9007199254740993,
    "str5": "5",
    "b": true,
    "z": null,
    "a": [1, "x", true],
    "o": {"k": 1},
    "t": "2024-01-01T10:00:00Z",
    "items": [{"sku": "A1"}, {"sku": "B2"}],
    "0": {"k": "zero-key"},
    "obj": {"1": "one"},
    "customer": {"country": "US", "tier": "gold", "seats": 12}
  })");
  return kPayload;
}

json Leaf(const std::string& field, const std::string& op, json value) {
  return {{"field", field}, {"op", op}, {"value", std::move(value)}};
}
json Leaf(const std::string& field, const std::string& op) {
  return {{"field", field}, {"op", op}};
}

EventView PayloadEvent(const json* data = &Payload()) {
  EventView e;
  e.id = "evt-1";
  e.type = "customer.created";
  e.source = "billing/api";
  e.tenant = "t1";
  e.environment = "prod";
  e.time = "2024-06-01T12:00:00Z";
  e.data = data;
  return e;
}

bool Eval(const json& condition, const EventView& event = PayloadEvent()) {
  const ConditionPtr c = ParseCondition(condition, "c");
  const bool result = Evaluate(*c, event);
  // The explanation must always agree with the decision.
  EXPECT_EQ(Explain(*c, event).matched, result) << condition.dump();
  return result;
}

FieldErrors ErrorsOf(const json& condition) {
  FieldErrors errors;
  EXPECT_EQ(ParseCondition(condition, "c", errors), nullptr) << condition.dump();
  return errors;
}

// The single error of `condition`, checked to be at `field` and to contain `text`.
void ExpectError(const json& condition, const std::string& field, const std::string& text) {
  const FieldErrors errors = ErrorsOf(condition);
  ASSERT_EQ(errors.size(), 1u) << condition.dump() << " -> " << errors.ToString();
  EXPECT_EQ(errors.items()[0].field, field) << errors.ToString();
  EXPECT_NE(errors.items()[0].message.find(text), std::string::npos)
      << "\"" << text << "\" not in: " << errors.items()[0].message;
}

struct OpCase {
  json condition;
  bool want;
};

void RunCases(const std::vector<OpCase>& cases) {
  for (const OpCase& c : cases) {
    EXPECT_EQ(Eval(c.condition), c.want) << c.condition.dump();
  }
}

TEST(ConditionEval, Eq) {
  RunCases({
      {Leaf("data.s", "eq", "abc"), true},
      {Leaf("data.s", "eq", "abd"), false},
      {Leaf("data.s", "eq", "ABC"), false},  // case-sensitive
      {Leaf("data.n", "eq", 5), true},
      {Leaf("data.n", "eq", 5.0), true},  // integer vs float
      {Leaf("data.n", "eq", 5.000001), false},
      {Leaf("data.f", "eq", 2.5), true},
      {Leaf("data.neg", "eq", -3), true},
      {Leaf("data.neg", "eq", -3.0), true},
      {Leaf("data.big", "eq", json::parse("9007199254740993")), true},
      {Leaf("data.big", "eq", json::parse("9007199254740992")), false},  // no double rounding
      {Leaf("data.n", "eq", "5"), false},                                // mixed types
      {Leaf("data.str5", "eq", 5), false},
      {Leaf("data.b", "eq", true), true},
      {Leaf("data.b", "eq", false), false},
      {Leaf("data.b", "eq", "true"), false},
      {Leaf("data.b", "eq", 1), false},
      {Leaf("data.z", "eq", nullptr), true},
      {Leaf("data.s", "eq", nullptr), false},
      {Leaf("data.missing", "eq", "x"), false},
      {Leaf("data.missing", "eq", nullptr), false},  // missing is not null
      {Leaf("data.a", "eq", 1), false},              // array vs scalar
      {Leaf("data.o", "eq", "x"), false},
      {Leaf("data.t", "eq", "2024-01-01T11:00:00+01:00"), true},  // same instant
      {Leaf("data.t", "eq", "2024-01-01T10:00:00.000Z"), true},
      {Leaf("data.t", "eq", "2024-01-01T10:00:01Z"), false},
  });
}

TEST(ConditionEval, Ne) {
  RunCases({
      {Leaf("data.s", "ne", "abd"), true},
      {Leaf("data.s", "ne", "abc"), false},
      {Leaf("data.n", "ne", "5"), true},  // different types are never equal
      {Leaf("data.n", "ne", 5.0), false},
      {Leaf("data.missing", "ne", "x"), true},  // documented: missing -> ne is true
      {Leaf("data.z", "ne", nullptr), false},
      {Leaf("data.b", "ne", false), true},
      {Leaf("data.t", "ne", "2024-01-01T10:00:00+00:00"), false},
  });
}

TEST(ConditionEval, OrderedComparisons) {
  RunCases({
      {Leaf("data.n", "gt", 4), true},
      {Leaf("data.n", "gt", 5), false},
      {Leaf("data.n", "gte", 5), true},
      {Leaf("data.n", "lt", 5.5), true},
      {Leaf("data.n", "lt", 5), false},
      {Leaf("data.n", "lte", 5), true},
      {Leaf("data.n", "gt", -1), true},  // unsigned vs negative
      {Leaf("data.neg", "lt", 0), true},
      {Leaf("data.neg", "gte", -3.5), true},
      {Leaf("data.f", "gt", 2), true},
      {Leaf("data.f", "lte", 2), false},
      {Leaf("data.big", "gt", json::parse("9007199254740992")), true},
      {Leaf("data.big", "gt", 9007199254740992.0), true},  // exact against a double too
      {Leaf("data.n", "gt", "4"), false},                  // mixed types: false, no throw
      {Leaf("data.str5", "gt", 4), false},
      {Leaf("data.str5", "lt", 4), false},
      {Leaf("data.s", "gt", "abb"), true},
      {Leaf("data.s", "lt", "abd"), true},
      {Leaf("data.s", "gte", "abc"), true},
      {Leaf("data.s", "lt", "ab"), false},
      {Leaf("data.s", "gt", "B"), true},  // byte order: 'a' (0x61) > 'B' (0x42)
      {Leaf("data.b", "gt", 0), false},   // booleans are not ordered
      {Leaf("data.z", "gt", 0), false},
      {Leaf("data.a", "gt", 0), false},
      {Leaf("data.o", "lt", 10), false},
      {Leaf("data.missing", "gt", 0), false},
      {Leaf("data.missing", "lte", 0), false},
      // Both RFC 3339: instants. 10:00Z is after 10:30+01:00 (= 09:30Z), though bytewise smaller.
      {Leaf("data.t", "gt", "2024-01-01T10:30:00+01:00"), true},
      {Leaf("data.t", "lt", "2024-01-01T10:30:00+01:00"), false},
      // Value is not a timestamp: byte order.
      {Leaf("data.t", "lt", "2024-01-02"), true},
  });
}

TEST(ConditionEval, InAndNotIn) {
  RunCases({
      {Leaf("data.s", "in", {"x", "abc"}), true},
      {Leaf("data.s", "in", {"x"}), false},
      {Leaf("data.n", "in", {1, 5}), true},
      {Leaf("data.n", "in", {5.0}), true},
      {Leaf("data.f", "in", {2.5}), true},
      {Leaf("data.f", "in", {2}), false},
      {Leaf("data.n", "in", {"5"}), false},
      {Leaf("data.str5", "in", {5}), false},
      {Leaf("data.b", "in", {true}), true},
      {Leaf("data.b", "in", {false}), false},
      {Leaf("data.z", "in", {nullptr}), true},
      {Leaf("data.s", "in", {nullptr}), false},
      {Leaf("data.n", "in", json::parse(R"(["a", true, null, 5])")), true},
      {Leaf("data.big", "in", json::parse("[9007199254740992]")), false},
      {Leaf("data.big", "in", json::parse("[9007199254740993]")), true},
      {Leaf("data.t", "in", {"2024-01-01T12:00:00+02:00"}), true},
      {Leaf("data.a", "in", {1}), false},  // an array is not a member
      {Leaf("data.missing", "in", {"abc"}), false},
      {Leaf("data.missing", "not_in", {"abc"}), true},  // documented: missing -> not_in true
      {Leaf("data.s", "not_in", {"abc"}), false},
      {Leaf("data.s", "not_in", {"x"}), true},
      {Leaf("data.n", "not_in", {"5"}), true},
      {Leaf("data.neg", "in", {-3.0}), true},
  });
}

TEST(ConditionEval, ExistsAndNotExists) {
  RunCases({
      {Leaf("data.s", "exists"), true},
      {Leaf("data.z", "exists"), true},  // null is present
      {Leaf("data.a", "exists"), true},
      {Leaf("data.missing", "exists"), false},
      {Leaf("data.missing", "not_exists"), true},
      {Leaf("data.z", "not_exists"), false},
      {Leaf("data.items.1.sku", "exists"), true},
      {Leaf("data.items.5.sku", "exists"), false},
      {Leaf("data", "exists"), true},
  });
}

TEST(ConditionEval, ContainsStartsEndsRegex) {
  RunCases({
      {Leaf("data.s", "contains", "bc"), true},
      {Leaf("data.s", "contains", "zz"), false},
      {Leaf("data.s", "contains", ""), true},
      {Leaf("data.a", "contains", 1), true},
      {Leaf("data.a", "contains", 1.0), true},
      {Leaf("data.a", "contains", "x"), true},
      {Leaf("data.a", "contains", true), true},
      {Leaf("data.a", "contains", 2), false},
      {Leaf("data.a", "contains", "1"), false},  // typed element comparison
      {Leaf("data.n", "contains", 5), false},    // numbers are not containers
      {Leaf("data.s", "contains", 5), false},
      {Leaf("data.o", "contains", "k"), false},  // objects are not searched
      {Leaf("data.missing", "contains", "a"), false},
      {Leaf("data.s", "starts_with", "ab"), true},
      {Leaf("data.s", "starts_with", "bc"), false},
      {Leaf("data.s", "ends_with", "bc"), true},
      {Leaf("data.s", "ends_with", "ab"), false},
      {Leaf("data.str5", "starts_with", "5"), true},
      {Leaf("data.n", "starts_with", "5"), false},  // a number is not a string
      {Leaf("data.missing", "ends_with", "x"), false},
      {Leaf("data.s", "regex", "b"), true},  // partial match
      {Leaf("data.s", "regex", "^b"), false},
      {Leaf("data.s", "regex", "^abc$"), true},
      {Leaf("data.s", "regex", "^ab$"), false},
      {Leaf("data.str5", "regex", "^[0-9]+$"), true},
      {Leaf("data.n", "regex", "5"), false},
      {Leaf("data.missing", "regex", "."), false},
  });
}

TEST(ConditionEval, Paths) {
  RunCases({
      {Leaf("data.items.0.sku", "eq", "A1"), true},
      {Leaf("data.items.1.sku", "eq", "B2"), true},
      {Leaf("data.items.2.sku", "exists"), false},
      {Leaf("data.items.01.sku", "exists"), false},  // not a canonical index
      {Leaf("data.0.k", "eq", "zero-key"), true},    // numeric segment on an object is a key
      {Leaf("data.obj.1", "eq", "one"), true},
      {Leaf("data.s.x", "exists"), false},  // path through a string
      {Leaf("data.customer.country", "eq", "US"), true},
      {Leaf("data.customer.seats", "gte", 10), true},
      {Leaf("data", "eq", "x"), false},
  });
}

TEST(ConditionEval, EnvelopeAttributesAndHeaders) {
  const std::vector<Header> headers = {
      {"x-trace", "abc123"}, {"x-dup", "first"}, {"x-dup", "second"}, {"x-empty", ""}};
  EventView e = PayloadEvent();
  e.headers = headers;
  EXPECT_TRUE(Eval(Leaf("type", "eq", "customer.created"), e));
  EXPECT_TRUE(Eval(Leaf("id", "eq", "evt-1"), e));
  EXPECT_TRUE(Eval(Leaf("source", "starts_with", "billing/"), e));
  EXPECT_TRUE(Eval(Leaf("tenant", "in", {"t1", "t2"}), e));
  EXPECT_TRUE(Eval(Leaf("environment", "ne", "dev"), e));
  EXPECT_TRUE(Eval(Leaf("time", "gt", "2024-06-01T13:00:00+02:00"), e));  // instants
  EXPECT_FALSE(Eval(Leaf("subject", "exists"), e));  // empty attribute = missing
  EXPECT_TRUE(Eval(Leaf("subject", "not_exists"), e));
  e.subject = "cust_1";
  EXPECT_TRUE(Eval(Leaf("subject", "eq", "cust_1"), e));
  EXPECT_FALSE(Eval(Leaf("type", "eq", 5), e));  // attributes are strings
  EXPECT_TRUE(Eval(Leaf("headers.x-trace", "eq", "abc123"), e));
  EXPECT_TRUE(Eval(Leaf("headers.x-dup", "eq", "second"), e));  // last one wins
  EXPECT_TRUE(Eval(Leaf("headers.x-empty", "exists"), e));      // present, empty value
  EXPECT_TRUE(Eval(Leaf("headers.X-Trace", "not_exists"), e));  // case-sensitive
  EXPECT_TRUE(Eval(Leaf("headers.absent", "ne", "x"), e));
  EXPECT_TRUE(Eval(Leaf("headers.x-trace", "regex", "^abc[0-9]+$"), e));
}

TEST(ConditionEval, NoPayload) {
  const EventView e = PayloadEvent(nullptr);
  EXPECT_FALSE(Eval(Leaf("data", "exists"), e));
  EXPECT_TRUE(Eval(Leaf("data", "not_exists"), e));
  EXPECT_FALSE(Eval(Leaf("data.s", "eq", "abc"), e));
  EXPECT_TRUE(Eval(Leaf("data.s", "ne", "abc"), e));
  const json null_payload = nullptr;
  EXPECT_TRUE(Eval(Leaf("data", "eq", nullptr), PayloadEvent(&null_payload)));
}

TEST(ConditionEval, Groups) {
  const json us = Leaf("data.customer.country", "eq", "US");
  const json ca = Leaf("data.customer.country", "eq", "CA");
  const json gold = Leaf("data.customer.tier", "eq", "gold");
  EXPECT_TRUE(Eval({{"all", {us, gold}}}));
  EXPECT_FALSE(Eval({{"all", {us, ca}}}));
  EXPECT_TRUE(Eval({{"any", {ca, us}}}));
  EXPECT_FALSE(Eval({{"any", {ca, ca}}}));
  EXPECT_TRUE(Eval({{"not", ca}}));
  EXPECT_FALSE(Eval({{"not", us}}));
  EXPECT_TRUE(Eval({{"all", {{{"any", {ca, gold}}}, {{"not", {{"all", {ca, gold}}}}}}}}));
  EXPECT_FALSE(Eval({{"not", {{"any", {ca, {{"not", ca}}}}}}}));

  // A trigger's list is an implicit "all".
  const ConditionPtr list = ParseConditionList(json::array({us, gold}), "trigger.conditions");
  EXPECT_TRUE(Evaluate(*list, PayloadEvent()));
  const ConditionPtr failing = ParseConditionList(json::array({us, ca}), "trigger.conditions");
  EXPECT_FALSE(Evaluate(*failing, PayloadEvent()));
  const ConditionPtr empty = ParseConditionList(json::array(), "trigger.conditions");
  EXPECT_TRUE(Evaluate(*empty, PayloadEvent()));
  EXPECT_EQ(list->leaf_count(), 2u);
  EXPECT_EQ(list->path(), "trigger.conditions");
  EXPECT_EQ(list->source(), json::array({us, gold}));
  EXPECT_TRUE(Matches(nullptr, PayloadEvent()));
  EXPECT_FALSE(Matches(failing.get(), PayloadEvent()));
}

TEST(ConditionEval, NeverThrowsOnOddPayloads) {
  const ConditionPtr c = ParseCondition(
      {{"any",
        {Leaf("data.x.y", "gt", 1), Leaf("data.x", "regex", "a"), Leaf("data.x.0", "in", {1}),
         Leaf("data.x", "contains", "q"), Leaf("data.x", "ends_with", "q")}}},
      "c");
  for (const char* text : {"null", "1", "\"x\"", "[]", "[[1]]", "{\"x\": {\"y\": [1]}}",
                           "{\"x\": [\"q\"]}", "{\"x\": null}", "{\"x\": 1.5e300}"}) {
    const json data = json::parse(text);
    EXPECT_NO_THROW(Evaluate(*c, PayloadEvent(&data))) << text;
    EXPECT_NO_THROW(Explain(*c, PayloadEvent(&data))) << text;
  }
  const json arr = json::parse(R"({"x": ["q"]})");
  EXPECT_TRUE(Evaluate(*c, PayloadEvent(&arr)));
  static_assert(
      noexcept(Evaluate(std::declval<const Condition&>(), std::declval<const EventView&>())));
}

// ---- Explanations ----

TEST(ConditionExplain, Leaf) {
  const ConditionPtr c = ParseCondition(Leaf("data.n", "gt", 10), "trigger.conditions[0]");
  const Explanation x = Explain(*c, PayloadEvent());
  EXPECT_FALSE(x.matched);
  EXPECT_EQ(x.kind, Explanation::Kind::kLeaf);
  EXPECT_EQ(x.path, "trigger.conditions[0]");
  EXPECT_EQ(x.field, "data.n");
  EXPECT_EQ(x.op, Op::kGt);
  EXPECT_EQ(x.expected, json(10));
  EXPECT_TRUE(x.present);
  EXPECT_EQ(x.actual, json(5));
  EXPECT_EQ(x.reason, "5 is not > 10");
  EXPECT_EQ(x.FirstFailure(), &x);
}

TEST(ConditionExplain, Reasons) {
  const auto reason = [](const json& leaf) {
    return Explain(*ParseCondition(leaf, "c"), PayloadEvent()).reason;
  };
  EXPECT_EQ(reason(Leaf("data.missing", "eq", "x")), "field is missing");
  EXPECT_EQ(reason(Leaf("data.missing", "ne", "x")), "matched: field is missing");
  EXPECT_EQ(reason(Leaf("data.n", "eq", "5")),
            "type mismatch: field is a number, value is a string");
  EXPECT_EQ(reason(Leaf("data.s", "eq", "abd")), "\"abc\" is not equal to \"abd\"");
  EXPECT_EQ(reason(Leaf("data.s", "ne", "abc")), "\"abc\" is equal to \"abc\"");
  EXPECT_EQ(reason(Leaf("data.s", "in", {"x"})), "\"abc\" is not in the list");
  EXPECT_EQ(reason(Leaf("data.s", "not_in", {"abc"})), "\"abc\" is in the list");
  EXPECT_EQ(reason(Leaf("data.s", "not_exists")), "field is present");
  EXPECT_EQ(reason(Leaf("data.s", "regex", "^z")), "does not match the regular expression \"^z\"");
  EXPECT_EQ(reason(Leaf("data.n", "regex", "5")),
            "type mismatch: field is a number, op \"regex\" needs a string");
  EXPECT_EQ(reason(Leaf("data.s", "eq", "abc")), "matched");
}

TEST(ConditionExplain, GroupsPointAtTheFailingClause) {
  const json condition = {
      {"all",
       {Leaf("data.customer.country", "eq", "US"),
        {{"any",
          {Leaf("data.customer.tier", "eq", "silver"), Leaf("data.customer.seats", "gt", 100)}}},
        Leaf("type", "eq", "customer.created")}}};
  const ConditionPtr c = ParseConditionList(json::array({condition}), "trigger.conditions");
  const Explanation x = Explain(*c, PayloadEvent());
  EXPECT_FALSE(x.matched);
  EXPECT_EQ(x.kind, Explanation::Kind::kAll);
  ASSERT_EQ(x.children.size(), 1u);
  const Explanation& all = x.children[0];
  EXPECT_EQ(all.reason, "1 of 3 conditions failed");
  ASSERT_EQ(all.children.size(), 3u);  // no short-circuit: every clause is shown
  EXPECT_TRUE(all.children[0].matched);
  EXPECT_FALSE(all.children[1].matched);
  EXPECT_EQ(all.children[1].reason, "none of 2 conditions matched");
  EXPECT_TRUE(all.children[2].matched);
  const Explanation* failure = x.FirstFailure();
  ASSERT_NE(failure, nullptr);
  EXPECT_EQ(failure->path, "trigger.conditions[0].all[1].any[0]");
  EXPECT_EQ(failure->field, "data.customer.tier");

  const json out = x.ToJson();
  EXPECT_EQ(out["kind"], "all");
  EXPECT_EQ(out["children"][0]["children"][1]["children"][1]["reason"], "12 is not > 100");
  EXPECT_EQ(out["children"][0]["children"][1]["children"][1]["actual"], 12);
  EXPECT_EQ(out["children"][0]["children"][0]["value"], "US");

  const ConditionPtr negated = ParseCondition({{"not", Leaf("data.s", "exists")}}, "c");
  const Explanation n = Explain(*negated, PayloadEvent());
  EXPECT_FALSE(n.matched);
  EXPECT_EQ(n.reason, "inner condition matched");
  EXPECT_EQ(n.FirstFailure(), &n);

  const Explanation ok = Explain(*ParseCondition(Leaf("data.s", "exists"), "c"), PayloadEvent());
  EXPECT_EQ(ok.FirstFailure(), nullptr);
}

TEST(ConditionExplain, LargeActualValuesAreTruncated) {
  const json data = {{"blob", std::string(5000, 'x')}};
  const ConditionPtr c = ParseCondition(Leaf("data.blob", "eq", "y"), "c");
  const Explanation x = Explain(*c, PayloadEvent(&data));
  EXPECT_EQ(x.actual["truncated"], true);
  EXPECT_EQ(x.actual["type"], "string");
  EXPECT_GT(x.reason.size(), 0u);
  EXPECT_LT(x.reason.size(), 200u);
}

// ---- Validation ----

TEST(ConditionParse, UnknownOpListsTheValidOnes) {
  ExpectError(Leaf("data.s", "equals", "x"), "c.op", "unknown op \"equals\"");
  const FieldErrors errors = ErrorsOf(Leaf("data.s", "equals", "x"));
  EXPECT_NE(errors.ToString().find("eq, ne, gt, gte, lt, lte, in, not_in, exists, not_exists, "
                                   "contains, starts_with, ends_with, regex"),
            std::string::npos);
  ExpectError({{"field", "data.s"}, {"value", 1}}, "c.op", "required");
  ExpectError({{"field", "data.s"}, {"op", 3}, {"value", 1}}, "c.op", "must be a string");
}

TEST(ConditionParse, Fields) {
  ExpectError({{"op", "exists"}}, "c.field", "required");
  ExpectError({{"field", 1}, {"op", "exists"}}, "c.field", "must be a string");
  ExpectError(Leaf("customer.country", "exists"), "c.field", "unknown field \"customer.country\"");
  ExpectError(Leaf("data..x", "exists"), "c.field", "empty path segment");
  ExpectError(Leaf("data.", "exists"), "c.field", "empty path segment");
  ExpectError(Leaf("headers.", "exists"), "c.field", "unknown field");
  ExpectError(Leaf("datax", "exists"), "c.field", "unknown field");
  for (const char* ok : {"id", "type", "source", "subject", "tenant", "environment", "time", "data",
                         "data.a", "data.a.0.b", "headers.x-y", "headers.a.b"}) {
    FieldErrors errors;
    EXPECT_NE(ParseCondition(Leaf(ok, "exists"), "c", errors), nullptr) << ok;
  }
}

TEST(ConditionParse, Values) {
  ExpectError(Leaf("data.s", "exists", "x"), "c.value", "takes no value");
  ExpectError(Leaf("data.s", "not_exists", nullptr), "c.value", "takes no value");
  ExpectError(Leaf("data.s", "eq"), "c.value", "required for op \"eq\"");
  ExpectError(Leaf("data.s", "eq", {1, 2}), "c.value", "must be a string, number, boolean or null");
  ExpectError(Leaf("data.s", "ne", {{"a", 1}}), "c.value", "must be a string, number");
  ExpectError(Leaf("data.s", "gt", true), "c.value", "must be a number or a string");
  ExpectError(Leaf("data.s", "lte", nullptr), "c.value", "must be a number or a string");
  ExpectError(Leaf("data.s", "in", "abc"), "c.value", "must be a non-empty array");
  ExpectError(Leaf("data.s", "not_in", json::array()), "c.value", "must be a non-empty array");
  ExpectError(Leaf("data.s", "in", json::parse(R"(["a", {"b": 1}])")), "c.value[1]",
              "must be a string, number, boolean or null");
  ExpectError(Leaf("data.s", "contains", {{"a", 1}}), "c.value", "must be a string, number");
  ExpectError(Leaf("data.s", "starts_with", 5), "c.value", "must be a string");
  ExpectError(Leaf("data.s", "ends_with", nullptr), "c.value", "must be a string");
  ExpectError(Leaf("data.s", "regex", 5), "c.value", "must be a string");
  // RE2's own message is included.
  ExpectError(Leaf("data.s", "regex", "(abc"), "c.value", "missing )");
  ExpectError(Leaf("data.s", "regex", "(abc"), "c.value", "invalid regular expression");
}

TEST(ConditionParse, ValueSizeLimit) {
  ExpectError(Leaf("data.s", "eq", std::string(kMaxConditionValueBytes, 'x')), "c.value",
              "too large");
  json big_list = json::array();
  for (int i = 0; i < 2000; ++i) big_list.push_back("item-" + std::to_string(i));
  ExpectError(Leaf("data.s", "in", big_list), "c.value", "too large");
  FieldErrors errors;
  EXPECT_NE(ParseCondition(Leaf("data.s", "eq", std::string(kMaxConditionValueBytes - 2, 'x')), "c",
                           errors),
            nullptr)
      << errors.ToString();
}

TEST(ConditionParse, UnknownKeysAndShapes) {
  ExpectError({{"field", "data.s"}, {"op", "eq"}, {"valeu", 1}, {"value", 1}}, "c.valeu",
              "unknown key \"valeu\"");
  ExpectError({{"alll", json::array()}}, "c.alll", "unknown key \"alll\"");
  ExpectError(json::object(), "c", "empty condition");
  ExpectError("data.s eq 1", "c", "must be an object");
  ExpectError({{"all", json::array()}}, "c.all", "must be a non-empty list");
  ExpectError({{"any", Leaf("data.s", "exists")}}, "c.any", "must be a non-empty list");
  ExpectError({{"not", json::array({Leaf("data.s", "exists")})}}, "c.not", "must be an object");
  ExpectError({{"all", json::array({Leaf("data.s", "exists")})}, {"op", "eq"}}, "c", "mixes");
  ExpectError({{"all", json::array({Leaf("data.s", "exists")})},
               {"any", json::array({Leaf("data.s", "exists")})}},
              "c", "mixes");
}

json Nested(int levels) {
  json c = Leaf("data.s", "exists");
  for (int i = 1; i < levels; ++i) {
    json wrapper = json::object();
    wrapper["not"] = std::move(c);
    c = std::move(wrapper);
  }
  return c;
}

TEST(ConditionParse, DepthLimit) {
  FieldErrors errors;
  EXPECT_NE(ParseCondition(Nested(kMaxConditionDepth), "c", errors), nullptr);
  EXPECT_TRUE(errors.empty());
  const FieldErrors too_deep = ErrorsOf(Nested(kMaxConditionDepth + 1));
  ASSERT_EQ(too_deep.size(), 1u);
  EXPECT_NE(too_deep.items()[0].message.find("nested deeper than 16"), std::string::npos);
  EXPECT_EQ(too_deep.items()[0].field.rfind("c.not.not", 0), 0u);
  // Hostile depth does not recurse without bound: 100,000 levels overflow the stack of any walk
  // that recurses once per level (serializing the source did, at 5,000 under AddressSanitizer).
  EXPECT_EQ(ErrorsOf(Nested(100000)).size(), 1u);
  // A list counts as one level: its elements may nest 15 more.
  FieldErrors list_errors;
  EXPECT_NE(ParseConditionList(json::array({Nested(kMaxConditionDepth - 1)}), "l", list_errors),
            nullptr);
  EXPECT_EQ(ParseConditionList(json::array({Nested(kMaxConditionDepth)}), "l", list_errors),
            nullptr);
}

TEST(ConditionParse, LeafLimit) {
  json leaves = json::array();
  for (size_t i = 0; i < kMaxConditionLeaves; ++i) leaves.push_back(Leaf("data.n", "eq", i));
  FieldErrors errors;
  const ConditionPtr ok = ParseCondition({{"any", leaves}}, "c", errors);
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->leaf_count(), kMaxConditionLeaves);
  EXPECT_TRUE(Evaluate(*ok, PayloadEvent()));  // data.n == 5 is one of them
  leaves.push_back(Leaf("data.n", "eq", 1000));
  ExpectError({{"any", leaves}}, "c", "too many leaf conditions: 257");
}

TEST(ConditionParse, CollectsEveryProblemWithItsPath) {
  const json list = json::array(
      {Leaf("data.customer.country", "eq", "US"),
       {{"any",
         {Leaf("data.x", "bogus", 1), Leaf("customer", "eq", 1), Leaf("data.x", "regex", "[")}}},
       {{"not", {{"field", "data.y"}, {"op", "exists"}, {"extra", true}}}}});
  FieldErrors errors;
  EXPECT_EQ(ParseConditionList(list, "trigger.conditions", errors), nullptr);
  ASSERT_EQ(errors.size(), 4u) << errors.ToString();
  EXPECT_EQ(errors.items()[0].field, "trigger.conditions[1].any[0].op");
  EXPECT_EQ(errors.items()[1].field, "trigger.conditions[1].any[1].field");
  EXPECT_EQ(errors.items()[2].field, "trigger.conditions[1].any[2].value");
  EXPECT_EQ(errors.items()[3].field, "trigger.conditions[2].not.extra");

  try {
    ParseConditionList(list, "trigger.conditions");
    ADD_FAILURE() << "expected ConditionError";
  } catch (const ConditionError& e) {
    EXPECT_EQ(e.errors(), errors);
    EXPECT_NE(std::string(e.what()).find("4 problems: trigger.conditions[1].any[0].op: unknown "
                                         "op \"bogus\""),
              std::string::npos)
        << e.what();
  }
  const json details = errors.ToJson();
  ASSERT_EQ(details.size(), 4u);
  EXPECT_EQ(details[3], json({{"field", "trigger.conditions[2].not.extra"},
                              {"message", errors.items()[3].message}}));

  ExpectError(json::object(), "c", "empty");
  FieldErrors not_a_list;
  EXPECT_EQ(ParseConditionList(Leaf("data.s", "exists"), "trigger.conditions", not_a_list),
            nullptr);
  EXPECT_EQ(not_a_list.ToString(), "trigger.conditions: must be a list of conditions");
}

TEST(FieldErrors, JoinAndAppend) {
  EXPECT_EQ(JoinFieldPath("steps[1]", "id"), "steps[1].id");
  EXPECT_EQ(JoinFieldPath("steps", "[1]"), "steps[1]");
  EXPECT_EQ(JoinFieldPath("", "id"), "id");
  EXPECT_EQ(JoinFieldPath("x", ""), "x");
  FieldErrors inner;
  inner.Add("name", "required");
  inner.Add("", "too large");
  FieldErrors outer;
  outer.Append(inner, "definitions[2]");
  EXPECT_EQ(outer.ToString(), "definitions[2].name: required; definitions[2]: too large");
  EXPECT_TRUE(outer.HasField("definitions[2].name"));
  EXPECT_FALSE(outer.HasField("name"));
  EXPECT_STREQ(ValidationError(outer, "defs.yaml").what(),
               "defs.yaml: 2 problems: definitions[2].name: required; definitions[2]: too large");
}

TEST(FieldErrors, ProblemsAreValidUtf8WhateverTheInputHeld) {
  FieldErrors errors;
  errors.Add(
      "tenap\xA0"
      "1",
      "unknown key \"tenap\xA0"
      "1\"");
  errors.Add("caf\xC3\xA9", "fine: \xC3\xA9");  // valid UTF-8 is kept as it is
  EXPECT_EQ(errors.ToString(),
            "tenap\xEF\xBF\xBD"
            "1: unknown key \"tenap\xEF\xBF\xBD"
            "1\"; "
            "caf\xC3\xA9: fine: \xC3\xA9");
  EXPECT_NO_THROW(errors.ToJson().dump());
}

// ---- Timestamps outside the years TimePoint holds ----

TEST(ConditionEval, TimestampsOutsideTheRepresentableYearsStayOrdered) {
  // 9999-12-31 ("never expires") must not wrap around to an instant in the past.
  const json data = {{"expires_at", "9999-12-31T23:59:59Z"}, {"t", "2024-01-01T10:00:00Z"}};
  const auto eval = [&](const json& condition) { return Eval(condition, PayloadEvent(&data)); };
  EXPECT_TRUE(eval(Leaf("data.expires_at", "gt", "2026-01-01T00:00:00Z")));
  EXPECT_FALSE(eval(Leaf("data.expires_at", "lt", "2026-01-01T00:00:00Z")));
  EXPECT_TRUE(eval(Leaf("data.expires_at", "eq", "9999-12-31T23:59:59Z")));
  EXPECT_FALSE(eval(Leaf("data.expires_at", "eq", "2026-01-01T00:00:00Z")));
  EXPECT_TRUE(
      eval(Leaf("data.expires_at", "in", {"2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z"})));
  // The same as operand values, against in-range times.
  EXPECT_TRUE(eval(Leaf("data.t", "lt", "9999-12-31T23:59:59Z")));
  EXPECT_FALSE(eval(Leaf("data.t", "gte", "9999-12-31T23:59:59Z")));
  EXPECT_FALSE(Eval(Leaf("time", "gt", "4052-01-30T08:00:00+00:30")));
  EXPECT_TRUE(Eval(Leaf("time", "lt", "4052-01-30T08:00:00+00:30")));
  EXPECT_TRUE(Eval(Leaf("time", "gt", "0001-01-01T00:00:00Z")));
  EXPECT_FALSE(eval(Leaf("data.t", "in", {"9999-12-31T23:59:59Z"})));
}

// ---- Messages cut at a character boundary ----

// Problems and explanations reach the REST API as JSON: they must stay valid UTF-8 when a long
// name or value is shortened.
TEST(ConditionParse, ShortenedNamesInProblemsAreValidUtf8) {
  const std::string field = std::string(63, 'x') + "\u00e9";  // the 64-byte cut splits the é
  const FieldErrors errors = ErrorsOf(Leaf(field, "eq", 1));
  ASSERT_EQ(errors.size(), 1u) << errors.ToString();
  EXPECT_NO_THROW((void)errors.ToJson().dump());
  EXPECT_NE(errors.items()[0].message.find("\"" + std::string(63, 'x') + "...\""),
            std::string::npos)
      << errors.items()[0].message;

  const std::string op = std::string(62, 'o') + "\u20ac";  // a 3-byte character across the cut
  const FieldErrors op_errors = ErrorsOf(Leaf("data.s", op, 1));
  ASSERT_EQ(op_errors.size(), 1u) << op_errors.ToString();
  EXPECT_NO_THROW((void)op_errors.ToJson().dump());
}

TEST(ConditionExplain, ShortenedValuesInReasonsAreValidUtf8) {
  // Dumped with its quote, the é occupies bytes 63 and 64 of the value: the cut at 64 splits it.
  const json data = {{"s", std::string(62, 'a') + "\u00e9"}};
  const ConditionPtr c = ParseCondition(Leaf("data.s", "gt", "z"), "c");
  const Explanation x = Explain(*c, PayloadEvent(&data));
  EXPECT_FALSE(x.matched);
  EXPECT_NO_THROW((void)x.ToJson().dump());
  EXPECT_EQ(x.reason, "\"" + std::string(62, 'a') + "... is not > \"z\"");

  const json emoji = {{"s", std::string(61, 'a') + "\U0001F600"}};  // 4 bytes across the cut
  EXPECT_NO_THROW((void)Explain(*c, PayloadEvent(&emoji)).ToJson().dump());
}

TEST(Ops, NamesRoundTrip) {
  for (const char* name : {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists",
                           "not_exists", "contains", "starts_with", "ends_with", "regex"}) {
    const std::optional<Op> op = OpFromString(name);
    ASSERT_TRUE(op.has_value()) << name;
    EXPECT_STREQ(ToString(*op), name);
  }
  EXPECT_FALSE(OpFromString("EQ").has_value());
}

TEST(ConditionSharing, IdenticalConditionsCompileOnce) {
  const json list =
      json::array({Leaf("data.customer.country", "eq", "US"),
                   Leaf("data.customer.tier", "in", json::array({"gold", "silver"}))});
  const ConditionPtr a = ParseConditionList(list, "trigger.conditions");
  const ConditionPtr b = ParseConditionList(list, "trigger.conditions");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(b->source(), list);
  // Another path or another form (a single condition, not a list) is another condition.
  const ConditionPtr at_other_path = ParseConditionList(list, "steps[0].condition");
  EXPECT_NE(at_other_path.get(), a.get());
  EXPECT_EQ(at_other_path->path(), "steps[0].condition");
  const ConditionPtr single = ParseCondition(list[0], "trigger.conditions");
  EXPECT_NE(single.get(), a.get());
  EXPECT_EQ(single->source(), list[0]);
  // 1 and 1.0 are equal JSON but serialize differently: each keeps its own source.
  const ConditionPtr one = ParseCondition(Leaf("data.n", "eq", 1), "c");
  const ConditionPtr one_float = ParseCondition(Leaf("data.n", "eq", 1.0), "c");
  EXPECT_NE(one.get(), one_float.get());
  EXPECT_TRUE(one_float->source()["value"].is_number_float());
}

TEST(ConditionSharing, OneCompiledRegexPerPatternAndBothStillMatch) {
  const std::string pattern = R"(^[^@]+@sharing-test\.example$)";
  const CompiledConditionCounts before = LiveCompiledConditions();
  const ConditionPtr by_email =
      ParseConditionList(json::array({Leaf("data.email", "regex", pattern)}), "trigger.conditions");
  const ConditionPtr by_email_and_country = ParseConditionList(
      json::array({Leaf("data.email", "regex", pattern), Leaf("data.country", "eq", "US")}),
      "trigger.conditions");
  const ConditionPtr by_header = ParseCondition(Leaf("headers.from", "regex", pattern), "c");
  const CompiledConditionCounts after = LiveCompiledConditions();
  EXPECT_EQ(after.conditions, before.conditions + 3);
  EXPECT_EQ(after.regexes, before.regexes + 1);  // three leaves, one RE2

  json data = {{"email", "ann@sharing-test.example"}, {"country", "US"}};
  EXPECT_TRUE(Evaluate(*by_email, PayloadEvent(&data)));
  EXPECT_TRUE(Evaluate(*by_email_and_country, PayloadEvent(&data)));
  data["country"] = "FR";
  EXPECT_TRUE(Evaluate(*by_email, PayloadEvent(&data)));
  EXPECT_FALSE(Evaluate(*by_email_and_country, PayloadEvent(&data)));
  data["email"] = "ann@other.example";
  EXPECT_FALSE(Evaluate(*by_email, PayloadEvent(&data)));
  const Header headers[] = {{"from", "bob@sharing-test.example"}};
  EventView event;
  event.headers = headers;
  EXPECT_TRUE(Evaluate(*by_header, event));

  // An invalid pattern is still reported, and not shared.
  FieldErrors errors;
  EXPECT_EQ(ParseCondition(Leaf("data.email", "regex", "(unclosed"), "c", errors), nullptr);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(LiveCompiledConditions().regexes, after.regexes);
}

TEST(ConditionSharing, SharedObjectsAreFreedWithTheirLastUser) {
  const std::string pattern = "^freed-with-last-user-[0-9]+$";
  const json list = json::array({Leaf("data.s", "regex", pattern)});
  const CompiledConditionCounts before = LiveCompiledConditions();
  {
    const ConditionPtr a = ParseConditionList(list, "trigger.conditions");
    const ConditionPtr b = ParseConditionList(list, "trigger.conditions");
    EXPECT_EQ(a.get(), b.get());
    EXPECT_EQ(LiveCompiledConditions().conditions, before.conditions + 1);
    EXPECT_EQ(LiveCompiledConditions().regexes, before.regexes + 1);
  }
  EXPECT_EQ(LiveCompiledConditions().conditions, before.conditions);
  EXPECT_EQ(LiveCompiledConditions().regexes, before.regexes);
  // Compiled anew, and correct.
  const ConditionPtr again = ParseConditionList(list, "trigger.conditions");
  const json data = {{"s", "freed-with-last-user-42"}};
  EXPECT_TRUE(Evaluate(*again, PayloadEvent(&data)));
  EXPECT_EQ(again->source(), list);
}

TEST(ConditionSharing, SourceThatCannotBeSerializedIsKeptAsIs) {
  // Invalid UTF-8 (only possible in programmatic JSON) cannot be a sharing key.
  const json invalid = Leaf("data.s", "eq", std::string("\xff"));
  const ConditionPtr a = ParseCondition(invalid, "c");
  const ConditionPtr b = ParseCondition(invalid, "c");
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(a->source(), invalid);
}

}  // namespace
}  // namespace workflowd::matching

namespace workflowd::matching {
namespace {

TEST(ConditionDataPaths, NameEveryPathBelowDataTheConditionReadsSortedOnce) {
  using Paths = std::vector<std::vector<std::string>>;
  auto paths = [](const char* text) {
    auto c = ParseConditionList(nlohmann::json::parse(text), "conditions");
    EXPECT_TRUE(c);
    const auto* p = c->data_paths();
    return p == nullptr ? Paths{{"<whole>"}} : *p;
  };
  EXPECT_EQ(
      paths(R"([{"field": "data.customer.country", "op": "eq", "value": "US"},
                      {"any": [{"field": "data.amount", "op": "gt", "value": 1},
                               {"not": {"field": "data.customer.tier", "op": "exists"}}]},
                      {"field": "data.customer.country", "op": "ne", "value": "FR"},
                      {"field": "headers.x-region", "op": "eq", "value": "eu"},
                      {"field": "data.items.0.sku", "op": "eq", "value": "a"}])"),
      (Paths{{"amount"}, {"customer", "country"}, {"customer", "tier"}, {"items", "0", "sku"}}));
  EXPECT_EQ(paths(R"([{"field": "type", "op": "eq", "value": "x"}])"), Paths{});
  EXPECT_EQ(paths(R"([{"field": "data.a.b", "op": "exists"}, {"field": "data", "op": "exists"}])"),
            Paths{{"<whole>"}});
}

}  // namespace
}  // namespace workflowd::matching
