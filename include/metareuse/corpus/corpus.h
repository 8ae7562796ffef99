// The corpus stage: JSON Lines records of worked reasoning, read by every rank
// from its own byte range of each file. Ranges are cut at line starts (a line
// belongs to the rank whose range holds its first byte), so no line is lost or
// read twice and no rank reads the whole corpus. Bad lines are reported as
// `file:line: reason`, counted and skipped; good records still count.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metareuse/corpus/answer_rule.h"  // AnswerRule, the final-answer rules

namespace metareuse {
class Communicator;

// The record formats, each read into (question, reasoning, solution). One
// rule, read_by_format in corpus.cpp, tells them apart by the fields a record
// has, in this order (the first that fits wins):
//   messages           {"messages": [{"role", "content"}, ...]} (TRL's
//                      conversational form; "system" turns are ignored): the
//                      last user turn before the final assistant turn is the
//                      question, that assistant turn the reasoning and answer.
//   seed               {"question", "reasoning", "solution"} (names from
//                      FieldNames; a number as solution is read as its text).
//   question/answer    {"question", "answer"}: GSM8K's, and what corpus.fields
//                      maps (e.g. {"question": "input", "answer": "output"}).
//   problem/solution   MATH's {"problem", "solution"}, the answer in \boxed{}.
//   prompt/completion  TRL's {"prompt", "completion"}, both strings.
// The answer of a free-form text (the answer field, a completion, an
// assistant turn) is read with completion_rule (answer_rule.h): "####", else
// \boxed{}, else the last number; MATH's always with \boxed{}. The reasoning
// feeds the miner; the final answer is what eval's answer check compares.
enum class RecordFormat { kMessages = 0, kSeed, kQuestionAnswer, kProblemSolution, kPromptCompletion };
const char* record_format_name(RecordFormat format);

// The field names of the seed and question/answer formats (corpus.fields).
struct FieldNames {
  std::string question = "question";
  std::string reasoning = "reasoning";
  std::string solution = "solution";
  std::string answer = "answer";
};

// A record key is the same whatever the rank count: file index and line number.
using RecordKey = std::uint64_t;
constexpr int kRecordKeyLineBits = 40;
inline RecordKey make_record_key(std::size_t file_index, std::uint64_t line) {
  return (static_cast<std::uint64_t>(file_index) << kRecordKeyLineBits) | line;
}
inline std::size_t record_key_file(RecordKey key) { return static_cast<std::size_t>(key >> kRecordKeyLineBits); }
inline std::uint64_t record_key_line(RecordKey key) { return key & ((std::uint64_t{1} << kRecordKeyLineBits) - 1); }

// One good record. The views are valid only during the visit callback.
struct Record {
  RecordKey key = 0;
  std::uint64_t offset = 0;  // of the line's first byte in its file (for read_lines_at)
  std::string_view question;
  std::string_view reasoning;
  std::string_view solution;  // the final answer
  RecordFormat format = RecordFormat::kSeed;
  AnswerRule answer_rule = AnswerRule::kHashes;  // how a model's answer to it is found (seed: the trained "####")
};

// Why a line was skipped. Blank lines are not bad: they are skipped silently.
enum class BadReason : int {
  kMalformedJson = 0,
  kNotObject,
  kMissingField,  // the record fits no format
  kNotString,
  kInvalidUtf8,
  kNulByte,
  kByteOrderMark,
  kTooDeep,
  kNoFinalAnswer,  // its answer text states no final answer by its rule
  kCount
};
const char* bad_reason_name(BadReason reason);

struct CorpusStats {
  std::uint64_t records = 0;      // good records
  std::uint64_t bad_lines = 0;
  std::uint64_t blank_lines = 0;
  std::uint64_t bytes = 0;        // bytes of the lines read
  std::array<std::uint64_t, static_cast<int>(BadReason::kCount)> bad_by_reason{};
  // This rank's first bad lines as printed, "file:line: reason" (not reduced).
  std::vector<std::string> reports;
  // With ReadOptions::number_lines_after: per file, the lines before this
  // rank's first line of it (add to a visited key's line with global_key()).
  // Empty otherwise (the keys were global already). Not reduced.
  std::vector<std::uint64_t> line_base;

  RecordKey global_key(RecordKey key) const {
    return line_base.empty() ? key : key + line_base[record_key_file(key)];
  }
};

struct ReadOptions {
  FieldNames fields;
  std::size_t max_reported_per_rank = 20;  // bad lines printed per rank; the rest are only counted
  int max_depth = 64;                      // JSON nesting deeper than this is a bad line
  // A seed record without its reasoning field: bad for training (nothing to
  // mine or learn), a plain question with its answer for eval.
  bool require_reasoning = true;
  // Number each rank's lines from its first line of each file, and learn the
  // lines of the lower ranks after the read (CorpusStats::line_base) instead of
  // before it. Saves the lower ranks a pass over their shares (counting their
  // lines) that every higher rank waits for; the visit then sees keys that are
  // global only once line_base is added. Bad-line reports are printed after
  // the read, with global line numbers.
  bool number_lines_after = false;
};

// Expands globs and checks that every file exists. The order is the order
// given, each glob's matches sorted. Throws InputError naming a missing file
// or a glob that matches nothing.
std::vector<std::string> expand_corpus_files(const std::vector<std::string>& patterns);

// The byte range [begin, end) of lines that start in rank's share of a file of
// `size` bytes, given the file's bytes (only bytes near the cut are read).
struct LineRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};
LineRange rank_line_range(std::string_view file_bytes, int rank, int world_size);

// Reads this rank's share of every file and calls `visit` for each good record,
// in file and line order. Collective: every rank must call it with the same
// files (line numbers come from a prefix sum over ranks). Returns this rank's
// counts; reduce_stats() turns them into the job's.
CorpusStats read_corpus(const std::vector<std::string>& files, const ReadOptions& options,
                        Communicator& communicator, const std::function<void(const Record&)>& visit);

// Reads again single lines that read_corpus visited as good records: for each
// of `lines` (the key and offset of a visited Record), parses the line at
// that offset and calls `visit` with a Record whose key is the one given, in
// file and offset order. Not collective. Throws InputError naming the file and
// byte if such a line is no longer a good record (the file changed meanwhile).
struct LineAt {
  RecordKey key = 0;
  std::uint64_t offset = 0;
};
void read_lines_at(const std::vector<std::string>& files, std::vector<LineAt> lines, const ReadOptions& options,
                   const std::function<void(const Record&)>& visit);

// One whole file read in line order by one process (eval's questions, distill's
// corpus): `visit` gets each good record until it returns false; `bad` gets each
// bad line's number and why. Blank lines are skipped. Throws InputError for an
// unreadable file or a JSON array (refuse_json_array).
void read_file_records(const std::string& path, const ReadOptions& options,
                       const std::function<bool(const Record&)>& visit,
                       const std::function<void(std::uint64_t line, const std::string& why)>& bad);

// Throws InputError in one line when `bytes` (a file's, or its start) hold a
// JSON array rather than JSON Lines, saying how to convert it: read line by
// line, such a file would be one malformed line per line.
void refuse_json_array(const std::string& path, std::string_view bytes);

// Sums the counts over ranks (collective).
CorpusStats reduce_stats(const CorpusStats& local, Communicator& communicator);

// "400 records, 3 bad lines (malformed JSON 2, invalid UTF-8 1), 1 blank line".
std::string describe_stats(const CorpusStats& stats);

// "train.jsonl:17" for a record key.
std::string record_key_name(RecordKey key, const std::vector<std::string>& files);

}  // namespace metareuse
