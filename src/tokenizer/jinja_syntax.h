// The syntax tree of the Jinja subset (jinja.h): its values, expressions and
// statements, shared by the parser (jinja_parse.cpp) and the renderer
// (jinja.cpp). Private to src/tokenizer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace metareuse::tokenizer_detail {

// A chat template comes with a downloaded model: input, bounded like any
// other. jinja2's sandbox (which transformers uses) caps range() at 100,000
// items; this subset has no range(), but lists can be doubled with + and loops
// nested, so every way to grow is capped, each failing with an InputError
// that names the template and the bound.
constexpr int kMaxTemplateNesting = 100;                   // nested blocks, or nested expressions
constexpr std::size_t kMaxTemplateText = 16u << 20;        // bytes of any string, the output included
constexpr std::size_t kMaxTemplateList = 100000;           // items of any list
constexpr std::uint64_t kMaxTemplateIterations = 1000000;  // loop iterations of one rendering

struct Value;
using List = std::vector<Value>;
using Dict = std::map<std::string, Value>;

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kString, kList, kDict };
  Kind kind = Kind::kUndefined;
  bool boolean = false;
  long long integer = 0;
  std::string text;
  std::vector<int> origin;  // per byte of text (RenderedChat::origin's codes)
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::string undefined_name;  // for errors

  static Value none() { Value v; v.kind = Kind::kNone; return v; }
  static Value of_bool(bool b) { Value v; v.kind = Kind::kBool; v.boolean = b; return v; }
  static Value of_int(long long i) { Value v; v.kind = Kind::kInt; v.integer = i; return v; }
  static Value of_string(std::string s, int origin = 0) {
    Value v;
    v.kind = Kind::kString;
    v.origin.assign(s.size(), origin);
    v.text = std::move(s);
    return v;
  }
  static Value of_list(List items) { Value v; v.kind = Kind::kList; v.list = std::make_shared<List>(std::move(items)); return v; }
  static Value of_dict(Dict items) { Value v; v.kind = Kind::kDict; v.dict = std::make_shared<Dict>(std::move(items)); return v; }
  static Value undefined(std::string name) { Value v; v.undefined_name = std::move(name); return v; }
};

// a + b of two strings, keeping each byte's origin (the renderer's `+` and `~`,
// the parser's adjacent string literals).
Value concat(const Value& a, const Value& b);

struct Expr;
using ExprPtr = std::shared_ptr<Expr>;

struct Expr {
  enum class Kind { kLiteral, kName, kItem, kAttribute, kCall, kFilter, kTest, kBinary, kNot, kNegate, kList, kIf };
  Kind kind;
  Value literal;
  std::string name;  // name, attribute, filter, test, operator
  std::vector<ExprPtr> operands;
  bool negated = false;  // `is not`
};

struct Node {
  enum class Kind { kText, kOutput, kFor, kIf, kSet };
  Kind kind;
  std::string text;                // kText; kFor and kSet: the variable
  ExprPtr expression;              // kOutput, kFor (the iterable), kSet
  std::vector<ExprPtr> conditions;  // kIf: one per branch (nullptr for else)
  std::vector<std::vector<Node>> bodies;  // kIf: one per branch; kFor: {body}
};

// Parses a template into its statements; a construct outside the subset is an
// InputError naming `where` and the construct.
std::vector<Node> parse_template(const std::string& source, const std::string& where);

}  // namespace metareuse::tokenizer_detail
