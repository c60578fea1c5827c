#include "parser.h"

#include <fmt/format.h>

#include <array>
#include <cctype>

namespace jitprof::query {
namespace {

constexpr std::array kCollections = {"traces", "loops", "bridges", "guards", "methods", "ops", "samples"};

enum class Tok { Name, Number, String, Dot, Open, Close, Comma, Compare, End };

struct Token {
  Tok kind;
  std::string text;
  double number = 0;
  bool percent = false;
  std::size_t column = 0;  // 1-based
};

// The tokens that are one character long.
std::optional<Tok> punctuation_token(char c) {
  switch (c) {
    case '.': return Tok::Dot;
    case '(': return Tok::Open;
    case ')': return Tok::Close;
    case ',': return Tok::Comma;
    default: return std::nullopt;
  }
}

std::vector<Token> tokenize(std::string_view text, const Limits& limits) {
  std::vector<Token> tokens;
  std::size_t at = 0;
  while (true) {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
    const std::size_t column = at + 1;
    if (at == text.size()) {
      tokens.push_back({Tok::End, "", 0, false, column});
      return tokens;
    }
    const char c = text[at];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t end = at;
      while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
      tokens.push_back({Tok::Name, std::string(text.substr(at, end - at)), 0, false, column});
      at = end;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      std::size_t end = at;
      while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) ++end;
      const std::string digits(text.substr(at, end - at));
      if (digits.size() > 20 || std::count(digits.begin(), digits.end(), '.') > 1)
        throw QueryError(column, fmt::format("'{}' is not a number", digits));
      Token token{Tok::Number, digits, std::stod(digits), false, column};
      if (end < text.size() && text[end] == '%') {
        token.percent = true;
        ++end;
      }
      tokens.push_back(token);
      at = end;
    } else if (c == '\'' || c == '"') {
      std::string value;
      std::size_t end = at + 1;
      while (end < text.size() && text[end] != c) {
        if (text[end] == '\\' && end + 1 < text.size()) ++end;  // \' and \\ stand for themselves
        value += text[end++];
      }
      if (end == text.size()) throw QueryError(column, "this string has no closing quote");
      if (value.size() > limits.max_pattern)
        throw QueryError(column, fmt::format("strings are limited to {} characters", limits.max_pattern));
      tokens.push_back({Tok::String, value, 0, false, column});
      at = end + 1;
    } else if (const auto punctuation = punctuation_token(c)) {
      tokens.push_back({*punctuation, std::string(1, c), 0, false, column});
      ++at;
    } else if (c == '>' || c == '<' || c == '=' || c == '!') {
      std::string op(1, c);
      if (at + 1 < text.size() && text[at + 1] == '=') op += '=';
      if (op == "=" || op == "!") throw QueryError(column, fmt::format("'{}' is not a comparison: use == or !=", op));
      tokens.push_back({Tok::Compare, op, 0, false, column});
      at += op.size();
    } else {
      throw QueryError(column, fmt::format("unexpected character '{}'", c));
    }
  }
}

std::string describe(const Token& token) {
  switch (token.kind) {
    case Tok::End: return "the end of the query";
    case Tok::String: return fmt::format("the string '{}'", token.text);
    default: return fmt::format("'{}'", token.text);
  }
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const Limits& limits) : tokens_(std::move(tokens)), limits_(limits) {}

  Query query() {
    Query query;
    query.root = parse_or();
    while (peek().kind == Tok::Dot) {
      next();
      const Token& name = expect(Tok::Name, "sort(...) or limit(...)");
      if (name.text == "sort") {
        if (query.sort) throw QueryError(name.column, "sort(...) is given twice");
        Step sort{name.text, name.column, {}, std::nullopt};
        expect(Tok::Open, "'('");
        const Token& metric = expect(Tok::Name, "what to sort by, e.g. samples");
        sort.args.push_back({Arg::Kind::Name, metric.text, 0, nullptr, metric.column});
        if (peek().kind == Tok::Comma) {
          next();
          const Token& order = expect(Tok::Name, "asc or desc");
          if (order.text != "asc" && order.text != "desc") throw QueryError(order.column, "the order is asc or desc");
          sort.args.push_back({Arg::Kind::Name, order.text, 0, nullptr, order.column});
        }
        expect(Tok::Close, "')'");
        query.sort = sort;
      } else if (name.text == "limit") {
        expect(Tok::Open, "'('");
        const Token& count = expect(Tok::Number, "how many results, e.g. limit(10)");
        if (count.percent || count.number != static_cast<double>(static_cast<std::size_t>(count.number)) ||
            count.number > 1e6)
          throw QueryError(count.column, "limit(N) takes a whole number up to 1000000");
        expect(Tok::Close, "')'");
        query.limit = static_cast<std::size_t>(count.number);
      } else {
        throw QueryError(name.column, fmt::format("'{}' cannot follow a whole query: only sort(...) and limit(...) can "
                                                  "(steps follow a collection, e.g. traces.{}(...))",
                                                  name.text, name.text));
      }
    }
    if (peek().kind != Tok::End) throw QueryError(peek().column, fmt::format("unexpected {}", describe(peek())));
    return query;
  }

 private:
  const Token& peek() const { return tokens_[position_]; }
  const Token& next() { return tokens_[position_ < tokens_.size() - 1 ? position_++ : position_]; }
  const Token& expect(Tok kind, const std::string& what) {
    if (peek().kind != kind) throw QueryError(peek().column, fmt::format("expected {}, found {}", what, describe(peek())));
    return next();
  }
  bool at_word(const char* word) const { return peek().kind == Tok::Name && peek().text == word; }

  // Depth of parentheses and nested queries, so that no input can exhaust the stack.
  struct Nesting {
    Nesting(Parser& parser, std::size_t column) : parser_(parser) {
      if (++parser_.depth_ > parser_.limits_.max_depth)
        throw QueryError(column, fmt::format("the query nests deeper than {} levels", parser_.limits_.max_depth));
    }
    ~Nesting() { --parser_.depth_; }
    Parser& parser_;
  };

  std::shared_ptr<Expr> binary(Expr::Kind kind, std::size_t column, std::shared_ptr<Expr> left,
                               std::shared_ptr<Expr> right) {
    auto node = std::make_shared<Expr>();
    node->kind = kind;
    node->column = column;
    node->children = {std::move(left), std::move(right)};
    return node;
  }

  // OPERAND (WORD OPERAND)*, grouped from the left.
  std::shared_ptr<Expr> parse_left(const char* word, Expr::Kind kind, std::shared_ptr<Expr> (Parser::*operand)()) {
    auto left = (this->*operand)();
    while (at_word(word)) {
      const std::size_t column = next().column;
      left = binary(kind, column, left, (this->*operand)());
    }
    return left;
  }

  std::shared_ptr<Expr> parse_or() { return parse_left("or", Expr::Kind::Or, &Parser::parse_and); }
  std::shared_ptr<Expr> parse_and() { return parse_left("and", Expr::Kind::And, &Parser::parse_not); }

  std::shared_ptr<Expr> parse_not() {
    if (at_word("not")) {
      const std::size_t column = next().column;
      Nesting nesting(*this, column);
      auto node = std::make_shared<Expr>();
      node->kind = Expr::Kind::Not;
      node->column = column;
      node->children = {parse_not()};
      return node;
    }
    if (peek().kind == Tok::Open) {
      Nesting nesting(*this, next().column);
      auto inner = parse_or();
      expect(Tok::Close, "')'");
      return inner;
    }
    return parse_chain();
  }

  std::shared_ptr<Expr> parse_chain() {
    const Token& start = expect(Tok::Name, "a collection (traces, loops, bridges, guards, methods, ops, samples)");
    auto chain = std::make_shared<Expr>();
    chain->kind = Expr::Kind::Chain;
    chain->column = start.column;
    if (start.text == "hot") {
      // The traces that matter: at least 1% of the samples.
      chain->collection = "traces";
      chain->steps.push_back({"samples", start.column, {}, Comparison{">=", 1, true, start.column}});
      return chain;
    }
    if (!is_collection(start.text))
      throw QueryError(start.column, fmt::format("unknown collection '{}' (collections: traces, loops, bridges, guards, "
                                                 "methods, ops, samples; and hot)",
                                                 start.text));
    chain->collection = start.text;
    while (peek().kind == Tok::Dot && tokens_[position_ + 1].kind == Tok::Name &&
           tokens_[position_ + 1].text != "sort" && tokens_[position_ + 1].text != "limit") {
      next();
      chain->steps.push_back(parse_step());
      if (chain->steps.size() > 64) throw QueryError(chain->steps.back().column, "a chain is limited to 64 steps");
    }
    return chain;
  }

  Step parse_step() {
    const Token& name = expect(Tok::Name, "a step, e.g. contains('call_assembler')");
    Step step{name.text, name.column, {}, std::nullopt};
    expect(Tok::Open, fmt::format("'(' after {}", name.text));
    if (peek().kind != Tok::Close) {
      while (true) {
        step.args.push_back(parse_arg(step.name));
        if (peek().kind != Tok::Comma) break;
        next();
      }
    }
    expect(Tok::Close, "')' or ','");
    if (peek().kind == Tok::Compare) {
      const Token& op = next();
      const Token& value = expect(Tok::Number, fmt::format("a number after {}", op.text));
      step.compare = Comparison{op.text, value.number, value.percent, op.column};
    }
    return step;
  }

  Arg parse_arg(const std::string& step) {
    const Token& token = peek();
    if (step == "in") {
      // A query: in(hot), in(traces.contains('call_assembler')).
      Nesting nesting(*this, token.column);
      return {Arg::Kind::Query, "", 0, parse_or(), token.column};
    }
    next();
    switch (token.kind) {
      case Tok::String: return {Arg::Kind::String, token.text, 0, nullptr, token.column};
      case Tok::Number:
        if (token.percent) throw QueryError(token.column, "a percentage only follows a comparison");
        return {Arg::Kind::Number, token.text, token.number, nullptr, token.column};
      case Tok::Name: return {Arg::Kind::Name, token.text, 0, nullptr, token.column};
      default: throw QueryError(token.column, fmt::format("expected an argument, found {}", describe(token)));
    }
  }

  std::vector<Token> tokens_;
  const Limits& limits_;
  std::size_t position_ = 0;
  unsigned depth_ = 0;
};

}  // namespace

bool is_collection(std::string_view name) {
  for (const char* collection : kCollections)
    if (name == collection) return true;
  return false;
}

Query parse(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_length)
    throw QueryError(limits.max_length + 1, fmt::format("queries are limited to {} characters", limits.max_length));
  return Parser(tokenize(text, limits), limits).query();
}

}  // namespace jitprof::query
