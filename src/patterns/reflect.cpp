// Reflect mode: the strategist's replies in rounds, kept in a log a stopped
// run goes on from; their behaviors parsed and merged by canonical key over
// records and ranks. The merge is written here (nothing packaged does it);
// the gather is the communicator's allgatherv.
#include "metareuse/patterns/reflect.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // records on the wire

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>

#include "metareuse/core/answer_log.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/rounds.h"
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

nlohmann::json describe_strategist(const StrategistOptions& options) {
  return {{"model", answer_log_file(options.model)},
          {"tokenizer", options.tokenizer.empty() ? nlohmann::json(nullptr) : answer_log_file(options.tokenizer)},
          {"template", options.template_name},
          {"max_new_tokens", options.decoding.max_new_tokens},
          {"temperature", options.decoding.temperature},
          {"seed", options.decoding.seed}};
}

std::string reflect_replies_path(const std::string& handbook_path) {
  return std::filesystem::path(handbook_path).replace_extension(".replies.jsonl").string();
}

namespace {

// The replies log's header: what makes a reply. A record's reply is stored by
// its key (file, line), so the corpus files' sizes and times are in it too.
// The merge's options (min_support, top_k, max_records) are not: a run with
// other ones reuses every reply.
nlohmann::json replies_header(const std::vector<std::string>& files, const ReflectOptions& options) {
  nlohmann::json corpus = nlohmann::json::array();
  for (const std::string& file : files) corpus.push_back(answer_log_file(file));
  return {{"reflect", 1},
          {"strategist", options.strategist},
          {"prompt", options.prompt_template},
          {"corpus", corpus},
          {"fields", {options.read.fields.question, options.read.fields.reasoning, options.read.fields.solution}},
          {"max_depth", options.read.max_depth}};
}

// One record's reply as the log and the ranks' gather carry it.
struct Reply {
  std::uint64_t order = 0;  // the record's key
  std::string record;       // "train.jsonl:17"
  std::string text;         // the model's reply
  std::string error;        // why the strategist failed on its batch ("": it did not)

  nlohmann::json to_json() const {
    nlohmann::json j = {{"order", order}, {"record", record}, {"reply", text}};
    if (!error.empty()) j["error"] = error;
    return j;
  }
  static Reply from_json(const nlohmann::json& j) {
    Reply r;
    r.order = j.at("order").get<std::uint64_t>();
    r.record = j.at("record").get<std::string>();
    r.text = j.at("reply").get<std::string>();
    r.error = j.value("error", std::string());
    return r;
  }
};

std::string reply_lines(const std::vector<Reply>& replies) {
  std::string lines;
  for (const Reply& reply : replies) {
    lines += reply.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    lines += '\n';
  }
  return lines;
}

std::vector<Reply> parse_reply_lines(const std::vector<char>& bytes) {
  std::vector<Reply> replies;
  std::string_view text(bytes.data(), bytes.size());
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    replies.push_back(Reply::from_json(nlohmann::json::parse(text.substr(begin, end - begin))));
    begin = end + 1;
  }
  return replies;
}

}  // namespace

std::optional<Handbook> reflect_patterns(const std::vector<std::string>& files, const ReflectOptions& options,
                                         const Strategist& strategist, Communicator& communicator) {
  if (options.batch_size == 0) throw InputError("reflect: batch_size must be >= 1");
  check_reflection_prompt(options.prompt_template, options.prompt_source);  // before any collective, on every rank
  const bool leader = communicator.rank() == 0;
  RoundStop round_stop(options.time_limit);

  // The replies a stopped or failed run left, read by rank 0 and sent to all.
  const nlohmann::json header = replies_header(files, options);
  std::string stored;
  if (leader && !options.replies.empty()) {
    for (const nlohmann::json& line : read_back_answer_log(options.replies, header, "patterns (reflect)")) {
      stored += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
  }
  std::map<std::uint64_t, Reply> read_back;
  for (Reply& reply : parse_reply_lines(communicator.allgatherv(std::vector<char>(stored.begin(), stored.end())))) {
    const std::uint64_t order = reply.order;
    read_back.emplace(order, std::move(reply));
  }
  std::optional<AnswerLog> log;
  if (leader && !options.replies.empty()) log.emplace(options.replies, read_back.empty(), header);
  if (!read_back.empty()) {
    log_info("patterns (reflect): {} replies read back from {}", read_back.size(), options.replies);
  }

  // Rounds: the records still without a reply, in corpus order, ranks x
  // batch_size at a time, dealt round robin (the round's i-th to rank
  // i % size). Every rank reads every record (parsing is cheap next to a
  // model's reply) and sees the same rounds; after each, all ranks have the
  // round's replies, and rank 0 appends them to the log.
  std::vector<Reply> replies;  // every selected record's, on every rank
  std::vector<std::string> prompts;
  std::vector<Reply> mine;     // this rank's share of the round, without the text yet
  const std::size_t round = round_size(communicator, static_cast<std::int64_t>(options.batch_size));
  std::size_t in_round = 0;
  std::uint64_t generated = 0, read_back_count = 0;
  bool stopped = false;
  auto run_round = [&] {
    if (in_round == 0 || stopped) return;
    if (round_stop.stop_before_round(communicator)) {
      stopped = true;
      return;
    }
    if (!prompts.empty()) {
      std::vector<std::uint64_t> orders;
      for (const Reply& reply : mine) orders.push_back(reply.order);
      try {
        std::vector<std::string> answers = strategist(prompts, orders);
        if (answers.size() != prompts.size()) {
          throw Error(fmt::format("the strategist answered {} of {} prompts", answers.size(), prompts.size()));
        }
        for (std::size_t i = 0; i < answers.size(); ++i) mine[i].text = std::move(answers[i]);
      } catch (const std::exception& failure) {
        // The other ranks are in this round's gather: record the batch as
        // failed and go on, as eval does.
        log_warn("patterns (reflect): the strategist failed on {} record(s) from {}: {}", mine.size(),
                 mine.front().record, failure.what());
        for (Reply& reply : mine) reply.error = failure.what();
      }
    }
    std::vector<Reply> gathered = parse_reply_lines(communicator.allgatherv([&] {
      const std::string lines = reply_lines(mine);
      return std::vector<char>(lines.begin(), lines.end());
    }()));
    std::stable_sort(gathered.begin(), gathered.end(),
                     [](const Reply& a, const Reply& b) { return a.order < b.order; });
    if (log) log->append(reply_lines(gathered));
    generated += gathered.size();
    log_info("patterns (reflect): {} record(s) answered{}", generated,
             read_back_count == 0 ? std::string() : fmt::format(", {} read back", read_back_count));
    for (Reply& reply : gathered) replies.push_back(std::move(reply));
    prompts.clear();
    mine.clear();
    in_round = 0;
  };
  // Every rank reads every record (a self communicator).
  std::unique_ptr<Communicator> alone = make_self_communicator();
  std::uint64_t index = 0;
  const CorpusStats stats = read_corpus(files, options.read, *alone, [&](const Record& record) {
    const std::uint64_t i = index++;
    if ((options.max_records > 0 && i >= options.max_records) || stopped) return;
    // Record keys are global (file index, line): the order is the same at any rank count.
    if (auto found = read_back.find(record.key); found != read_back.end()) {
      replies.push_back(std::move(found->second));
      ++read_back_count;
      return;
    }
    if (in_round % static_cast<std::size_t>(communicator.size()) == static_cast<std::size_t>(communicator.rank())) {
      prompts.push_back(reflection_prompt(options.prompt_template, record));
      mine.push_back({record.key, record_key_name(record.key, files), "", ""});
    }
    if (++in_round == round) run_round();
  });
  run_round();
  if (stopped) {
    log_warn("patterns (reflect): stopped after {} replies (time limit or signal){}; running patterns again goes on "
             "from there (exit status {})",
             replies.size(), log ? fmt::format(", kept in {}", options.replies) : std::string(),
             static_cast<int>(kExitTimeLimit));
    return std::nullopt;
  }

  // Parse every reply; identical on every rank.
  struct Entry {
    std::uint64_t order;
    std::string record, name, instruction;
  };
  std::vector<Entry> entries;
  std::uint64_t parsed_behaviors = 0, malformed = 0, failed = 0;
  std::stable_sort(replies.begin(), replies.end(), [](const Reply& a, const Reply& b) { return a.order < b.order; });
  for (const Reply& reply : replies) {
    if (!reply.error.empty()) {
      ++failed;
      continue;
    }
    log_debug("reflect: {} replied: {}", reply.record, reply.text);
    ParsedReflection parsed = parse_reflection(reply.text);
    malformed += parsed.malformed;
    parsed_behaviors += parsed.behaviors.size();
    for (Behavior& behavior : parsed.behaviors) {
      entries.push_back({reply.order, reply.record, std::move(behavior.name), std::move(behavior.instruction)});
    }
  }
  const std::vector<std::uint64_t> counts = {replies.size() - failed, parsed_behaviors, malformed};

  // Merge by key, records in corpus order.
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
        "malformed lines{}; a behavior line is `behavior_name: instruction` (see the prompt template; a larger model, "
        "more records or a lower patterns.min_support help)",
        options.min_support, counts[0], counts[1], merged.size(), counts[2],
        failed == 0 ? std::string() : fmt::format(", and the strategist failed on {} record(s)", failed)));
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
                    {"records_reflected", replies.size()},     {"replies_read_back", read_back_count},
                    {"failed", failed},
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
