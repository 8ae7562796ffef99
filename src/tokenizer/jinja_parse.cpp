// The parser of the Jinja subset (jinja.h): the template split into text and
// tags with Jinja's whitespace control, then expressions and statements.
// Hand-written: no C++ Jinja is packaged for Debian (chat_template.h).
#include <fmt/format.h>  // messages

#include <algorithm>
#include <cctype>
#include <cstring>
#include <initializer_list>
#include <sstream>

#include "jinja_syntax.h"
#include "metareuse/core/error.h"

namespace metareuse::tokenizer_detail {

namespace {

// ------------------------------------------------------------- expressions ----

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
  // The parser recurses once per level of nesting ("((((", "not not", "- -"):
  // the depth is capped, so a hostile template is an error, not a stack overflow.
  struct Nesting {
    explicit Nesting(ExpressionParser& parser) : parser_(parser) {
      if (++parser_.depth_ > kMaxTemplateNesting) {
        throw InputError(fmt::format("{}: chat template: an expression nested deeper than {} levels",
                                     parser_.where_, kMaxTemplateNesting));
      }
    }
    ~Nesting() { --parser_.depth_; }
    ExpressionParser& parser_;
  };

 public:
  ExpressionParser(const std::string& source, const std::string& where) : where_(where) { lex(source); }

  ExprPtr parse_expression() {
    const Nesting nested(*this);
    return parse_conditional();
  }
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
  // The first of `ops` (longest first where one is a prefix of another) that
  // comes next, consumed; "" when none does.
  std::string accept_one_of(std::initializer_list<const char*> ops) {
    for (const char* op : ops) {
      if (accept_operator(op)) return op;
    }
    return std::string();
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
    const Nesting nested(*this);
    if (accept_name("not")) return make(Expr::Kind::kNot, "", {parse_not()});
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr left = parse_add();
    while (true) {
      std::string op = accept_one_of({"==", "!=", "<=", ">=", "<", ">"});
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
      std::string op = accept_one_of({"+", "-", "~"});
      if (op.empty()) return left;
      left = make(Expr::Kind::kBinary, op, {left, parse_multiply()});
    }
  }
  ExprPtr parse_multiply() {
    ExprPtr left = parse_unary();
    while (true) {
      std::string op = accept_one_of({"*", "//", "%"});
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
    const Nesting nested(*this);
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
  int depth_ = 0;  // Nesting levels open
};

// -------------------------------------------------------------- statements ----

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
                              std::unique_ptr<ExpressionParser>& terminator_parser, int depth = 0) {
  if (depth > kMaxTemplateNesting) {
    throw InputError(fmt::format("{}: chat template: blocks nested deeper than {} levels", where, kMaxTemplateNesting));
  }
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
      node.bodies.push_back(parse_nodes(pieces, index, where, {"endfor"}, end, end_parser, depth + 1));
      if (end.empty()) throw InputError(fmt::format("{}: chat template: 'for' without 'endfor'", where));
      nodes.push_back(std::move(node));
    } else if (keyword == "if") {
      Node node{Node::Kind::kIf, "", nullptr, {}, {}};
      node.conditions.push_back(parser->parse_expression());
      parser->expect_end();
      while (true) {
        std::string end;
        std::unique_ptr<ExpressionParser> end_parser;
        node.bodies.push_back(
            parse_nodes(pieces, index, where, {"elif", "else", "endif"}, end, end_parser, depth + 1));
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

}  // namespace

std::vector<Node> parse_template(const std::string& source, const std::string& where) {
  std::vector<RawPiece> pieces = split_template(source, where);
  std::size_t index = 0;
  std::string terminator;
  std::unique_ptr<ExpressionParser> terminator_parser;
  return parse_nodes(pieces, index, where, {}, terminator, terminator_parser);
}

}  // namespace metareuse::tokenizer_detail
