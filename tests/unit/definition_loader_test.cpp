// Definition files: JSON and YAML, the three file shapes, YAML scalar typing, and errors that
// name the file and the definition.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "workflowd/definitions/definition.hpp"

namespace workflowd::definitions {
namespace {

using nlohmann::json;

std::string ReadTestData(const std::string& name) {
  const std::string path = std::string(WORKFLOWD_DEFINITIONS_TESTDATA) + "/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The error text of loading `text`, or "" when it loads.
std::string LoadError(const std::string& text, const std::string& source) {
  try {
    DefinitionsFromYamlOrJson(text, source);
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "";
}

const char* const kMinimalYaml = R"(
tenant_id: t1
environment_id: prod
name: minimal
trigger: {type: event, event_name: customer.created}
steps:
  - {id: s1, type: send_email, config: {}}
provider: mock
)";

// A definition that names no provider gets the configured default (absent or null), else is
// refused naming the file, the definition and the fix; one that names its provider keeps it.
TEST(DefinitionFiles, TheDefaultProviderFillsInOnlyWhatIsNotNamed) {
  const std::string text = R"(definitions:
  - {tenant_id: t1, environment_id: prod, name: a, trigger: {type: manual}, steps: [{id: s, order: 1, type: send_email}]}
  - {tenant_id: t1, environment_id: prod, name: b, provider: null, trigger: {type: manual}, steps: [{id: s, order: 1, type: send_email}]}
  - {tenant_id: t1, environment_id: prod, name: c, provider: temporal, trigger: {type: manual}, steps: [{id: s, order: 1, type: send_email}]}
)";
  const auto loaded = DefinitionsFromYamlOrJson(text, "defs.yaml", LoadOptions{"stepfunctions"});
  ASSERT_EQ(loaded.size(), 3u);
  EXPECT_EQ(loaded[0].provider, "stepfunctions");
  EXPECT_EQ(loaded[1].provider, "stepfunctions");
  EXPECT_EQ(loaded[2].provider, "temporal");
  EXPECT_EQ(DefinitionToJson(loaded[0])["provider"], "stepfunctions");  // stored as named

  const std::string error = LoadError(text, "defs.yaml");
  EXPECT_EQ(error.rfind("defs.yaml: 2 problems: ", 0), 0u) << error;
  EXPECT_NE(error.find("definitions[0].provider: required: definition \"a\" names no provider "
                       "and no default provider is configured; add \"provider\": \"<engine>\" "
                       "to it, or set providers.default in workflowd's configuration"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("definitions[1].provider: required: definition \"b\""), std::string::npos)
      << error;
}

TEST(DefinitionFiles, YamlAndJsonGiveTheSameDefinition) {
  const auto from_json =
      DefinitionsFromYamlOrJson(ReadTestData("onboarding.json"), "onboarding.json");
  const auto from_yaml =
      DefinitionsFromYamlOrJson(ReadTestData("onboarding.yaml"), "onboarding.yaml");
  ASSERT_EQ(from_json.size(), 1u);
  ASSERT_EQ(from_yaml.size(), 1u);
  EXPECT_EQ(from_json[0], from_yaml[0]);
  EXPECT_EQ(DefinitionToJson(from_json[0]), DefinitionToJson(from_yaml[0]));
  EXPECT_EQ(from_yaml[0].id, "customer-onboarding");
  EXPECT_EQ(from_yaml[0].steps.size(), 3u);
  EXPECT_NE(from_yaml[0].trigger.compiled_conditions, nullptr);
  EXPECT_NE(from_yaml[0].steps[2].compiled_condition, nullptr);
  EXPECT_EQ(TopologicalStepOrder(from_yaml[0]),
            (std::vector<std::string>{"step_1", "step_2", "step_3"}));
}

TEST(DefinitionFiles, YamlScalarTyping) {
  const auto defs = DefinitionsFromYamlOrJson(ReadTestData("onboarding.yaml"), "onboarding.yaml");
  const json& config = defs[0].steps[1].config;
  EXPECT_TRUE(config["conversion_rate"].is_number_float());  // plain 1.0
  EXPECT_EQ(config["conversion_rate"], 1.0);
  EXPECT_TRUE(config["initial_credits"].is_number_integer());  // plain 100
  EXPECT_EQ(config["label"], "100");                           // quoted: a string
  EXPECT_EQ(config["currency"], "USD");
  EXPECT_EQ(config["auto_topup"], false);
  EXPECT_TRUE(config["note"].is_null());
  EXPECT_EQ(defs[0].steps[2].config["answer"], "yes");  // YAML 1.2: yes is a string
  EXPECT_EQ(defs[0].trigger.conditions[0]["value"], "US");
  EXPECT_EQ(defs[0].retry_policy.backoff_coefficient, 2.0);

  const std::string yaml = std::string(kMinimalYaml) + R"(
provider_config:
  hex: 0x1F
  octal: 0o17
  negative: -42
  exponent: 1e3
  half: .5
  plus: +7
  tagged: !!str 123
  nulls: [~, null, Null]
  empty:
  bools: [true, True, FALSE]
  words: [on, off, no, y, NULLX, 1.2.3, 0x, 08]
  big: 18446744073709551615
  huge: 123456789012345678901234567890
  literal: |
    line
  single: 'it''s'
  quoted_null: "null"
  quoted_true: 'true'
)";
  const json pc = DefinitionsFromYamlOrJson(yaml, "x.yaml")[0].provider_config;
  EXPECT_EQ(pc["hex"], 31);
  EXPECT_EQ(pc["octal"], 15);
  EXPECT_EQ(pc["negative"], -42);
  EXPECT_EQ(pc["exponent"], 1000.0);
  EXPECT_EQ(pc["half"], 0.5);
  EXPECT_EQ(pc["plus"], 7);
  EXPECT_EQ(pc["tagged"], "123");
  EXPECT_EQ(pc["nulls"], json::parse("[null, null, null]"));
  EXPECT_TRUE(pc.contains("empty"));
  EXPECT_TRUE(pc["empty"].is_null());
  EXPECT_EQ(pc["bools"], json::parse("[true, true, false]"));
  EXPECT_EQ(pc["words"], json::parse(R"(["on", "off", "no", "y", "NULLX", "1.2.3", "0x", 8])"));
  EXPECT_EQ(pc["big"], json::parse("18446744073709551615"));
  EXPECT_TRUE(pc["huge"].is_number_float());
  EXPECT_EQ(pc["literal"], "line\n");
  EXPECT_EQ(pc["single"], "it's");
  EXPECT_EQ(pc["quoted_null"], "null");
  EXPECT_EQ(pc["quoted_true"], "true");
}

TEST(DefinitionFiles, FileShapes) {
  const std::string one = ReadTestData("onboarding.json");
  const json definition = json::parse(one);
  json second = definition;
  second["id"] = "second";
  const json both = {definition, second};

  EXPECT_EQ(DefinitionsFromYamlOrJson(one, "one.json").size(), 1u);
  const auto list = DefinitionsFromYamlOrJson(both.dump(), "list.json");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1].id, "second");
  const auto wrapped =
      DefinitionsFromYamlOrJson(json({{"definitions", both}}).dump(), "wrapped.json");
  ASSERT_EQ(wrapped.size(), 2u);
  EXPECT_EQ(wrapped[0], list[0]);
  EXPECT_TRUE(DefinitionsFromYamlOrJson("[]", "empty.json").empty());

  // YAML list and wrapped forms.
  const std::string yaml_list = "- " + json(definition).dump() + "\n- " + second.dump() + "\n";
  EXPECT_EQ(DefinitionsFromYamlOrJson(yaml_list, "list.yaml").size(), 2u);
  const std::string yaml_wrapped = "definitions:\n  - " + definition.dump() + "\n";
  EXPECT_EQ(DefinitionsFromYamlOrJson(yaml_wrapped, "wrapped.yml").size(), 1u);
}

TEST(DefinitionFiles, FormatDetection) {
  // No telling extension: '{' or '[' means JSON, anything else YAML.
  EXPECT_EQ(DefinitionsFromYamlOrJson(kMinimalYaml, "stdin").size(), 1u);
  const std::string json_text = ReadTestData("onboarding.json");
  EXPECT_EQ(DefinitionsFromYamlOrJson(json_text, "stdin").size(), 1u);
  // A .json file is parsed strictly as JSON: YAML flow syntax is a JSON syntax error.
  EXPECT_NE(LoadError("{name: x}", "a.json").find("invalid JSON"), std::string::npos);
  EXPECT_NE(LoadError("{name: x}", "a.YAML").find("tenant_id: required"), std::string::npos);
}

TEST(DefinitionFiles, ErrorsNameTheFileAndTheDefinition) {
  json good = json::parse(ReadTestData("onboarding.json"));
  json bad = good;
  bad["id"] = "other";
  bad["name"] = "";
  bad["steps"][0]["type"] = "charge_card";
  const std::string wrapped = LoadError(json({{"definitions", {good, bad}}}).dump(), "defs.json");
  EXPECT_EQ(wrapped.rfind("defs.json: 2 problems: ", 0), 0u) << wrapped;
  EXPECT_NE(wrapped.find("definitions[1].name: required"), std::string::npos) << wrapped;
  EXPECT_NE(wrapped.find("definitions[1].steps[0].type: unknown step type \"charge_card\""),
            std::string::npos)
      << wrapped;

  try {
    DefinitionsFromYamlOrJson(json({good, bad}).dump(), "list.json");
    ADD_FAILURE() << "expected ValidationError";
  } catch (const ValidationError& e) {
    EXPECT_TRUE(e.errors().HasField("[1].name")) << e.what();
    EXPECT_TRUE(e.errors().HasField("[1].steps[0].type")) << e.what();
  }

  const std::string yaml = std::string(kMinimalYaml) + "trigger_typo: 1\n";
  EXPECT_NE(
      LoadError(yaml, "single.yaml").find("single.yaml: 1 problem: trigger_typo: unknown key"),
      std::string::npos);

  const std::string duplicate = LoadError(json({good, good}).dump(), "dup.json");
  EXPECT_NE(duplicate.find("[1].id: duplicate definition id \"customer-onboarding\""),
            std::string::npos)
      << duplicate;

  EXPECT_NE(LoadError(json({{"definitions", {good}}, {"version", 2}}).dump(), "w.json")
                .find("version: unknown key"),
            std::string::npos);
  EXPECT_NE(
      LoadError(json({{"definitions", good}}).dump(), "w.json").find("definitions: must be a list"),
      std::string::npos);
  EXPECT_NE(LoadError("42", "n.json").find("expected a workflow definition object"),
            std::string::npos);
}

TEST(DefinitionFiles, SyntaxErrors) {
  const std::string json_error = LoadError("{\"name\": \"x\",\n  \"steps\": [}", "broken.json");
  EXPECT_NE(json_error.find("broken.json: 1 problem: invalid JSON: parse error at line 2"),
            std::string::npos)
      << json_error;
  const std::string yaml_error = LoadError("name: x\nsteps: [a, b\n", "broken.yaml");
  EXPECT_NE(yaml_error.find("broken.yaml: 1 problem: invalid YAML: line "), std::string::npos)
      << yaml_error;
  EXPECT_NE(LoadError("a: 1\na: 2\n", "dup.yaml").find("a: line 2, column 1: duplicate key \"a\""),
            std::string::npos)
      << LoadError("a: 1\na: 2\n", "dup.yaml");
  EXPECT_NE(LoadError("a: 1\n---\nb: 2\n", "multi.yaml").find("several YAML documents"),
            std::string::npos);
  EXPECT_NE(LoadError("", "empty.yaml").find("empty"), std::string::npos);
  EXPECT_NE(LoadError("a: .inf\n", "inf.yaml").find("cannot be represented in JSON"),
            std::string::npos);
  EXPECT_NE(LoadError("a: !custom 1\n", "tag.yaml").find("unsupported YAML tag"),
            std::string::npos);
  EXPECT_NE(LoadError("a: !!int abc\n", "tag.yaml").find("is not a valid int"), std::string::npos);
  EXPECT_NE(LoadError("? [a, b]\n: 1\n", "key.yaml").find("mapping keys must be plain strings"),
            std::string::npos);

  std::string deep_json;
  for (int i = 0; i < 200; ++i) deep_json += "[";
  EXPECT_NE(LoadError(deep_json, "deep.json").find("nested deeper than 64"), std::string::npos);
}

// The problems of loading `text` (from the ValidationError), checked to serialize as JSON: they
// reach the CLI and the REST API as JSON, so they must be valid UTF-8.
FieldErrors LoadProblems(const std::string& text, const std::string& source) {
  try {
    DefinitionsFromYamlOrJson(text, source);
  } catch (const ValidationError& e) {
    EXPECT_NO_THROW((void)e.errors().ToJson().dump()) << e.errors().ToString();
    EXPECT_NO_THROW((void)json(e.what()).dump());
    return e.errors();
  }
  ADD_FAILURE() << source << " loaded";
  return {};
}

TEST(DefinitionFiles, ParserMessagesGivePositionsNotInputBytes) {
  // nlohmann quotes the bytes it last read ("last read: '\xC3'"): half a character here.
  const FieldErrors json_problems = LoadProblems("{\"name\": \xC3\xA9t\xC3\xA9}", "bad.json");
  ASSERT_EQ(json_problems.size(), 1u);
  const std::string json_message = json_problems.items()[0].message;
  EXPECT_TRUE(json_message.starts_with("invalid JSON: parse error at line 1, column "))
      << json_message;
  EXPECT_NE(json_message.find("syntax error while parsing value"), std::string::npos)
      << json_message;
  EXPECT_EQ(json_message.find("last read"), std::string::npos) << json_message;
  EXPECT_EQ(json_message.find('\xC3'), std::string::npos) << json_message;

  // yaml-cpp appends the offending character's first byte ("unknown escape character: \xC3").
  const FieldErrors yaml_problems = LoadProblems("a: \"\\\xC3\xA9\"\n", "bad.yaml");
  ASSERT_EQ(yaml_problems.size(), 1u);
  const std::string yaml_message = yaml_problems.items()[0].message;
  EXPECT_TRUE(yaml_message.starts_with("invalid YAML: line 1, column ")) << yaml_message;
  EXPECT_TRUE(yaml_message.ends_with(": unknown escape character")) << yaml_message;

  const FieldErrors number = LoadProblems("{\"a\": 1e999}", "big.json");
  ASSERT_EQ(number.size(), 1u);
  EXPECT_EQ(number.items()[0].message, "invalid JSON: a number is out of range");
}

TEST(DefinitionFiles, ANulCharacterIsAProblem) {
  // yaml-cpp turned a NUL inside a key into an ill-formed byte that reached the stored definition
  // (found by the definition fuzzer); YAML does not allow NUL at all.
  const std::string yaml =
      std::string(kMinimalYaml) + "x:\n  plans" + std::string(1, '\0') + "_id: plan_starter\n";
  const size_t at = yaml.find('\0');
  EXPECT_EQ(LoadError(yaml, "nul.yaml"),
            "nul.yaml: 1 problem: NUL character at line 10, column 8 (byte offset " +
                std::to_string(at) +
                "); YAML and JSON files cannot contain one (write \\u0000 in a JSON string)");
  EXPECT_NE(
      LoadError("{\"name\": \"a" + std::string(1, '\0') + "\"}", "nul.json").find("NUL character"),
      std::string::npos);
}

TEST(DefinitionFiles, FilesMustBeUtf8) {
  // A Latin-1 "Café" used to pass validation and fail only when the definition was stored.
  const std::string latin1 = std::string(kMinimalYaml) + "description: Caf\xE9 (Latin-1)\n";
  const std::string error = LoadError(latin1, "latin1.yaml");
  EXPECT_EQ(error, "latin1.yaml: 1 problem: not valid UTF-8 at line 9, column 17 (byte offset " +
                       std::to_string(latin1.find('\xE9')) + "); the file must be UTF-8");
  LoadProblems(latin1, "latin1.yaml");

  const std::string json_error = LoadError("{\"name\": \"caf\xE9\"}", "latin1.json");
  EXPECT_EQ(json_error,
            "latin1.json: 1 problem: not valid UTF-8 at line 1, column 14 (byte offset 13); the "
            "file must be UTF-8");
  // Characters, not bytes, before the ill-formed one count as columns.
  EXPECT_NE(LoadError("name: \xC3\xA9\xE2\x82\xAC\xED\xA0\x80\n", "s.yaml")
                .find("at line 1, column 9 (byte offset 11)"),
            std::string::npos);
  // UTF-16 (with its byte order mark), overlong forms and a cut-off sequence are not UTF-8.
  for (const std::string& bad : {std::string("\xFF\xFEn\0a\0", 6), std::string("a: \xC0\xAF\n"),
                                 std::string("a: b\xF0\x9F\x98")}) {
    EXPECT_NE(LoadError(bad, "bad.yaml").find("the file must be UTF-8"), std::string::npos)
        << LoadError(bad, "bad.yaml");
  }
  // Valid UTF-8, with or without a byte order mark, loads.
  EXPECT_EQ(LoadError(std::string(kMinimalYaml) + "description: Caf\xC3\xA9 \xF0\x9F\x98\x80\n",
                      "utf8.yaml"),
            "");
  EXPECT_EQ(LoadError("\xEF\xBB\xBF" + std::string(kMinimalYaml), "bom.yaml"), "");
}

TEST(DefinitionFiles, YamlDocumentsAreCountedWithABound) {
  // yaml-cpp's parser does not move past a stray ',' at the top level: YAML::LoadAll never ended.
  EXPECT_EQ(LoadError(",\n", "comma.yaml"),
            "comma.yaml: 1 problem: invalid YAML: line 1, column 1: unexpected character");
  EXPECT_EQ(LoadError("- a\n,\n", "comma.yaml"),
            "comma.yaml: 1 problem: invalid YAML: line 2, column 1: unexpected character");
  // One document, with explicit start and end markers, is fine; more are not.
  EXPECT_EQ(LoadError("---\n" + std::string(kMinimalYaml) + "...\n", "one.yaml"), "");
  EXPECT_NE(LoadError(std::string(kMinimalYaml) + "---\n", "two.yaml").find("several YAML"),
            std::string::npos);
  std::string many;
  for (int i = 0; i < 100; ++i) many += "---\na: " + std::to_string(i) + "\n";
  EXPECT_NE(LoadError(many, "many.yaml").find("several YAML documents"), std::string::npos);
  EXPECT_NE(LoadError("---\n", "empty.yaml").find("expected a workflow definition"),
            std::string::npos);
  EXPECT_NE(LoadError("# only a comment\n", "empty.yaml").find("empty document"),
            std::string::npos);
}

TEST(DefinitionFiles, AliasExpansionIsBounded) {
  // Each level multiplies by ten: 10^6 nodes from a few hundred bytes.
  std::string yaml = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int level = 1; level <= 6; ++level) {
    const std::string prev = "*l" + std::to_string(level - 1);
    yaml += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [";
    for (int i = 0; i < 10; ++i) yaml += (i ? ", " : "") + prev;
    yaml += "]\n";
  }
  EXPECT_NE(LoadError(yaml, "bomb.yaml").find("expands to more than"), std::string::npos);
}

}  // namespace
}  // namespace workflowd::definitions
