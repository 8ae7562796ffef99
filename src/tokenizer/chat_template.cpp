// The chat template interpreter: the Jinja subset that Hugging Face chat
// templates use, written by hand because no C++ Jinja is packaged for Debian
// (see chat_template.h for the subset and how it is checked). Rendering
// follows jinja2 as transformers configures it (trim_blocks, lstrip_blocks,
// the default Undefined) so that the text is apply_chat_template's, byte for byte.
#include "metareuse/tokenizer/chat_template.h"

#include <fmt/format.h>       // messages
#include <nlohmann/json.hpp>  // tokenizer_config.json, tokenizer.json

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "metareuse/core/error.h"
#include "metareuse/core/looked_for.h"

namespace metareuse {

namespace {

// ------------------------------------------------------------------ values ----

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

Value concat(const Value& a, const Value& b) {
  Value out = a;
  out.text += b.text;
  out.origin.insert(out.origin.end(), b.origin.begin(), b.origin.end());
  return out;
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

// ------------------------------------------------------------- expressions ----

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

ExprPtr make(Expr::Kind kind, std::string name = {}, std::vector<ExprPtr> operands = {}) {
  auto e = std::make_shared<Expr>();
  e->kind = kind;
  e->name = std::move(name);
  e->operands = std::move(operands);
  return e;
}

struct Token {
  enum class Kind { kName, kString, kInt, kOperator, kEnd };
  Kind kind;
  std::string text;
};

class ExpressionParser {
 public:
  ExpressionParser(const std::string& source, const std::string& where) : where_(where) { lex(source); }

  ExprPtr parse_expression() { return parse_conditional(); }
  bool at_end() const { return peek().kind == Token::Kind::kEnd; }
  bool accept_name(const char* name) {
    if (peek().kind == Token::Kind::kName && peek().text == name) {
      ++position_;
      return true;
    }
    return false;
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::kName) fail("a name");
    return tokens_[position_++].text;
  }
  void expect_operator(const char* op) {
    if (!accept_operator(op)) fail(std::string("'") + op + "'");
  }
  void expect_end() {
    if (!at_end()) fail("the end of the tag");
  }
  [[noreturn]] void fail(const std::string& wanted) const {
    throw InputError(fmt::format("{}: chat template: expected {} at '{}'", where_, wanted,
                                 peek().kind == Token::Kind::kEnd ? std::string("end of tag") : peek().text));
  }

 private:
  const Token& peek() const { return tokens_[position_]; }
  bool accept_operator(const char* op) {
    if (peek().kind == Token::Kind::kOperator && peek().text == op) {
      ++position_;
      return true;
    }
    return false;
  }

  void lex(const std::string& s) {
    std::size_t i = 0;
    while (i < s.size()) {
      char c = s[i];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++i;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t j = i;
        while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
        tokens_.push_back({Token::Kind::kName, s.substr(i, j - i)});
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        std::size_t j = i;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        if (j < s.size() && s[j] == '.') throw InputError(fmt::format("{}: chat template: floats are not supported", where_));
        tokens_.push_back({Token::Kind::kInt, s.substr(i, j - i)});
        i = j;
      } else if (c == '\'' || c == '"') {
        std::string text;
        std::size_t j = i + 1;
        for (; j < s.size() && s[j] != c; ++j) {
          if (s[j] == '\\' && j + 1 < s.size()) {
            char e = s[++j];
            text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
          } else {
            text += s[j];
          }
        }
        if (j >= s.size()) throw InputError(fmt::format("{}: chat template: unterminated string", where_));
        tokens_.push_back({Token::Kind::kString, text});
        i = j + 1;
      } else {
        static const char* const two[] = {"==", "!=", "<=", ">=", "//"};
        std::string op(1, c);
        for (const char* candidate : two) {
          if (s.compare(i, 2, candidate) == 0) op = candidate;
        }
        if (op.size() == 1 && std::string("()[].,|+-*/%~<>=:").find(c) == std::string::npos) {
          throw InputError(fmt::format("{}: chat template: unexpected character '{}'", where_, c));
        }
        tokens_.push_back({Token::Kind::kOperator, op});
        i += op.size();
      }
    }
    tokens_.push_back({Token::Kind::kEnd, ""});
  }

  ExprPtr parse_conditional() {
    ExprPtr value = parse_or();
    // `a if condition else b`: the `if` here is not a statement keyword.
    if (peek().kind == Token::Kind::kName && peek().text == "if") {
      ++position_;
      ExprPtr condition = parse_or();
      ExprPtr otherwise = accept_name("else") ? parse_conditional() : make(Expr::Kind::kLiteral);
      return make(Expr::Kind::kIf, "", {condition, value, otherwise});
    }
    return value;
  }
  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (accept_name("or")) left = make(Expr::Kind::kBinary, "or", {left, parse_and()});
    return left;
  }
  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (accept_name("and")) left = make(Expr::Kind::kBinary, "and", {left, parse_not()});
    return left;
  }
  ExprPtr parse_not() {
    if (accept_name("not")) return make(Expr::Kind::kNot, "", {parse_not()});
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr left = parse_add();
    while (true) {
      std::string op;
      for (const char* candidate : {"==", "!=", "<=", ">=", "<", ">"}) {
        if (accept_operator(candidate)) {
          op = candidate;
          break;
        }
      }
      if (op.empty() && accept_name("in")) op = "in";
      if (op.empty() && peek().kind == Token::Kind::kName && peek().text == "not" &&
          tokens_[position_ + 1].kind == Token::Kind::kName && tokens_[position_ + 1].text == "in") {
        position_ += 2;
        op = "not in";
      }
      if (op.empty()) return left;
      left = make(Expr::Kind::kBinary, op, {left, parse_add()});
    }
  }
  ExprPtr parse_add() {
    ExprPtr left = parse_multiply();
    while (true) {
      std::string op;
      for (const char* candidate : {"+", "-", "~"}) {
        if (accept_operator(candidate)) {
          op = candidate;
          break;
        }
      }
      if (op.empty()) return left;
      left = make(Expr::Kind::kBinary, op, {left, parse_multiply()});
    }
  }
  ExprPtr parse_multiply() {
    ExprPtr left = parse_unary();
    while (true) {
      std::string op;
      for (const char* candidate : {"*", "//", "%"}) {
        if (accept_operator(candidate)) {
          op = candidate;
          break;
        }
      }
      if (op.empty()) {
        if (peek().kind == Token::Kind::kOperator && peek().text == "/") {
          throw InputError(fmt::format("{}: chat template: '/' (float division) is not supported", where_));
        }
        return left;
      }
      left = make(Expr::Kind::kBinary, op, {left, parse_unary()});
    }
  }
  ExprPtr parse_unary() {
    if (accept_operator("-")) return make(Expr::Kind::kNegate, "", {parse_unary()});
    return parse_filtered(parse_postfix(parse_primary()));
  }
  // Filters and tests bind tighter than every binary operator (jinja2's parse_filter_expr).
  ExprPtr parse_filtered(ExprPtr value) {
    while (true) {
      if (accept_operator("|")) {
        std::string filter = expect_name();
        auto e = make(Expr::Kind::kFilter, filter, {value});
        if (accept_operator("(")) parse_arguments(e->operands);
        value = e;
      } else if (accept_name("is")) {
        bool negated = accept_name("not");
        auto e = make(Expr::Kind::kTest, expect_name(), {value});
        e->negated = negated;
        value = e;
      } else {
        return value;
      }
    }
  }
  void parse_arguments(std::vector<ExprPtr>& into) {
    if (accept_operator(")")) return;
    do {
      into.push_back(parse_expression());
    } while (accept_operator(","));
    expect_operator(")");
  }
  ExprPtr parse_postfix(ExprPtr value) {
    while (true) {
      if (accept_operator("[")) {
        value = make(Expr::Kind::kItem, "", {value, parse_expression()});
        expect_operator("]");
      } else if (accept_operator(".")) {
        value = make(Expr::Kind::kAttribute, expect_name(), {value});
      } else if (accept_operator("(")) {
        auto call = make(Expr::Kind::kCall, "", {value});
        parse_arguments(call->operands);
        value = call;
      } else {
        return value;
      }
    }
  }
  ExprPtr parse_primary() {
    const Token token = peek();
    if (token.kind == Token::Kind::kString) {
      ++position_;
      auto e = make(Expr::Kind::kLiteral);
      e->literal = Value::of_string(token.text);
      // Adjacent string literals concatenate, as in Python.
      while (peek().kind == Token::Kind::kString) e->literal = concat(e->literal, Value::of_string(tokens_[position_++].text));
      return e;
    }
    if (token.kind == Token::Kind::kInt) {
      ++position_;
      auto e = make(Expr::Kind::kLiteral);
      e->literal = Value::of_int(std::stoll(token.text));
      return e;
    }
    if (token.kind == Token::Kind::kName) {
      ++position_;
      auto e = make(Expr::Kind::kLiteral);
      if (token.text == "true" || token.text == "True") e->literal = Value::of_bool(true);
      else if (token.text == "false" || token.text == "False") e->literal = Value::of_bool(false);
      else if (token.text == "none" || token.text == "None") e->literal = Value::none();
      else return make(Expr::Kind::kName, token.text);
      return e;
    }
    if (accept_operator("(")) {
      ExprPtr inner = parse_expression();
      expect_operator(")");
      return inner;
    }
    if (accept_operator("[")) {
      auto e = make(Expr::Kind::kList);
      if (!accept_operator("]")) {
        do {
          e->operands.push_back(parse_expression());
        } while (accept_operator(","));
        expect_operator("]");
      }
      return e;
    }
    fail("a value");
  }

  std::string where_;
  std::vector<Token> tokens_;
  std::size_t position_ = 0;
};

// -------------------------------------------------------------- statements ----

struct Node {
  enum class Kind { kText, kOutput, kFor, kIf, kSet };
  Kind kind;
  std::string text;                // kText; kFor and kSet: the variable
  ExprPtr expression;              // kOutput, kFor (the iterable), kSet
  std::vector<ExprPtr> conditions;  // kIf: one per branch (nullptr for else)
  std::vector<std::vector<Node>> bodies;  // kIf: one per branch; kFor: {body}
};

struct RawPiece {
  enum class Kind { kText, kOutput, kStatement, kComment };
  Kind kind;
  std::string content;
  bool strip_before = false;  // {%- {{- {#-
  bool strip_after = false;   // -%} -}} -#}
};

// Splits the template into text and tags, applying whitespace control and
// transformers' trim_blocks / lstrip_blocks.
std::vector<RawPiece> split_template(const std::string& source, const std::string& where) {
  std::vector<RawPiece> pieces;
  std::size_t i = 0;
  while (i < source.size()) {
    std::size_t open = source.find('{', i);
    while (open != std::string::npos && open + 1 < source.size() && std::string("{%#").find(source[open + 1]) == std::string::npos) {
      open = source.find('{', open + 1);
    }
    if (open == std::string::npos || open + 1 >= source.size()) {
      pieces.push_back({RawPiece::Kind::kText, source.substr(i)});
      break;
    }
    if (open > i) pieces.push_back({RawPiece::Kind::kText, source.substr(i, open - i)});
    char type = source[open + 1];
    const char* close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    std::size_t end = source.find(close, open + 2);
    if (end == std::string::npos) {
      throw InputError(fmt::format("{}: chat template: a tag opened at byte {} is not closed with '{}'", where, open, close));
    }
    RawPiece piece;
    piece.kind = type == '{' ? RawPiece::Kind::kOutput : type == '%' ? RawPiece::Kind::kStatement : RawPiece::Kind::kComment;
    std::size_t content_begin = open + 2, content_end = end;
    bool keep_before = false;
    if (content_begin < content_end && source[content_begin] == '-') {
      piece.strip_before = true;
      ++content_begin;
    } else if (content_begin < content_end && source[content_begin] == '+') {
      keep_before = true;
      ++content_begin;
    }
    if (content_end > content_begin && source[content_end - 1] == '-') {
      piece.strip_after = true;
      --content_end;
    }
    piece.content = source.substr(content_begin, content_end - content_begin);
    const bool block = piece.kind != RawPiece::Kind::kOutput;
    // lstrip_blocks: spaces and tabs between a line start and a block tag go.
    if (block && !keep_before && !pieces.empty() && pieces.back().kind == RawPiece::Kind::kText) {
      std::string& text = pieces.back().content;
      std::size_t line_start = text.find_last_of('\n');
      line_start = line_start == std::string::npos ? 0 : line_start + 1;
      bool at_line_start = line_start > 0 || pieces.size() == 1;
      if (at_line_start && text.find_first_not_of(" \t", line_start) == std::string::npos) text.erase(line_start);
    }
    if (piece.strip_before && !pieces.empty() && pieces.back().kind == RawPiece::Kind::kText) {
      std::string& text = pieces.back().content;
      std::size_t last = text.find_last_not_of(" \t\r\n");
      text.erase(last == std::string::npos ? 0 : last + 1);
    }
    pieces.push_back(piece);
    i = end + 2;
    if (piece.strip_after) {
      while (i < source.size() && std::string(" \t\r\n").find(source[i]) != std::string::npos) ++i;
    } else if (block && i < source.size()) {
      // trim_blocks: the first newline after a block tag goes.
      if (source[i] == '\n') ++i;
      else if (source.compare(i, 2, "\r\n") == 0) i += 2;
    }
  }
  return pieces;
}

std::vector<Node> parse_nodes(const std::vector<RawPiece>& pieces, std::size_t& index, const std::string& where,
                              const std::vector<std::string>& terminators, std::string& terminator,
                              std::unique_ptr<ExpressionParser>& terminator_parser) {
  std::vector<Node> nodes;
  while (index < pieces.size()) {
    const RawPiece& piece = pieces[index++];
    if (piece.kind == RawPiece::Kind::kComment) continue;
    if (piece.kind == RawPiece::Kind::kText) {
      if (!piece.content.empty()) nodes.push_back({Node::Kind::kText, piece.content, nullptr, {}, {}});
      continue;
    }
    auto parser = std::make_unique<ExpressionParser>(piece.content, where);
    if (piece.kind == RawPiece::Kind::kOutput) {
      Node node{Node::Kind::kOutput, "", parser->parse_expression(), {}, {}};
      parser->expect_end();
      nodes.push_back(std::move(node));
      continue;
    }
    std::string keyword = parser->expect_name();
    if (std::find(terminators.begin(), terminators.end(), keyword) != terminators.end()) {
      terminator = keyword;
      terminator_parser = std::move(parser);
      return nodes;
    }
    if (keyword == "set") {
      Node node{Node::Kind::kSet, parser->expect_name(), nullptr, {}, {}};
      parser->expect_operator("=");
      node.expression = parser->parse_expression();
      parser->expect_end();
      nodes.push_back(std::move(node));
    } else if (keyword == "for") {
      Node node{Node::Kind::kFor, parser->expect_name(), nullptr, {}, {}};
      if (!parser->accept_name("in")) parser->fail("'in'");
      node.expression = parser->parse_expression();
      parser->expect_end();
      std::string end;
      std::unique_ptr<ExpressionParser> end_parser;
      node.bodies.push_back(parse_nodes(pieces, index, where, {"endfor"}, end, end_parser));
      if (end.empty()) throw InputError(fmt::format("{}: chat template: 'for' without 'endfor'", where));
      nodes.push_back(std::move(node));
    } else if (keyword == "if") {
      Node node{Node::Kind::kIf, "", nullptr, {}, {}};
      node.conditions.push_back(parser->parse_expression());
      parser->expect_end();
      while (true) {
        std::string end;
        std::unique_ptr<ExpressionParser> end_parser;
        node.bodies.push_back(parse_nodes(pieces, index, where, {"elif", "else", "endif"}, end, end_parser));
        if (end.empty()) throw InputError(fmt::format("{}: chat template: 'if' without 'endif'", where));
        if (end == "endif") break;
        if (end == "elif") {
          node.conditions.push_back(end_parser->parse_expression());
        } else {
          node.conditions.push_back(nullptr);
        }
        end_parser->expect_end();
      }
      nodes.push_back(std::move(node));
    } else {
      throw InputError(fmt::format("{}: chat template: the statement '{}' is not supported (supported: set, for, if)",
                                   where, keyword));
    }
  }
  return nodes;
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
        case Node::Kind::kText: out = concat(out, Value::of_string(node.text)); break;
        case Node::Kind::kOutput: out = concat(out, to_string_value(evaluate(*node.expression))); break;
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
    if (op == "~") return concat(to_string_value(a), to_string_value(b));
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
    if (op == "+" && a.kind == VK::kString && b.kind == VK::kString) return concat(a, b);
    if (op == "+" && a.kind == VK::kList && b.kind == VK::kList) {
      List items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return Value::of_list(std::move(items));
    }
    if (a.kind == VK::kString && b.kind == VK::kString && (op == "<" || op == ">" || op == "<=" || op == ">=")) {
      int c = a.text.compare(b.text);
      return Value::of_bool(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (a.kind != VK::kInt || b.kind != VK::kInt) fail(fmt::format("'{}' needs two integers (or two strings for '+')", op));
    long long x = a.integer, y = b.integer;
    if (op == "+") return Value::of_int(x + y);
    if (op == "-") return Value::of_int(x - y);
    if (op == "*") return Value::of_int(x * y);
    if (op == "//" || op == "%") {
      if (y == 0) fail("division by zero");
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
};

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot open '{}': {}", path.string(), why_unreadable(path.string())));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

nlohmann::json read_json(const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  }
}

std::string token_text(const nlohmann::json& config, const char* key, const std::filesystem::path& path) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  throw InputError(fmt::format("{}: key '{}' must be a string or an object with 'content'", path.string(), key));
}

}  // namespace

struct ChatTemplate::Program {
  std::string where;
  std::vector<Node> nodes;
  std::string bos_token;
  std::string eos_token;
  std::vector<std::string> special_texts;  // longest first
};

ChatTemplate::ChatTemplate(std::unique_ptr<Program> program) : program_(std::move(program)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

const std::string& ChatTemplate::where() const { return program_->where; }

ChatTemplate ChatTemplate::parse(const std::string& source, const std::string& where, std::string bos_token,
                                 std::string eos_token, std::vector<std::string> special_texts) {
  auto program = std::make_unique<Program>();
  program->where = where;
  std::vector<RawPiece> pieces = split_template(source, where);
  std::size_t index = 0;
  std::string terminator;
  std::unique_ptr<ExpressionParser> terminator_parser;
  program->nodes = parse_nodes(pieces, index, where, {}, terminator, terminator_parser);
  program->bos_token = std::move(bos_token);
  program->eos_token = std::move(eos_token);
  std::sort(special_texts.begin(), special_texts.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  special_texts.erase(std::remove(special_texts.begin(), special_texts.end(), std::string()), special_texts.end());
  program->special_texts = std::move(special_texts);
  return ChatTemplate(std::move(program));
}

ChatTemplate ChatTemplate::load(const std::string& folder) {
  namespace fs = std::filesystem;
  const fs::path config_path = fs::path(folder) / "tokenizer_config.json";
  if (!fs::exists(config_path)) throw InputError(fmt::format("{}: no tokenizer_config.json (the chat template's home; looked for {})",
                                                            folder, absolute_text(config_path.string())));
  nlohmann::json config = read_json(config_path);
  std::string source;
  std::string where = config_path.string();
  auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) {
    source = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {
    // Named templates: [{"name": "default", "template": ...}, ...].
    for (const auto& entry : *it) {
      if (entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string()) {
        source = entry["template"].get<std::string>();
      }
    }
    if (source.empty()) throw InputError(fmt::format("{}: key 'chat_template' has no template named 'default'", where));
  } else if (fs::exists(fs::path(folder) / "chat_template.jinja")) {
    where = (fs::path(folder) / "chat_template.jinja").string();
    source = read_text(where);
  } else {
    throw InputError(fmt::format("{}: no key 'chat_template' and no chat_template.jinja next to it", where));
  }
  std::vector<std::string> specials;
  const fs::path tokenizer_path = fs::path(folder) / "tokenizer.json";
  if (fs::exists(tokenizer_path)) {
    nlohmann::json tokenizer = read_json(tokenizer_path);
    for (const auto& added : tokenizer.value("added_tokens", nlohmann::json::array())) {
      if (added.contains("content") && added["content"].is_string()) specials.push_back(added["content"].get<std::string>());
    }
  }
  return parse(source, where, token_text(config, "bos_token", config_path), token_text(config, "eos_token", config_path),
               std::move(specials));
}

bool has_chat_template(const std::string& folder) {
  namespace fs = std::filesystem;
  if (folder.empty()) return false;
  std::error_code error;
  if (fs::is_regular_file(fs::path(folder) / "chat_template.jinja", error)) return true;
  std::ifstream in(fs::path(folder) / "tokenizer_config.json");
  if (!in) return false;
  // Not read_json: a folder whose tokenizer_config.json does not parse simply has no template here;
  // ChatTemplate::load reports the file when it is asked to load one.
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.contains("chat_template") && !config["chat_template"].is_null();
}

std::vector<std::string> model_tokenizer_candidates(const std::string& folder) {
  // tokenizer.json (Hugging Face), tokenizer.model (Meta's tiktoken, or the
  // sentencepiece a from-scratch run trains), spm.model: export copies the
  // tokenizer under its own name.
  std::vector<std::string> candidates;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "spm.model"}) {
    candidates.push_back((std::filesystem::path(folder) / name).string());
  }
  return candidates;
}

std::string model_tokenizer_path(const std::string& folder) {
  for (const std::string& path : model_tokenizer_candidates(folder)) {
    std::error_code error;
    if (std::filesystem::is_regular_file(path, error)) return path;
  }
  return std::string();
}

RenderedChat ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  List message_values;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    // Message fields are data: content marked i + 1, the role -1.
    message_values.push_back(Value::of_dict({{"role", Value::of_string(messages[i].role, -1)},
                                             {"content", Value::of_string(messages[i].content, static_cast<int>(i) + 1)}}));
  }
  std::map<std::string, Value> globals = {{"messages", Value::of_list(std::move(message_values))},
                                          {"add_generation_prompt", Value::of_bool(add_generation_prompt)},
                                          {"bos_token", Value::of_string(program_->bos_token)},
                                          {"eos_token", Value::of_string(program_->eos_token)}};
  Renderer renderer(program_->where, std::move(globals));
  Value out = Value::of_string("");
  renderer.run(program_->nodes, out);
  return {std::move(out.text), std::move(out.origin)};
}

TokenizedExample ChatTemplate::tokenize(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  const RenderedChat chat = render(messages, add_generation_prompt);
  TokenizedExample example;
  bool trained_turn_open = false;  // a trained message's text was seen; its end-of-turn token is trained too
  auto trained = [&](int origin) { return origin > 0 && messages[static_cast<std::size_t>(origin - 1)].train; };
  auto flush = [&](std::size_t begin, std::size_t end) {
    if (begin >= end) return;
    std::vector<TokenId> ids = tokenizer.encode(std::string_view(chat.text).substr(begin, end - begin));
    std::size_t offset = begin;
    for (TokenId id : ids) {
      const std::size_t length = tokenizer.decode_bytes({id}).size();
      bool train = false;
      for (std::size_t k = offset; k < std::min(offset + length, end); ++k) {
        if (trained(chat.origin[k])) train = true;
        if (chat.origin[k] > 0) trained_turn_open = trained(chat.origin[k]);
      }
      example.ids.push_back(id);
      example.loss_mask.push_back(train ? 1 : 0);
      offset += length;
    }
  };
  std::size_t start = 0;
  std::size_t position = 0;
  while (position < chat.text.size()) {
    const std::string* match = nullptr;
    if (chat.origin[position] == 0) {
      for (const std::string& special : program_->special_texts) {
        if (chat.text.compare(position, special.size(), special) != 0) continue;
        // All of it from the template: message text never becomes a special token.
        bool from_template = std::all_of(chat.origin.begin() + static_cast<std::ptrdiff_t>(position),
                                         chat.origin.begin() + static_cast<std::ptrdiff_t>(position + special.size()),
                                         [](int origin) { return origin == 0; });
        if (from_template && tokenizer.special_id(special)) {
          match = &special;
          break;
        }
      }
    }
    if (match == nullptr) {
      ++position;
      continue;
    }
    flush(start, position);
    example.ids.push_back(*tokenizer.special_id(*match));
    example.loss_mask.push_back(trained_turn_open ? 1 : 0);
    trained_turn_open = false;
    position += match->size();
    start = position;
  }
  flush(start, chat.text.size());
  return example;
}

}  // namespace metareuse
