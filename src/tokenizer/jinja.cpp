// The renderer of the Jinja subset behind ChatTemplate, written by hand because
// no C++ Jinja is packaged for Debian (see chat_template.h for the subset and
// how it is checked). Rendering follows jinja2 as transformers configures it
// (trim_blocks, lstrip_blocks, the default Undefined) so that the text is
// apply_chat_template's, byte for byte. The parser is jinja_parse.cpp.
#include "jinja.h"

#include <fmt/format.h>  // messages

#include <algorithm>
#include <climits>  // LLONG_MIN
#include <cctype>
#include <cstring>
#include <map>
#include <sstream>

#include "jinja_syntax.h"
#include "metareuse/core/error.h"

namespace metareuse::tokenizer_detail {

Value concat(const Value& a, const Value& b) {
  Value out = a;
  out.text += b.text;
  out.origin.insert(out.origin.end(), b.origin.begin(), b.origin.end());
  return out;
}

namespace {

// ------------------------------------------------------------------ values ----

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.boolean;
    case Value::Kind::kInt: return v.integer != 0;
    case Value::Kind::kString: return !v.text.empty();
    case Value::Kind::kList: return !v.list->empty();
    case Value::Kind::kDict: return !v.dict->empty();
  }
  return false;
}

// Python's str() of a value, as {{ }} prints it.
Value to_string_value(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return Value::of_string("");
    case Value::Kind::kNone: return Value::of_string("None");
    case Value::Kind::kBool: return Value::of_string(v.boolean ? "True" : "False");
    case Value::Kind::kInt: return Value::of_string(std::to_string(v.integer));
    case Value::Kind::kString: return v;
    case Value::Kind::kList:
    case Value::Kind::kDict: break;
  }
  throw InputError("chat template: printing a list or a mapping is not supported");
}

// Python's str.isspace() set, for trim (Python's str.strip()).
std::size_t whitespace_length(const std::string& s, std::size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
  auto starts = [&](const char* bytes) { return s.compare(i, std::strlen(bytes), bytes) == 0; };
  for (const char* space : {"\xc2\x85", "\xc2\xa0"}) {
    if (starts(space)) return 2;
  }
  for (const char* space : {"\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"}) {
    if (starts(space)) return 3;
  }
  // U+2000..U+200A: e2 80 80..8a
  if (i + 2 < s.size() && c == 0xe2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
      static_cast<unsigned char>(s[i + 2]) >= 0x80 && static_cast<unsigned char>(s[i + 2]) <= 0x8a) {
    return 3;
  }
  return 0;
}

Value substring(const Value& v, std::size_t begin, std::size_t end) {
  Value out = Value::of_string(v.text.substr(begin, end - begin));
  out.origin.assign(v.origin.begin() + static_cast<std::ptrdiff_t>(begin),
                    v.origin.begin() + static_cast<std::ptrdiff_t>(end));
  return out;
}

Value trim(const Value& v) {
  std::size_t begin = 0;
  while (begin < v.text.size()) {
    std::size_t n = whitespace_length(v.text, begin);
    if (n == 0) break;
    begin += n;
  }
  std::size_t end = v.text.size();
  // Walk back code point by code point.
  while (end > begin) {
    std::size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(v.text[start]) & 0xC0) == 0x80) --start;
    if (whitespace_length(v.text, start) != end - start) break;
    end = start;
  }
  return substring(v, begin, end);
}


bool equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  auto numeric = [](const Value& v) { return v.kind == K::kInt || v.kind == K::kBool; };
  if (numeric(a) && numeric(b)) {
    return (a.kind == K::kInt ? a.integer : a.boolean) == (b.kind == K::kInt ? b.integer : b.boolean);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::kUndefined:
    case K::kNone: return true;
    case K::kString: return a.text == b.text;
    case K::kList:
      if (a.list->size() != b.list->size()) return false;
      for (std::size_t i = 0; i < a.list->size(); ++i) {
        if (!equal((*a.list)[i], (*b.list)[i])) return false;
      }
      return true;
    default: return a.dict == b.dict;
  }
}

// -------------------------------------------------------------- evaluation ----

class Renderer {
 public:
  Renderer(const std::string& where, std::map<std::string, Value> globals) : where_(where) {
    scopes_.push_back(std::move(globals));
  }

  void run(const std::vector<Node>& nodes, Value& out) {
    for (const Node& node : nodes) {
      switch (node.kind) {
        case Node::Kind::kText: append(out, Value::of_string(node.text)); break;
        case Node::Kind::kOutput: append(out, to_string_value(evaluate(*node.expression))); break;
        case Node::Kind::kSet: scopes_.back()[node.text] = evaluate(*node.expression); break;
        case Node::Kind::kIf:
          for (std::size_t i = 0; i < node.conditions.size(); ++i) {
            if (node.conditions[i] == nullptr || truthy(evaluate(*node.conditions[i]))) {
              run(node.bodies[i], out);
              break;
            }
          }
          break;
        case Node::Kind::kFor: {
          Value iterable = evaluate(*node.expression);
          if (iterable.kind != Value::Kind::kList) fail("'for' needs a list");
          const List items = *iterable.list;
          for (std::size_t i = 0; i < items.size(); ++i) {
            if (++iterations_ > kMaxTemplateIterations) {
              fail(fmt::format("more than {} loop iterations in one rendering", kMaxTemplateIterations));
            }
            // Each iteration has its own scope: a `set` inside does not leak out.
            Dict loop = {{"index0", Value::of_int(static_cast<long long>(i))},
                         {"index", Value::of_int(static_cast<long long>(i + 1))},
                         {"first", Value::of_bool(i == 0)},
                         {"last", Value::of_bool(i + 1 == items.size())},
                         {"length", Value::of_int(static_cast<long long>(items.size()))},
                         {"revindex", Value::of_int(static_cast<long long>(items.size() - i))},
                         {"revindex0", Value::of_int(static_cast<long long>(items.size() - i - 1))}};
            scopes_.push_back({{node.text, items[i]}, {"loop", Value::of_dict(std::move(loop))}});
            run(node.bodies[0], out);
            scopes_.pop_back();
          }
          break;
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(fmt::format("{}: chat template: {}", where_, what));
  }

  // Every string a template builds is joined here, and the output appended
  // below: the two places a string's size is capped.
  Value join(const Value& a, const Value& b) const {
    if (a.text.size() + b.text.size() > kMaxTemplateText) {
      fail(fmt::format("a string grows past {} bytes", kMaxTemplateText));
    }
    return concat(a, b);
  }
  // The output grows in place: a copy per appended piece would make a long
  // rendering quadratic.
  void append(Value& out, const Value& piece) const {
    if (out.text.size() + piece.text.size() > kMaxTemplateText) {
      fail(fmt::format("a string grows past {} bytes", kMaxTemplateText));
    }
    out.text += piece.text;
    out.origin.insert(out.origin.end(), piece.origin.begin(), piece.origin.end());
  }

  Value lookup(const std::string& name) const {
    for (auto scope = scopes_.rbegin(); scope != scopes_.rend(); ++scope) {
      auto found = scope->find(name);
      if (found != scope->end()) return found->second;
    }
    return Value::undefined(name);
  }

  void require_defined(const Value& v) const {
    if (v.kind == Value::Kind::kUndefined) fail(fmt::format("'{}' is undefined", v.undefined_name));
  }

  Value evaluate(const Expr& e) {
    using K = Expr::Kind;
    switch (e.kind) {
      case K::kLiteral: return e.literal;
      case K::kName: return lookup(e.name);
      case K::kList: {
        List items;
        for (const auto& operand : e.operands) items.push_back(evaluate(*operand));
        return Value::of_list(std::move(items));
      }
      case K::kItem:
      case K::kAttribute: {
        Value object = evaluate(*e.operands[0]);
        require_defined(object);
        if (e.kind == K::kItem) {
          Value key = evaluate(*e.operands[1]);
          if (object.kind == Value::Kind::kList && key.kind == Value::Kind::kInt) {
            long long n = static_cast<long long>(object.list->size());
            long long i = key.integer < 0 ? key.integer + n : key.integer;
            if (i < 0 || i >= n) fail(fmt::format("list index {} out of range", key.integer));
            return (*object.list)[static_cast<std::size_t>(i)];
          }
          if (object.kind == Value::Kind::kDict && key.kind == Value::Kind::kString) {
            auto found = object.dict->find(key.text);
            return found == object.dict->end() ? Value::undefined(key.text) : found->second;
          }
          fail("only list[int] and mapping['key'] subscripts are supported");
        }
        if (object.kind == Value::Kind::kDict) {
          auto found = object.dict->find(e.name);
          return found == object.dict->end() ? Value::undefined(e.name) : found->second;
        }
        fail(fmt::format("attribute '{}' of a non-mapping is not supported", e.name));
      }
      case K::kCall: {
        const Expr& callee = *e.operands[0];
        if (callee.kind == K::kName && callee.name == "raise_exception") {
          std::string message = e.operands.size() > 1 ? to_string_value(evaluate(*e.operands[1])).text : "";
          fail("the template raised: " + message);
        }
        if (callee.kind == K::kAttribute && (callee.name == "strip" || callee.name == "upper" || callee.name == "lower")) {
          Value object = evaluate(*callee.operands[0]);
          if (object.kind == Value::Kind::kString && e.operands.size() == 1) return apply_filter(callee.name, object);
        }
        fail("calls other than raise_exception() and str.strip/upper/lower() are not supported");
      }
      case K::kFilter: {
        Value value = evaluate(*e.operands[0]);
        return apply_filter(e.name, value);
      }
      case K::kTest: {
        Value value = evaluate(*e.operands[0]);
        bool result;
        if (e.name == "defined") result = value.kind != Value::Kind::kUndefined;
        else if (e.name == "undefined") result = value.kind == Value::Kind::kUndefined;
        else if (e.name == "none") result = value.kind == Value::Kind::kNone;
        else if (e.name == "string") result = value.kind == Value::Kind::kString;
        else if (e.name == "mapping") result = value.kind == Value::Kind::kDict;
        else fail(fmt::format("the test 'is {}' is not supported (supported: defined, undefined, none, string, mapping)", e.name));
        return Value::of_bool(result != e.negated);
      }
      case K::kNot: return Value::of_bool(!truthy(evaluate(*e.operands[0])));
      case K::kNegate: {
        Value v = evaluate(*e.operands[0]);
        if (v.kind != Value::Kind::kInt) fail("unary '-' needs an integer");
        return Value::of_int(-v.integer);
      }
      case K::kIf:
        return truthy(evaluate(*e.operands[0])) ? evaluate(*e.operands[1]) : evaluate(*e.operands[2]);
      case K::kBinary: return binary(e);
    }
    fail("unknown expression");
  }

  Value apply_filter(const std::string& name, const Value& value) {
    require_defined(value);
    if (name == "trim" || name == "strip") {
      if (value.kind != Value::Kind::kString) fail("'trim' needs a string");
      return trim(value);
    }
    if (name == "length") {
      if (value.kind == Value::Kind::kString) return Value::of_int(static_cast<long long>(value.text.size()));
      if (value.kind == Value::Kind::kList) return Value::of_int(static_cast<long long>(value.list->size()));
      if (value.kind == Value::Kind::kDict) return Value::of_int(static_cast<long long>(value.dict->size()));
      fail("'length' needs a string, list or mapping");
    }
    if (name == "upper" || name == "lower") {
      if (value.kind != Value::Kind::kString) fail("'" + name + "' needs a string");
      Value out = value;
      for (char& c : out.text) {
        c = static_cast<char>(name == "upper" ? std::toupper(static_cast<unsigned char>(c))
                                              : std::tolower(static_cast<unsigned char>(c)));
      }
      return out;
    }
    fail(fmt::format("the filter '{}' is not supported (supported: trim, length, upper, lower)", name));
  }

  Value binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value left = evaluate(*e.operands[0]);
      return truthy(left) ? evaluate(*e.operands[1]) : left;
    }
    if (op == "or") {
      Value left = evaluate(*e.operands[0]);
      return truthy(left) ? left : evaluate(*e.operands[1]);
    }
    Value a = evaluate(*e.operands[0]);
    Value b = evaluate(*e.operands[1]);
    if (op == "==") return Value::of_bool(equal(a, b));
    if (op == "!=") return Value::of_bool(!equal(a, b));
    if (op == "~") return join(to_string_value(a), to_string_value(b));
    require_defined(a);
    require_defined(b);
    using VK = Value::Kind;
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == VK::kString && a.kind == VK::kString) found = b.text.find(a.text) != std::string::npos;
      else if (b.kind == VK::kList) found = std::any_of(b.list->begin(), b.list->end(), [&](const Value& v) { return equal(v, a); });
      else if (b.kind == VK::kDict && a.kind == VK::kString) found = b.dict->count(a.text) > 0;
      else fail("'in' needs a string, list or mapping on its right");
      return Value::of_bool(found != (op == "not in"));
    }
    if (op == "+" && a.kind == VK::kString && b.kind == VK::kString) return join(a, b);
    if (op == "+" && a.kind == VK::kList && b.kind == VK::kList) {
      if (a.list->size() + b.list->size() > kMaxTemplateList) {
        fail(fmt::format("a list grows past {} items", kMaxTemplateList));
      }
      List items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return Value::of_list(std::move(items));
    }
    if (a.kind == VK::kString && b.kind == VK::kString && (op == "<" || op == ">" || op == "<=" || op == ">=")) {
      int c = a.text.compare(b.text);
      return Value::of_bool(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (a.kind != VK::kInt || b.kind != VK::kInt) fail(fmt::format("'{}' needs two integers (or two strings for '+')", op));
    long long x = a.integer, y = b.integer, result = 0;
    if ((op == "+" && __builtin_add_overflow(x, y, &result)) || (op == "-" && __builtin_sub_overflow(x, y, &result)) ||
        (op == "*" && __builtin_mul_overflow(x, y, &result))) {
      fail(fmt::format("{} {} {} overflows a 64-bit integer", x, op, y));
    }
    if (op == "+" || op == "-" || op == "*") return Value::of_int(result);
    if (op == "//" || op == "%") {
      if (y == 0) fail("division by zero");
      if (y == -1 && x == LLONG_MIN) fail(fmt::format("{} {} -1 overflows a 64-bit integer", x, op));
      // Python's floor division and modulo.
      long long q = x / y;
      if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
      return Value::of_int(op == "//" ? q : x - q * y);
    }
    if (op == "<") return Value::of_bool(x < y);
    if (op == ">") return Value::of_bool(x > y);
    if (op == "<=") return Value::of_bool(x <= y);
    if (op == ">=") return Value::of_bool(x >= y);
    fail(fmt::format("unknown operator '{}'", op));
  }

  std::string where_;
  std::vector<std::map<std::string, Value>> scopes_;
  std::uint64_t iterations_ = 0;  // loop iterations so far, capped at kMaxTemplateIterations
};

}  // namespace

struct JinjaTemplate::Parsed {
  std::vector<Node> nodes;
};

JinjaTemplate::JinjaTemplate() = default;
JinjaTemplate::JinjaTemplate(JinjaTemplate&&) noexcept = default;
JinjaTemplate& JinjaTemplate::operator=(JinjaTemplate&&) noexcept = default;
JinjaTemplate::~JinjaTemplate() = default;

JinjaTemplate::JinjaTemplate(const std::string& source, const std::string& where)
    : where_(where), parsed_(std::make_unique<Parsed>()) {
  parsed_->nodes = parse_template(source, where);
}

RenderedChat JinjaTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                   const std::string& bos_token, const std::string& eos_token) const {
  MR_CHECK(parsed_ != nullptr, "render of a chat template that was never parsed");
  List message_values;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    // Message fields are data: content marked i + 1, the role -1.
    message_values.push_back(Value::of_dict({{"role", Value::of_string(messages[i].role, -1)},
                                             {"content", Value::of_string(messages[i].content, static_cast<int>(i) + 1)}}));
  }
  std::map<std::string, Value> globals = {{"messages", Value::of_list(std::move(message_values))},
                                          {"add_generation_prompt", Value::of_bool(add_generation_prompt)},
                                          {"bos_token", Value::of_string(bos_token)},
                                          {"eos_token", Value::of_string(eos_token)}};
  Renderer renderer(where_, std::move(globals));
  Value out = Value::of_string("");
  renderer.run(parsed_->nodes, out);
  return {std::move(out.text), std::move(out.origin)};
}

}  // namespace metareuse::tokenizer_detail