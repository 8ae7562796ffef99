#include "metareuse/augment/augment.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // the augmented lines, parsed and dumped

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <unordered_map>

#include "metareuse/augment/augmented_example.h"
#include "metareuse/augment/prompt.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/text.h"

namespace metareuse {
namespace {

// Content words of a text, punctuation trimmed, in the normalised form.
std::vector<std::string> terms_of(const std::string& text) {
  std::string normalized = normalize(text);
  for (char& c : normalized) {
    if (c == '_') c = ' ';  // behavior names
  }
  std::vector<std::string> terms;
  for (std::string_view word : split_words(normalized)) {
    if (!is_content_word(word)) continue;
    std::string term;
    for (char c : word) {
      if ((c >= 'a' && c <= 'z') || static_cast<unsigned char>(c) >= 0x80) term.push_back(c);
    }
    if (term.size() > 1 && term != "behavior") terms.push_back(term);
  }
  return terms;
}

}  // namespace

AugmentMode parse_augment_mode(const std::string& name) {
  if (name == "global") return AugmentMode::kGlobal;
  if (name == "retrieval" || name == "bm25" || name == "per-example") return AugmentMode::kRetrieval;
  if (name == "used") return AugmentMode::kUsed;
  if (name == "none") return AugmentMode::kNone;
  throw ConfigError(fmt::format("augment mode must be global, retrieval, used or none, got '{}'", name));
}

const char* augment_mode_name(AugmentMode mode) {
  switch (mode) {
    case AugmentMode::kGlobal: return "global";
    case AugmentMode::kRetrieval: return "retrieval";
    case AugmentMode::kUsed: return "used";
    case AugmentMode::kNone: return "none";
  }
  return "?";
}

PatternIndex::PatternIndex(const std::vector<Pattern>& patterns, double k1, double b) : k1_(k1), b_(b) {
  double total = 0;
  for (const Pattern& pattern : patterns) {
    std::vector<std::string> terms = terms_of(pattern.text);
    std::vector<std::string> name_terms = terms_of(pattern.name);
    terms.insert(terms.end(), name_terms.begin(), name_terms.end());
    total += static_cast<double>(terms.size());
    documents_.push_back(std::move(terms));
  }
  average_length_ = documents_.empty() ? 1.0 : std::max(1.0, total / static_cast<double>(documents_.size()));
}

double PatternIndex::score(const std::vector<std::string>& query_terms, std::size_t document) const {
  const auto& terms = documents_[document];
  const double n = static_cast<double>(documents_.size());
  double total = 0;
  for (const std::string& term : query_terms) {
    double frequency = static_cast<double>(std::count(terms.begin(), terms.end(), term));
    if (frequency == 0) continue;
    double containing = 0;
    for (const auto& other : documents_) containing += std::find(other.begin(), other.end(), term) != other.end();
    double idf = std::log(1.0 + (n - containing + 0.5) / (containing + 0.5));
    double length_norm = 1.0 - b_ + b_ * static_cast<double>(terms.size()) / average_length_;
    total += idf * frequency * (k1_ + 1.0) / (frequency + k1_ * length_norm);
  }
  return total;
}

std::vector<std::size_t> PatternIndex::retrieve(const std::string& query, std::size_t k) const {
  std::vector<std::string> query_terms = terms_of(query);
  std::sort(query_terms.begin(), query_terms.end());
  query_terms.erase(std::unique(query_terms.begin(), query_terms.end()), query_terms.end());
  std::vector<std::pair<double, std::size_t>> scored;
  for (std::size_t i = 0; i < documents_.size(); ++i) {
    double s = score(query_terms, i);
    if (s > 0) scored.emplace_back(s, i);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::size_t> best;
  for (std::size_t i = 0; i < scored.size() && best.size() < k; ++i) best.push_back(scored[i].second);
  return best;
}

std::string pattern_prefix(const std::vector<const Pattern*>& chosen) {
  if (chosen.empty()) return "";
  std::string prefix = "Consider these behaviors: ";
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    if (i > 0) prefix += "; ";
    std::string_view instruction = chosen[i]->instruction.empty() ? chosen[i]->text : chosen[i]->instruction;
    while (!instruction.empty() && (instruction.back() == '.' || instruction.back() == ' ')) instruction.remove_suffix(1);
    prefix += fmt::format("{}: {}", chosen[i]->name, instruction);
  }
  return prefix + ". ";
}

AugmentStats augment_corpus(const std::vector<std::string>& files, const Handbook& handbook,
                            const AugmentOptions& options, const std::string& out_path, Communicator& communicator) {
  const int rank = communicator.rank();
  if (rank == 0) prepare_output_file(out_path);  // "cannot create <out>: reason" before any work
  communicator.barrier();

  const PromptPolicy policy(&handbook, options.mode, options.top_k, options.bm25_k1, options.bm25_b);

  std::uint64_t examples = 0;
  std::uint64_t retrieved = 0;
  // This rank's part, <out>.part-<rank>: every write checked, removed on failure.
  AtomicFile out(out_path, fmt::format(".part-{}", rank));
  CorpusStats local = read_corpus(files, options.read, communicator, [&](const Record& record) {
    const PromptChoice choice = policy.for_training(record.question, record.reasoning);
    retrieved += choice.retrieved ? 1 : 0;
    AugmentedExample example;
    example.id = record_key_name(record.key, files);
    example.prompt = PromptPolicy::prompt(choice, record.question);
    example.target = std::string(record.reasoning) + "\n#### " + std::string(record.solution);
    for (const Pattern* pattern : choice.patterns) {
      example.patterns.push_back(pattern->text);
      example.behaviors.push_back(pattern->name);
    }
    example.question = std::string(record.question);
    example.solution = std::string(record.solution);
    out.write(example.to_json().dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + '\n');
    ++examples;
  });
  out.close_keep();

  std::vector<std::uint64_t> counts = {examples, retrieved};
  communicator.allreduce(counts, ReduceOp::kSum);
  AugmentStats stats;
  stats.corpus = reduce_stats(local, communicator);
  stats.examples = counts[0];
  stats.retrieved = counts[1];
  if (stats.examples == 0) {
    // Every rank sees the same counts and throws alike; the parts are removed.
    throw InputError(fmt::format("corpus {}: no example to write: {}", fmt::join(files, ", "),
                                 describe_stats(stats.corpus)));
  }

  communicator.barrier();  // every part is complete
  if (rank == 0) {
    // On any failure every rank's part goes too (the other ranks are ended by the CLI's abort).
    auto remove_parts = [&]() {
      for (int r = 0; r < communicator.size(); ++r) remove_quietly(fmt::format("{}.part-{}", out_path, r));
    };
    try {
      AtomicFile joined(out_path);
      for (int r = 0; r < communicator.size(); ++r) {
        std::string part = fmt::format("{}.part-{}", out_path, r);
        std::ifstream in(part, std::ios::binary);
        if (!in) throw Error(fmt::format("{}: missing part file of rank {}", part, r));
        std::string chunk(1 << 20, '\0');
        while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0) {
          joined.write(std::string_view(chunk.data(), static_cast<std::size_t>(in.gcount())));
        }
      }
      joined.commit();
    } catch (...) {
      remove_parts();
      throw;
    }
    remove_parts();
  }
  communicator.barrier();
  return stats;
}

UsedPatterns::UsedPatterns(const std::vector<Pattern>& patterns) {
  for (const Pattern& pattern : patterns) normalized_.push_back(normalize(pattern.text));
}

std::vector<std::size_t> UsedPatterns::find(std::string_view text, std::size_t limit) const {
  const std::string normalized = normalize(text);
  std::vector<std::size_t> found;
  for (std::size_t i = 0; i < normalized_.size() && (limit == 0 || found.size() < limit); ++i) {
    if (!normalized_[i].empty() && contains_word_aligned(normalized, normalized_[i])) found.push_back(i);
  }
  return found;
}

PatternContexts read_pattern_contexts(const std::string& augmented_path, const Handbook& handbook) {
  std::unordered_map<std::string, std::size_t> index_of;
  for (std::size_t i = 0; i < handbook.patterns.size(); ++i) index_of.emplace(handbook.patterns[i].text, i);
  const std::size_t count = handbook.patterns.size();
  std::vector<std::unordered_map<std::string, double>> holding(count);  // questions holding each term
  PatternContexts contexts;
  contexts.examples.assign(count, 0);
  std::ifstream in(augmented_path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read the augmented examples for pattern contexts: {}", augmented_path,
                                        why_unreadable(augmented_path)));
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    AugmentedExample example;
    try {
      if (record.is_discarded()) throw InputError("not JSON");
      example = AugmentedExample::from_json(record, {AugmentedExample::kQuestion, AugmentedExample::kPatterns});
    } catch (const InputError&) {
      throw InputError(fmt::format("{}:{}: not an augmented example with \"question\" and \"patterns\"",
                                   augmented_path, number));
    }
    std::vector<std::string> terms = terms_of(example.question);
    std::sort(terms.begin(), terms.end());
    terms.erase(std::unique(terms.begin(), terms.end()), terms.end());
    for (const std::string& text : example.patterns) {
      auto found = index_of.find(text);
      if (found == index_of.end()) continue;
      ++contexts.examples[found->second];
      for (const std::string& term : terms) holding[found->second][term] += 1.0;
    }
  }
  contexts.term_shares.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    for (const auto& [term, questions] : holding[i]) {
      contexts.term_shares[i].emplace_back(term, questions / static_cast<double>(contexts.examples[i]));
    }
    std::sort(contexts.term_shares[i].begin(), contexts.term_shares[i].end());
  }
  return contexts;
}

ContextIndex::ContextIndex(const std::vector<Pattern>& patterns, const PatternContexts& contexts, double k1,
                           double b)
    : k1_(k1), b_(b) {
  double total = 0;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    std::map<std::string, double> weights;
    for (const std::string& term : terms_of(patterns[i].text)) weights[term] += 1.0;
    for (const std::string& term : terms_of(patterns[i].name)) weights[term] += 1.0;
    if (i < contexts.term_shares.size()) {
      for (const auto& [term, share] : contexts.term_shares[i]) weights[term] += share;
    }
    double length = 0;
    for (const auto& [term, weight] : weights) length += weight;
    documents_.emplace_back(weights.begin(), weights.end());
    lengths_.push_back(length);
    total += length;
  }
  average_length_ = documents_.empty() ? 1.0 : std::max(1e-9, total / static_cast<double>(documents_.size()));
}

std::vector<std::size_t> ContextIndex::retrieve(const std::string& query, std::size_t k) const {
  std::vector<std::string> query_terms = terms_of(query);
  std::sort(query_terms.begin(), query_terms.end());
  query_terms.erase(std::unique(query_terms.begin(), query_terms.end()), query_terms.end());
  const double n = static_cast<double>(documents_.size());
  auto weight_in = [](const std::vector<std::pair<std::string, double>>& document, const std::string& term) {
    auto found = std::lower_bound(document.begin(), document.end(), term,
                                  [](const auto& entry, const std::string& key) { return entry.first < key; });
    return found != document.end() && found->first == term ? found->second : 0.0;
  };
  std::vector<double> scores(documents_.size(), 0.0);
  for (const std::string& term : query_terms) {
    double containing = 0;
    for (const auto& document : documents_) containing += weight_in(document, term) > 0 ? 1 : 0;
    if (containing == 0) continue;
    const double idf = std::log(1.0 + (n - containing + 0.5) / (containing + 0.5));
    for (std::size_t i = 0; i < documents_.size(); ++i) {
      const double weight = weight_in(documents_[i], term);
      if (weight == 0) continue;
      const double length_norm = 1.0 - b_ + b_ * lengths_[i] / average_length_;
      scores[i] += idf * weight * (k1_ + 1.0) / (weight + k1_ * length_norm);
    }
  }
  std::vector<std::pair<double, std::size_t>> scored;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (scores[i] > 0) scored.emplace_back(scores[i], i);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::size_t> best;
  for (std::size_t i = 0; i < scored.size() && best.size() < k; ++i) best.push_back(scored[i].second);
  return best;
}

}  // namespace metareuse
