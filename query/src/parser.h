// The query language's syntax (docs/query.md):
//
//   query  := or ('.' 'sort' '(' NAME [',' 'asc'|'desc'] ')' | '.' 'limit' '(' NUMBER ')')*
//   or     := and ('or' and)*
//   and    := not ('and' not)*
//   not    := 'not' not | '(' or ')' | chain
//   chain  := COLLECTION ('.' step)* | 'hot'
//   step   := NAME '(' [arg (',' arg)*] ')' [COMPARE NUMBER['%']]
//   arg    := STRING | NUMBER | NAME | or        (in(...) takes a query)
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "query/query.h"

namespace jitprof::query {

struct Expr;

struct Arg {
  enum class Kind { String, Number, Name, Query } kind;
  std::string text;
  double number = 0;
  std::shared_ptr<Expr> query;
  std::size_t column = 0;
};

struct Comparison {
  std::string op;  // > >= < <= == !=
  double value = 0;
  bool percent = false;
  std::size_t column = 0;
};

struct Step {
  std::string name;
  std::size_t column = 0;
  std::vector<Arg> args;
  std::optional<Comparison> compare;
};

struct Expr {
  enum class Kind { Chain, And, Or, Not } kind;
  std::size_t column = 0;
  std::string collection;  // Chain
  std::vector<Step> steps;  // Chain
  std::vector<std::shared_ptr<Expr>> children;  // And, Or (two), Not (one)
};

struct Query {
  std::shared_ptr<Expr> root;
  std::optional<Step> sort;
  std::optional<std::size_t> limit;
};

// The collection names a chain may start with.
bool is_collection(std::string_view name);

Query parse(std::string_view text, const Limits& limits);

}  // namespace jitprof::query
