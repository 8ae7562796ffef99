// Reflect mode: parse the strategist's behaviors, merge them by canonical key
// over records and ranks. The merge is written here (nothing packaged does it);
// the gather is the communicator's allgatherv.
#include "metareuse/patterns/reflect.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // records on the wire

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/text.h"

namespace metareuse {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_seed_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_seed_space(text.back())) text.remove_suffix(1);
  return text;
}

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "- ", "* ", "1. ", "12) " at the start of a line.
std::string_view strip_list_marker(std::string_view line) {
  if (line.size() >= 2 && (line[0] == '-' || line[0] == '*') && line[1] == ' ') return trim(line.substr(2));
  std::size_t digits = 0;
  while (digits < line.size() && is_digit(line[digits])) ++digits;
  if (digits > 0 && digits + 1 < line.size() && (line[digits] == '.' || line[digits] == ')') && line[digits + 1] == ' ') {
    return trim(line.substr(digits + 2));
  }
  return line;
}

std::string_view strip_wrapping(std::string_view name) {
  for (std::string_view wrap : {"**", "`", "*"}) {
    if (name.size() > 2 * wrap.size() && name.substr(0, wrap.size()) == wrap &&
        name.substr(name.size() - wrap.size()) == wrap) {
      name = trim(name.substr(wrap.size(), name.size() - 2 * wrap.size()));
    }
  }
  return name;
}

// Lowercase snake case with the "behavior_" prefix; empty when not a name.
std::string canonical_name(std::string_view raw) {
  std::string name;
  int words = 0;
  bool letter = false;
  bool gap = true;
  for (char c : raw) {
    if (is_letter(c) || is_digit(c)) {
      if (gap && !name.empty()) name.push_back('_');
      if (gap) ++words;
      gap = false;
      letter = letter || is_letter(c);
      name.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    } else if (c == '_' || c == ' ' || c == '-') {
      gap = true;
    } else {
      return "";
    }
  }
  if (!letter || name.empty() || name.size() > 64) return "";
  if (name.rfind("behavior_", 0) != 0) {
    name = "behavior_" + name;
  } else {
    --words;  // the prefix is not a word of the name
  }
  return words >= 1 && words <= 8 ? name : "";
}

}  // namespace

ParsedReflection parse_reflection(std::string_view reply) {
  ParsedReflection parsed;
  std::size_t start = 0;
  while (start <= reply.size()) {
    std::size_t end = reply.find('\n', start);
    if (end == std::string_view::npos) end = reply.size();
    std::string_view line = trim(reply.substr(start, end - start));
    start = end + 1;
    if (line.empty()) continue;
    line = strip_list_marker(line);
    const std::size_t colon = line.find(':');
    std::string name = colon == std::string_view::npos ? "" : canonical_name(strip_wrapping(trim(line.substr(0, colon))));
    std::string_view instruction = colon == std::string_view::npos ? "" : trim(line.substr(colon + 1));
    if (name.empty() || split_words(instruction).size() < 3) {
      ++parsed.malformed;
      continue;
    }
    parsed.behaviors.push_back({std::move(name), std::string(instruction)});
  }
  return parsed;
}

std::string behavior_key(const Behavior& behavior) {
  std::string_view name = behavior.name;
  if (name.rfind("behavior_", 0) == 0) name.remove_prefix(9);
  std::string instruction = normalize(behavior.instruction);
  while (!instruction.empty() && (instruction.back() == '.' || instruction.back() == ' ')) instruction.pop_back();
  return fmt::format("{}|{}", name, instruction);
}

void check_reflection_prompt(std::string_view prompt_template, std::string_view where) {
  if (prompt_template.find("{reasoning}") == std::string_view::npos) {
    throw InputError(fmt::format("{}: the reflection prompt has no {{reasoning}} placeholder (it may use {{question}}, "
                                 "{{reasoning}} and {{solution}})",
                                 where));
  }
}

std::string load_reflection_prompt(const std::string& path) {
  if (path.empty()) return std::string(default_reflection_prompt());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read the reflection prompt: {}", path, std::strerror(errno)));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(fmt::format("{}: reading the reflection prompt failed", path));
  check_reflection_prompt(text, path);
  return text;
}

std::string reflection_prompt(std::string_view prompt_template, const Record& record) {
  check_reflection_prompt(prompt_template, "the reflection prompt");
  std::string out;
  std::size_t i = 0;
  while (i < prompt_template.size()) {
    bool replaced = false;
    for (auto [slot, value] : {std::pair<std::string_view, std::string_view>{"{question}", record.question},
                               {"{reasoning}", record.reasoning},
                               {"{solution}", record.solution}}) {
      if (prompt_template.compare(i, slot.size(), slot) == 0) {
        out += value;
        i += slot.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back(prompt_template[i++]);
  }
  return out;
}

Handbook reflect_patterns(const std::vector<std::string>& files, const ReflectOptions& options,
                          const Strategist& strategist, Communicator& communicator) {
  if (options.batch_size == 0) throw InputError("reflect: batch_size must be >= 1");
  check_reflection_prompt(options.prompt_template, options.prompt_source);  // before any collective, on every rank
  std::string wire;  // this rank's behaviors: one JSON array [order, record id, name, instruction] per line
  std::uint64_t replies = 0, parsed_behaviors = 0, malformed = 0;
  std::vector<std::string> prompts, record_ids;
  std::vector<std::uint64_t> orders;
  auto flush = [&] {
    if (prompts.empty()) return;
    std::vector<std::string> answers = strategist(prompts, orders);
    if (answers.size() != prompts.size()) {
      throw Error(fmt::format("reflect: the strategist answered {} of {} prompts", answers.size(), prompts.size()));
    }
    for (std::size_t i = 0; i < answers.size(); ++i) {
      log_debug("reflect: {} replied: {}", record_ids[i], answers[i]);
      ParsedReflection parsed = parse_reflection(answers[i]);
      ++replies;
      malformed += parsed.malformed;
      parsed_behaviors += parsed.behaviors.size();
      for (const Behavior& behavior : parsed.behaviors) {
        wire += nlohmann::json::array({orders[i], record_ids[i], behavior.name, behavior.instruction})
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        wire += '\n';
      }
    }
    prompts.clear();
    record_ids.clear();
    orders.clear();
  };
  // Every rank reads every record (a self communicator), then keeps its share:
  // good record i goes to rank i % size.
  std::unique_ptr<Communicator> alone = make_self_communicator();
  std::uint64_t index = 0;
  const CorpusStats stats = read_corpus(files, options.read, *alone, [&](const Record& record) {
    const std::uint64_t i = index++;
    if (options.max_records > 0 && i >= options.max_records) return;
    if (i % static_cast<std::uint64_t>(communicator.size()) != static_cast<std::uint64_t>(communicator.rank())) return;
    // Record keys are global (file index, line): the order is the same at any rank count.
    prompts.push_back(reflection_prompt(options.prompt_template, record));
    record_ids.push_back(record_key_name(record.key, files));
    orders.push_back(record.key);
    if (prompts.size() == options.batch_size) flush();
  });
  flush();
  std::vector<char> all = communicator.allgatherv(std::vector<char>(wire.begin(), wire.end()));
  std::vector<std::uint64_t> counts = {replies, parsed_behaviors, malformed};
  communicator.allreduce(counts, ReduceOp::kSum);

  // Merge by key: records in corpus order (the gather's order is rank order, so sort first).
  struct Entry {
    std::uint64_t order;
    std::string record, name, instruction;
  };
  std::vector<Entry> entries;
  std::string_view text(all.data(), all.size());
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    auto item = nlohmann::json::parse(text.substr(begin, end - begin));
    entries.push_back({item[0].get<std::uint64_t>(), item[1].get<std::string>(), item[2].get<std::string>(),
                       item[3].get<std::string>()});
    begin = end + 1;
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.order < b.order; });
  struct Merged {
    Pattern pattern;
    std::uint64_t last_order = ~std::uint64_t{0};
  };
  std::map<std::string, Merged> merged;
  for (const Entry& entry : entries) {
    Merged& m = merged[behavior_key({entry.name, entry.instruction})];
    if (m.pattern.name.empty()) {
      m.pattern.name = entry.name;
      m.pattern.instruction = entry.instruction;
      m.pattern.text = entry.instruction;
      m.pattern.kind = "reflected";
    }
    if (m.last_order == entry.order) continue;  // one record gave it twice: support counts records
    m.last_order = entry.order;
    ++m.pattern.support;
    if (m.pattern.examples.size() < options.examples) m.pattern.examples.push_back(entry.record);
  }
  std::vector<std::pair<std::string, Pattern>> ranked;
  for (auto& [key, m] : merged) {
    if (m.pattern.support >= options.min_support) ranked.emplace_back(key, std::move(m.pattern));
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second.support != b.second.support ? a.second.support > b.second.support : a.first < b.first;
  });
  if (ranked.empty()) {
    throw InputError(fmt::format(
        "reflect: 0 behaviors with support >= {}: the model's {} replies gave {} behavior lines ({} distinct) and {} "
        "malformed lines; a behavior line is `behavior_name: instruction` (see the prompt template; a larger model, "
        "more records or a lower patterns.min_support help)",
        options.min_support, counts[0], counts[1], merged.size(), counts[2]));
  }
  Handbook handbook;
  handbook.records = stats.records;
  handbook.mode = "reflect";
  for (auto& [key, pattern] : ranked) {
    if (options.top_k > 0 && handbook.patterns.size() == options.top_k) break;
    handbook.patterns.push_back(std::move(pattern));
  }
  // The same name with another instruction gets a suffix.
  make_names_unique(handbook.patterns);
  handbook.stats = {{"records", stats.records},       {"bad_lines", stats.bad_lines},
                    {"records_reflected", options.max_records > 0 ? std::min(options.max_records, stats.records)
                                                                  : stats.records},
                    {"replies", counts[0]},            {"behaviors_parsed", counts[1]},
                    {"malformed_lines", counts[2]},    {"distinct_behaviors", merged.size()},
                    {"patterns", handbook.patterns.size()}, {"ranks", communicator.size()}};
  handbook.config = {{"mode", "reflect"},
                     {"min_support", options.min_support},
                     {"top_k", options.top_k},
                     {"max_records", options.max_records},
                     {"files", files}};
  return handbook;
}

}  // namespace metareuse
