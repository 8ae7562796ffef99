#include "metareuse/corpus/corpus.h"

#include <fcntl.h>     // open
#include <glob.h>      // glob(3) for corpus globs
#include <sys/mman.h>  // mmap, madvise
#include <sys/stat.h>  // fstat
#include <unistd.h>    // close

#include <fmt/format.h>
#include <simdjson.h>  // the JSON parser of the hot path (validates UTF-8 too)

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/distributed/communicator.h"

namespace metareuse {
namespace {

// A read-only mapping of a whole file, owned. Only the pages a rank touches
// are read from disk.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(fmt::format("{}: cannot open corpus file: {}", path, why_unreadable(path)));
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
      ::close(fd);
      throw InputError(fmt::format("{}: cannot stat corpus file: {}", path, std::strerror(errno)));
    }
    size_ = static_cast<std::size_t>(info.st_size);
    if (size_ > 0) {
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (address == MAP_FAILED) {
        ::close(fd);
        throw InputError(fmt::format("{}: cannot map corpus file: {}", path, std::strerror(errno)));
      }
      data_ = static_cast<const char*>(address);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::string_view bytes() const { return {data_ == nullptr ? "" : data_, size_}; }
  // Drops the pages of [begin, end) from this process: read pages of a mapped
  // file count in its resident set, and each rank should hold only what it is
  // working on, not its whole share.
  void release(std::uint64_t begin, std::uint64_t end) const {
    const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    std::uint64_t first = (begin + page - 1) / page * page;
    std::uint64_t last = end / page * page;
    if (data_ == nullptr || last <= first) return;
    ::madvise(const_cast<char*>(data_) + first, last - first, MADV_DONTNEED);
  }
  void advise_sequential(std::uint64_t begin, std::uint64_t end) const {
    if (data_ == nullptr || end <= begin) return;
    const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    std::uint64_t aligned = begin / page * page;
    ::madvise(const_cast<char*>(data_) + aligned, end - aligned, MADV_SEQUENTIAL);
  }

 private:
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};

// The first line start at or after `offset`.
std::uint64_t line_start_at_or_after(std::string_view bytes, std::uint64_t offset) {
  if (offset == 0) return 0;
  if (offset >= bytes.size()) return bytes.size();
  if (bytes[offset - 1] == '\n') return offset;
  const void* newline = std::memchr(bytes.data() + offset, '\n', bytes.size() - offset);
  return newline == nullptr ? bytes.size() : static_cast<const char*>(newline) - bytes.data() + 1;
}

constexpr std::uint64_t kReleaseBytes = std::uint64_t{4} << 20;

// Lines starting in `range`. Read with pread into a small buffer rather than
// through the mapping: faulting every page in here and again in the main pass
// cost more system time than the copy.
std::uint64_t count_lines(const std::string& path, std::string_view bytes, LineRange range) {
  if (range.end <= range.begin) return 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(fmt::format("{}: cannot open corpus file: {}", path, why_unreadable(path)));
  ::posix_fadvise(fd, static_cast<off_t>(range.begin), static_cast<off_t>(range.end - range.begin),
                  POSIX_FADV_SEQUENTIAL);
  std::vector<char> buffer(std::size_t{4} << 20);
  std::uint64_t newlines = 0;
  std::uint64_t offset = range.begin;
  while (offset < range.end) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), range.end - offset));
    ssize_t got = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
    if (got <= 0) {
      ::close(fd);
      throw InputError(fmt::format("{}: read failed at byte {}", path, offset));
    }
    newlines += static_cast<std::uint64_t>(std::count(buffer.data(), buffer.data() + got, '\n'));
    offset += static_cast<std::uint64_t>(got);
  }
  ::close(fd);
  // A last line without a newline counts too.
  return newlines + (bytes[range.end - 1] != '\n' ? 1 : 0);
}

// Python's str.isspace() over ASCII and C1: the reference skips such lines.
bool is_blank(std::string_view line) {
  for (char c : line) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(u == ' ' || (u >= '\t' && u <= '\r') || (u >= 0x1c && u <= 0x1f))) return false;
  }
  return true;
}

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

std::string_view json_type_name(simdjson::dom::element_type type) {
  switch (type) {
    case simdjson::dom::element_type::ARRAY: return "an array";
    case simdjson::dom::element_type::OBJECT: return "an object";
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE: return "a number";
    case simdjson::dom::element_type::STRING: return "a string";
    case simdjson::dom::element_type::BOOL: return "a boolean";
    case simdjson::dom::element_type::NULL_VALUE: return "null";
  }
  return "a value";
}

struct LineVerdict {
  bool good = false;
  BadReason reason = BadReason::kMalformedJson;
  std::string detail;
};

// Owns the parser and the per-file state; one per read_corpus call.
class LineReader {
 public:
  LineReader(const ReadOptions& options, const std::function<void(const Record&)>& visit)
      : options_(options), visit_(visit) {
    // A deeper document is a bad line, not a crash or a huge allocation.
    if (parser_.allocate(1 << 16, static_cast<std::size_t>(options.max_depth)) != simdjson::SUCCESS) {
      throw Error("cannot allocate the JSON parser");
    }
  }

  // `line` excludes its '\n'. `readable_after` says how many bytes after the
  // line may be read (simdjson reads up to SIMDJSON_PADDING past the end).
  LineVerdict parse(std::string_view line, std::size_t readable_after, RecordKey key, std::uint64_t offset) {
    if (std::memchr(line.data(), '\0', line.size()) != nullptr) {
      auto column = static_cast<const char*>(std::memchr(line.data(), '\0', line.size())) - line.data() + 1;
      return {false, BadReason::kNulByte, fmt::format("NUL byte at column {}", column)};
    }
    auto result = readable_after >= simdjson::SIMDJSON_PADDING
                      ? parser_.parse(line.data(), line.size(), /*realloc_if_needed=*/false)
                      : parser_.parse(line.data(), line.size(), /*realloc_if_needed=*/true);
    simdjson::dom::element root;
    if (auto error = std::move(result).get(root); error) {
      switch (error) {
        case simdjson::UTF8_ERROR: return {false, BadReason::kInvalidUtf8, "invalid UTF-8"};
        case simdjson::DEPTH_ERROR:
          return {false, BadReason::kTooDeep, fmt::format("JSON nested deeper than {} levels", options_.max_depth)};
        default:
          return {false, BadReason::kMalformedJson, fmt::format("malformed JSON: {}", simdjson::error_message(error))};
      }
    }
    if (root.type() != simdjson::dom::element_type::OBJECT) {
      return {false, BadReason::kNotObject,
              fmt::format("the JSON value is {}, not an object", json_type_name(root.type()))};
    }
    Record record;
    record.key = key;
    record.offset = offset;
    LineVerdict verdict = read_by_format(root.get_object().value_unsafe(), record);
    if (!verdict.good) return verdict;
    visit_(record);
    return verdict;
  }

 private:
  using Element = simdjson::dom::element;

  static LineVerdict bad(BadReason reason, std::string detail) { return {false, reason, std::move(detail)}; }

  // The member `name`; Python's json keeps the last of repeated keys, and so do we.
  static std::optional<Element> member(simdjson::dom::object object, std::string_view name) {
    std::optional<Element> found;
    for (auto item : object) {
      if (item.key == name) found = item.value;
    }
    return found;
  }

  // A string value, or why not: `{whose}"{name}" is a number, not a string`
  // (formatted only then: this is the hot path).
  static std::optional<LineVerdict> read_text(const Element& value, std::string_view whose, std::string_view name,
                                              std::string_view& out) {
    if (value.type() != simdjson::dom::element_type::STRING) {
      return bad(BadReason::kNotString,
                 fmt::format("{}\"{}\" is {}, not a string", whose, name, json_type_name(value.type())));
    }
    out = value.get_string().value_unsafe();
    return std::nullopt;
  }

  // The final answer of a free-form text (answer_rule.h's completion_rule):
  // the field `field`, or the last assistant turn when `field` is empty.
  static std::optional<LineVerdict> read_completion(std::string_view text, std::string_view field, Record& record) {
    record.answer_rule = completion_rule(text);
    const std::optional<SplitAnswer> split = split_reference(text, record.answer_rule);
    if (!split) {
      const std::string what =
          field.empty() ? std::string("the last assistant turn") : fmt::format("field \"{}\"", field);
      return bad(BadReason::kNoFinalAnswer,
                 record.answer_rule == AnswerRule::kLastNumber
                     ? fmt::format("{} states no final answer (no \"####\", \\boxed{{}} or number)", what)
                     : fmt::format("{} has no \"{} <final answer>\"", what,
                                   record.answer_rule == AnswerRule::kHashes ? "####" : "\\boxed{}"));
    }
    record.reasoning = split->reasoning;
    record.solution = split->answer;
    return std::nullopt;
  }

  // The content of the last turn with `role` among turns [0, end) of a list of
  // {"role", "content"} objects; `index` gets its position. Empty view and
  // `index` == end when there is none.
  static std::optional<LineVerdict> last_turn(simdjson::dom::array turns, std::size_t end, std::string_view role,
                                              std::string_view list, std::string_view& content, std::size_t& index) {
    index = end;
    std::size_t i = 0;
    for (Element turn : turns) {
      if (i >= end) break;
      if (turn.type() != simdjson::dom::element_type::OBJECT) {
        return bad(BadReason::kNotString, fmt::format("looks like {}, but its turn {} is {}, not a {{\"role\", "
                                                      "\"content\"}} object",
                                                      list, i + 1, json_type_name(turn.type())));
      }
      std::optional<Element> turn_role = member(turn.get_object().value_unsafe(), "role");
      std::optional<Element> turn_content = member(turn.get_object().value_unsafe(), "content");
      if (!turn_role || !turn_content) {
        return bad(BadReason::kMissingField, fmt::format("looks like {}, but its turn {} has no \"{}\"", list, i + 1,
                                                         turn_role ? "content" : "role"));
      }
      std::string_view name;
      if (auto why = read_text(*turn_role, "a turn's ", "role", name)) return why;
      if (name == role) {
        if (auto why = read_text(*turn_content, "a turn's ", "content", content)) return why;
        index = i;
      }
      ++i;
    }
    return std::nullopt;
  }

  // Conversational: the final assistant turn of `answer_turns` and the last
  // user turn before it in `question_turns` (one list for "messages"; TRL's
  // conversational prompt/completion keeps them apart).
  static std::optional<LineVerdict> read_turns(simdjson::dom::array question_turns, simdjson::dom::array answer_turns,
                                               bool one_list, std::string_view list, Record& record) {
    std::size_t assistant = 0;
    std::string_view reply;
    if (auto why = last_turn(answer_turns, answer_turns.size(), "assistant", list, reply, assistant)) return why;
    if (assistant == answer_turns.size())
      return bad(BadReason::kMissingField, fmt::format("looks like {}, but has no assistant turn", list));
    const std::size_t end = one_list ? assistant : question_turns.size();
    std::size_t user = 0;
    if (auto why = last_turn(question_turns, end, "user", list, record.question, user)) return why;
    if (user == end) {
      return bad(BadReason::kMissingField,
                 fmt::format("looks like {}, but has no user turn before its last assistant turn", list));
    }
    return read_completion(reply, "", record);
  }

  // The record formats of corpus.h, tried in its order: the one rule that tells them apart.
  LineVerdict read_by_format(simdjson::dom::object object, Record& record) {
    const FieldNames& names = options_.fields;
    const LineVerdict good{true, BadReason::kMalformedJson, {}};
    auto quoted = [](std::string_view name) { return fmt::format("\"{}\"", name); };
    // The members any format names, found in one pass (the corpus's hot path).
    // Python's json keeps the last of repeated keys; so do we.
    constexpr int kNames = 9;
    const std::string_view wanted[kNames] = {"messages", names.question, names.reasoning, names.solution, names.answer,
                                             "problem",  "solution",     "prompt",        "completion"};
    std::optional<Element> found[kNames];
    for (auto item : object) {
      for (int n = 0; n < kNames; ++n) {
        if (item.key == wanted[n]) found[n] = item.value;
      }
    }
    auto member = [&](std::string_view name) -> const std::optional<Element>& {
      for (int n = 0; n < kNames; ++n) {
        if (wanted[n] == name) return found[n];
      }
      throw Error(fmt::format("corpus reader: field \"{}\" is not one a format names", name));
    };
    auto field = [&](std::string_view name, std::string_view& out) -> std::optional<LineVerdict> {
      return read_text(*member(name), "field ", name, out);
    };

    if (std::optional<Element> messages = member("messages")) {
      record.format = RecordFormat::kMessages;
      if (messages->type() != simdjson::dom::element_type::ARRAY) {
        return bad(BadReason::kNotString, fmt::format("looks like messages, but \"messages\" is {}, not a list of "
                                                      "{{\"role\", \"content\"}} turns",
                                                      json_type_name(messages->type())));
      }
      const simdjson::dom::array turns = messages->get_array().value_unsafe();
      if (auto why = read_turns(turns, turns, true, "messages", record)) return *why;
      return good;
    }

    if (member(names.question)) {
      if (auto why = field(names.question, record.question)) return *why;
      const bool has_reasoning = member(names.reasoning).has_value();
      if (has_reasoning || (!member(names.answer) && !options_.require_reasoning && member(names.solution))) {
        record.format = RecordFormat::kSeed;
        record.answer_rule = AnswerRule::kHashes;  // what augment trains the model to write
        if (has_reasoning) {
          if (auto why = field(names.reasoning, record.reasoning)) return *why;
        }
        std::optional<Element> solution = member(names.solution);
        if (!solution) {
          return bad(BadReason::kMissingField,
                     fmt::format("looks like seed (has {} and {}), but has no {}", quoted(names.question),
                                 quoted(names.reasoning), quoted(names.solution)));
        }
        // A number is its answer as written ("solution": 7); anything else must be text.
        const auto type = solution->type();
        if (type == simdjson::dom::element_type::INT64 || type == simdjson::dom::element_type::UINT64 ||
            type == simdjson::dom::element_type::DOUBLE) {
          number_text_ = simdjson::minify(*solution);
          record.solution = number_text_;
        } else if (auto why = field(names.solution, record.solution)) {
          return *why;
        }
        return good;
      }
      if (member(names.answer)) {
        record.format = RecordFormat::kQuestionAnswer;
        std::string_view answer;
        if (auto why = field(names.answer, answer)) return *why;
        if (auto why = read_completion(answer, names.answer, record)) return *why;
        return good;
      }
      return bad(BadReason::kMissingField,
                 fmt::format("looks like seed or question/answer (has {}), but has neither {} nor {}{}; "
                             "corpus.fields maps other names",
                             quoted(names.question), quoted(names.reasoning), quoted(names.answer),
                             member(names.solution) ? fmt::format(" beside {}", quoted(names.solution)) : ""));
    }

    if (member("problem")) {
      record.format = RecordFormat::kProblemSolution;
      record.answer_rule = AnswerRule::kBoxed;
      if (auto why = field("problem", record.question)) return *why;
      if (!member("solution")) {
        return bad(BadReason::kMissingField, "looks like problem/solution (has \"problem\"), but has no \"solution\"");
      }
      std::string_view solution;
      if (auto why = field("solution", solution)) return *why;
      const std::optional<SplitAnswer> split = split_reference(solution, AnswerRule::kBoxed);
      if (!split) {
        return bad(BadReason::kNoFinalAnswer, "looks like problem/solution, but \"solution\" has no \\boxed{} answer");
      }
      record.reasoning = split->reasoning;
      record.solution = split->answer;
      return good;
    }

    std::optional<Element> prompt = member("prompt");
    std::optional<Element> completion = member("completion");
    if (prompt || completion) {
      record.format = RecordFormat::kPromptCompletion;
      if (!prompt || !completion) {
        return bad(BadReason::kMissingField,
                   fmt::format("looks like prompt/completion (has \"{}\"), but has no \"{}\"",
                               prompt ? "prompt" : "completion", prompt ? "completion" : "prompt"));
      }
      // TRL's conversational prompt/completion: lists of turns.
      if (prompt->type() == simdjson::dom::element_type::ARRAY &&
          completion->type() == simdjson::dom::element_type::ARRAY) {
        if (auto why = read_turns(prompt->get_array().value_unsafe(), completion->get_array().value_unsafe(), false,
                                  "prompt/completion", record)) {
          return *why;
        }
        return good;
      }
      if (auto why = field("prompt", record.question)) return *why;
      std::string_view text;
      if (auto why = field("completion", text)) return *why;
      if (auto why = read_completion(text, "completion", record)) return *why;
      return good;
    }

    return bad(
        BadReason::kMissingField,
        fmt::format("fits no record format: needs \"messages\", {} with {} and {} or with {}, \"problem\" and "
                    "\"solution\", or \"prompt\" and \"completion\" (corpus.fields maps other names)",
                    quoted(names.question), quoted(names.reasoning), quoted(names.solution), quoted(names.answer)));
  }

  const ReadOptions& options_;
  const std::function<void(const Record&)>& visit_;
  simdjson::dom::parser parser_;
  std::string number_text_;  // a numeric solution's text, for the record's view
};

}  // namespace

const char* bad_reason_name(BadReason reason) {
  switch (reason) {
    case BadReason::kMalformedJson:
      return "malformed JSON";
    case BadReason::kNotObject:
      return "not an object";
    case BadReason::kMissingField:
      return "missing field";
    case BadReason::kNotString:
      return "non-string field";
    case BadReason::kInvalidUtf8: return "invalid UTF-8";
    case BadReason::kNulByte: return "NUL byte";
    case BadReason::kByteOrderMark: return "byte order mark";
    case BadReason::kTooDeep: return "nested too deeply";
    case BadReason::kNoFinalAnswer: return "no final answer";
    case BadReason::kCount: break;
  }
  return "?";
}

const char* record_format_name(RecordFormat format) {
  switch (format) {
    case RecordFormat::kMessages: return "messages";
    case RecordFormat::kSeed: return "seed";
    case RecordFormat::kQuestionAnswer: return "question/answer";
    case RecordFormat::kProblemSolution: return "problem/solution";
    case RecordFormat::kPromptCompletion: return "prompt/completion";
  }
  return "?";
}

std::vector<std::string> expand_corpus_files(const std::vector<std::string>& patterns) {
  if (patterns.empty()) throw InputError("no corpus files given (corpus.files is empty)");
  std::vector<std::string> files;
  for (const auto& pattern : patterns) {
    bool is_glob = pattern.find_first_of("*?[") != std::string::npos;
    if (!is_glob) {
      std::error_code error;
      if (!std::filesystem::exists(pattern, error)) throw InputError(fmt::format("{}: corpus file not found{}", pattern, looked_for(pattern)));
      if (std::filesystem::is_directory(pattern, error)) throw InputError(fmt::format("{}: corpus path is a directory", pattern));
      files.push_back(pattern);
      continue;
    }
    glob_t matches{};
    int status = ::glob(pattern.c_str(), 0, nullptr, &matches);
    std::vector<std::string> found;
    if (status == 0) {
      for (std::size_t i = 0; i < matches.gl_pathc; ++i) {
        if (!std::filesystem::is_directory(matches.gl_pathv[i])) found.emplace_back(matches.gl_pathv[i]);
      }
    }
    ::globfree(&matches);
    if (found.empty()) throw InputError(fmt::format("{}: corpus glob matches no file{}", pattern, looked_for(pattern)));
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

LineRange rank_line_range(std::string_view file_bytes, int rank, int world_size) {
  const std::uint64_t size = file_bytes.size();
  // 128-bit product: size * rank must not overflow for huge files.
  auto cut = [&](int r) {
    return static_cast<std::uint64_t>(static_cast<unsigned __int128>(size) * static_cast<unsigned>(r) /
                                      static_cast<unsigned>(world_size));
  };
  return {line_start_at_or_after(file_bytes, cut(rank)), line_start_at_or_after(file_bytes, cut(rank + 1))};
}

CorpusStats read_corpus(const std::vector<std::string>& files, const ReadOptions& options,
                        Communicator& communicator, const std::function<void(const Record&)>& visit) {
  const int rank = communicator.rank();
  const int world_size = communicator.size();
  CorpusStats stats;
  LineReader reader(options, visit);
  std::size_t reported = 0;
  // number_lines_after: the reports wait for the line numbers of lower ranks.
  struct PendingReport {
    std::size_t file_index;
    std::uint64_t line;  // from this rank's first line of the file
    std::string detail;
  };
  std::vector<PendingReport> pending;
  std::vector<std::uint64_t> own_lines_per_file(files.size(), 0);

  for (std::size_t file_index = 0; file_index < files.size(); ++file_index) {
    const std::string& path = files[file_index];
    MappedFile file(path);
    std::string_view bytes = file.bytes();
    refuse_json_array(path, bytes);  // every rank sees the same first bytes, so all throw or none
    LineRange range = rank_line_range(bytes, rank, world_size);
    file.advise_sequential(range.begin, range.end);

    // Line numbers: the lines of lower ranks come first (one small allgather per file).
    // The last rank's count is nobody's offset, so it (and a lone rank) skips the pass.
    std::uint64_t line = 0;
    if (!options.number_lines_after) {
      std::uint64_t own_lines = rank + 1 < world_size ? count_lines(path, bytes, range) : 0;
      auto lines_per_rank = communicator.allgather_value<std::uint64_t>(own_lines);
      for (int r = 0; r < rank; ++r) line += lines_per_rank[static_cast<std::size_t>(r)];
    }
    const std::uint64_t first_line = line;
    if (rank == 0 && bytes.empty()) log_warn("{}: the corpus file is empty", path);

    std::uint64_t position = range.begin;
    std::uint64_t released = range.begin;
    while (position < range.end) {
      if (position - released > kReleaseBytes) {
        file.release(released, position);
        released = position;
      }
      const char* start = bytes.data() + position;
      const void* newline = std::memchr(start, '\n', range.end - position);
      std::uint64_t line_end = newline == nullptr ? range.end : static_cast<const char*>(newline) - bytes.data();
      std::string_view text(start, line_end - position);
      position = newline == nullptr ? range.end : line_end + 1;
      ++line;
      stats.bytes += text.size() + 1;

      LineVerdict verdict;
      if (text.substr(0, kByteOrderMark.size()) == kByteOrderMark) {
        if (start == bytes.data()) {
          // A BOM at the start of the file is an encoding marker, not data.
          log_warn("{}:1: skipped a UTF-8 byte order mark at the start of the file", path);
          text.remove_prefix(kByteOrderMark.size());
        } else {
          verdict = {false, BadReason::kByteOrderMark, "UTF-8 byte order mark inside the file"};
        }
      }
      if (verdict.detail.empty()) {
        if (is_blank(text)) {
          ++stats.blank_lines;
          continue;
        }
        verdict = reader.parse(text, bytes.size() - (text.data() + text.size() - bytes.data()),
                               make_record_key(file_index, line), static_cast<std::uint64_t>(start - bytes.data()));
      }
      if (verdict.good) {
        ++stats.records;
        continue;
      }
      ++stats.bad_lines;
      ++stats.bad_by_reason[static_cast<int>(verdict.reason)];
      if (reported < options.max_reported_per_rank) {
        if (options.number_lines_after) {
          pending.push_back({file_index, line, std::move(verdict.detail)});
        } else {
          stats.reports.push_back(fmt::format("{}:{}: {}", path, line, verdict.detail));
          log_warn("{}", stats.reports.back());
        }
      } else if (reported == options.max_reported_per_rank && reported > 0 && !options.number_lines_after) {
        log_warn("further bad lines on this rank are counted but not printed");
      }
      ++reported;
    }
    own_lines_per_file[file_index] = line - first_line;
  }
  if (options.number_lines_after) {
    // One allgather for all files: rank r's lines of each file.
    std::vector<std::uint64_t> all(own_lines_per_file.size() * static_cast<std::size_t>(world_size));
    if (!own_lines_per_file.empty()) {
      communicator.allgather(own_lines_per_file.data(), all.data(), own_lines_per_file.size(), DType::kUInt64);
    }
    stats.line_base.assign(files.size(), 0);
    for (std::size_t f = 0; f < files.size(); ++f) {
      for (int r = 0; r < rank; ++r) stats.line_base[f] += all[static_cast<std::size_t>(r) * files.size() + f];
    }
    for (const PendingReport& report : pending) {
      stats.reports.push_back(
          fmt::format("{}:{}: {}", files[report.file_index], stats.line_base[report.file_index] + report.line, report.detail));
      log_warn("{}", stats.reports.back());
    }
    if (reported > options.max_reported_per_rank && options.max_reported_per_rank > 0) {
      log_warn("further bad lines on this rank are counted but not printed");
    }
  }
  return stats;
}

void read_lines_at(const std::vector<std::string>& files, std::vector<LineAt> lines, const ReadOptions& options,
                   const std::function<void(const Record&)>& visit) {
  std::sort(lines.begin(), lines.end(), [](const LineAt& a, const LineAt& b) {
    return record_key_file(a.key) != record_key_file(b.key) ? record_key_file(a.key) < record_key_file(b.key)
                                                            : a.offset < b.offset;
  });
  LineReader reader(options, visit);
  for (std::size_t i = 0; i < lines.size();) {
    const std::size_t file_index = record_key_file(lines[i].key);
    if (file_index >= files.size()) throw Error(fmt::format("read_lines_at: no file {} for a record key", file_index));
    const std::string& path = files[file_index];
    MappedFile file(path);
    std::string_view bytes = file.bytes();
    for (; i < lines.size() && record_key_file(lines[i].key) == file_index; ++i) {
      const std::uint64_t offset = lines[i].offset;
      if (offset >= bytes.size()) throw InputError(fmt::format("{}: no line at byte {} any more (the file changed)", path, offset));
      const char* start = bytes.data() + offset;
      const void* newline = std::memchr(start, '\n', bytes.size() - offset);
      std::string_view text(start, newline == nullptr ? bytes.size() - offset : static_cast<const char*>(newline) - start);
      if (offset == 0 && text.substr(0, kByteOrderMark.size()) == kByteOrderMark) text.remove_prefix(kByteOrderMark.size());
      LineVerdict verdict = reader.parse(text, bytes.size() - (text.data() + text.size() - bytes.data()), lines[i].key, offset);
      if (!verdict.good) {
        throw InputError(fmt::format("{}: the line at byte {} is no longer a good record ({}); the file changed while it was read",
                                     path, offset, verdict.detail));
      }
    }
  }
}

void refuse_json_array(const std::string& path, std::string_view bytes) {
  if (bytes.substr(0, kByteOrderMark.size()) == kByteOrderMark) bytes.remove_prefix(kByteOrderMark.size());
  const std::size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || bytes[first] != '[') return;
  // The converted file's name must not be the array's own (jq would read an emptied file).
  std::filesystem::path lines(path);
  lines = lines.extension() == ".json" ? lines.replace_extension(".jsonl") : lines.replace_extension(".lines.jsonl");
  throw InputError(
      fmt::format("{}: this is a JSON array; JSON Lines expected (one JSON object per line): convert "
                  "it with `jq -c '.[]' {} > {}`",
                  path, path, lines.string()));
}

void read_file_records(const std::string& path, const ReadOptions& options,
                       const std::function<bool(const Record&)>& visit,
                       const std::function<void(std::uint64_t line, const std::string& why)>& bad) {
  MappedFile file(path);
  const std::string_view bytes = file.bytes();
  refuse_json_array(path, bytes);
  bool more = true;
  const std::function<void(const Record&)> each = [&](const Record& record) { more = visit(record); };
  LineReader reader(options, each);
  std::uint64_t position = 0;
  std::uint64_t line = 0;
  while (more && position < bytes.size()) {
    const char* start = bytes.data() + position;
    const void* newline = std::memchr(start, '\n', bytes.size() - position);
    const std::uint64_t line_end = newline == nullptr ? bytes.size() : static_cast<const char*>(newline) - bytes.data();
    std::string_view text(start, line_end - position);
    const std::uint64_t offset = position;
    position = newline == nullptr ? bytes.size() : line_end + 1;
    ++line;
    if (text.substr(0, kByteOrderMark.size()) == kByteOrderMark) {
      if (offset != 0) {
        bad(line, "UTF-8 byte order mark inside the file");
        continue;
      }
      text.remove_prefix(kByteOrderMark.size());
    }
    if (is_blank(text)) continue;
    LineVerdict verdict =
        reader.parse(text, bytes.size() - (text.data() + text.size() - bytes.data()), make_record_key(0, line), offset);
    if (!verdict.good) bad(line, verdict.detail);
  }
}

CorpusStats reduce_stats(const CorpusStats& local, Communicator& communicator) {
  std::vector<std::uint64_t> counts = {local.records, local.bad_lines, local.blank_lines, local.bytes};
  counts.insert(counts.end(), local.bad_by_reason.begin(), local.bad_by_reason.end());
  communicator.allreduce(counts, ReduceOp::kSum);
  CorpusStats global;
  global.records = counts[0];
  global.bad_lines = counts[1];
  global.blank_lines = counts[2];
  global.bytes = counts[3];
  std::copy(counts.begin() + 4, counts.end(), global.bad_by_reason.begin());
  return global;
}

std::string describe_stats(const CorpusStats& stats) {
  std::vector<std::string> reasons;
  for (int i = 0; i < static_cast<int>(BadReason::kCount); ++i) {
    if (stats.bad_by_reason[i] > 0) {
      reasons.push_back(fmt::format("{} {}", bad_reason_name(static_cast<BadReason>(i)), stats.bad_by_reason[i]));
    }
  }
  return fmt::format("{} records, {} bad line{}{}, {} blank line{} skipped", stats.records, stats.bad_lines,
                     stats.bad_lines == 1 ? "" : "s",
                     reasons.empty() ? "" : fmt::format(" ({})", fmt::join(reasons, ", ")), stats.blank_lines,
                     stats.blank_lines == 1 ? "" : "s");
}

std::string record_key_name(RecordKey key, const std::vector<std::string>& files) {
  std::size_t file = record_key_file(key);
  std::string name = file < files.size() ? std::filesystem::path(files[file]).filename().string() : "?";
  return fmt::format("{}:{}", name, record_key_line(key));
}

}  // namespace metareuse
