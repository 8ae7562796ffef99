#include "metareuse/augment/augment.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // output records

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "metareuse/core/error.h"
#include "metareuse/dist/communicator.h"
#include "metareuse/patterns/text.h"

namespace metareuse::augment {
namespace {

// Content words of a text, punctuation trimmed, in the normalised form.
std::vector<std::string> terms_of(const std::string& text) {
  std::string normalized = patterns::normalize(text);
  for (char& c : normalized) {
    if (c == '_') c = ' ';  // behavior names
  }
  std::vector<std::string> terms;
  for (std::string_view word : patterns::split_words(normalized)) {
    if (!patterns::is_content_word(word)) continue;
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
  throw ConfigError(fmt::format("augment mode must be global or retrieval, got '{}'", name));
}

const char* augment_mode_name(AugmentMode mode) { return mode == AugmentMode::kGlobal ? "global" : "retrieval"; }

PatternIndex::PatternIndex(const std::vector<patterns::Pattern>& patterns, double k1, double b) : k1_(k1), b_(b) {
  double total = 0;
  for (const patterns::Pattern& pattern : patterns) {
    std::vector<std::string> terms = terms_of(pattern.text);
    std::vector<std::string> name_terms = terms_of(pattern.behavior);
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

std::string pattern_prefix(const std::vector<const patterns::Pattern*>& chosen) {
  if (chosen.empty()) return "";
  std::string prefix = "Consider patterns like: ";
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    if (i > 0) prefix += "; ";
    prefix += chosen[i]->text;
  }
  return prefix + ". ";
}

AugmentStats augment_corpus(const std::vector<std::string>& files, const patterns::Handbook& handbook,
                            const AugmentOptions& options, const std::string& out_path, Communicator& communicator) {
  const int rank = communicator.rank();
  std::filesystem::path target(out_path);
  if (rank == 0 && target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  communicator.barrier();
  const std::string part_path = fmt::format("{}.part-{}", out_path, rank);

  std::vector<const patterns::Pattern*> global;
  for (std::size_t i = 0; i < handbook.patterns.size() && i < options.top_k; ++i) global.push_back(&handbook.patterns[i]);
  const std::string global_prefix = pattern_prefix(global);
  PatternIndex index(handbook.patterns, options.bm25_k1, options.bm25_b);

  std::uint64_t examples = 0;
  std::uint64_t retrieved = 0;
  std::ofstream out(part_path, std::ios::trunc | std::ios::binary);
  if (!out) throw Error(fmt::format("{}: cannot write", part_path));
  corpus::CorpusStats local = corpus::read_corpus(files, options.read, communicator, [&](const corpus::Record& record) {
    std::vector<const patterns::Pattern*> chosen = global;
    std::string prefix = global_prefix;
    if (options.mode == AugmentMode::kRetrieval) {
      std::vector<std::size_t> best = index.retrieve(std::string(record.question), options.top_k);
      if (!best.empty()) {
        ++retrieved;
        chosen.clear();
        for (std::size_t i : best) chosen.push_back(&handbook.patterns[i]);
        prefix = pattern_prefix(chosen);
      }
    }
    nlohmann::ordered_json example;
    example["id"] = corpus::record_key_name(record.key, files);
    example["prompt"] = prefix + std::string(record.question) + "\n";
    example["target"] = std::string(record.reasoning) + "\n#### " + std::string(record.solution);
    std::vector<std::string> texts, behaviors;
    for (const patterns::Pattern* pattern : chosen) {
      texts.push_back(pattern->text);
      behaviors.push_back(pattern->behavior);
    }
    example["patterns"] = texts;
    example["behaviors"] = behaviors;
    example["question"] = std::string(record.question);
    example["solution"] = std::string(record.solution);
    out << example.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
    ++examples;
  });
  out.close();
  if (!out) throw Error(fmt::format("{}: failed writing", part_path));

  std::vector<std::uint64_t> counts = {examples, retrieved};
  communicator.allreduce(counts, ReduceOp::kSum);
  AugmentStats stats;
  stats.corpus = corpus::reduce_stats(local, communicator);
  stats.examples = counts[0];
  stats.retrieved = counts[1];

  communicator.barrier();  // every part is complete
  if (rank == 0) {
    std::string temporary = out_path + ".tmp";
    {
      std::ofstream joined(temporary, std::ios::trunc | std::ios::binary);
      for (int r = 0; r < communicator.size(); ++r) {
        std::string part = fmt::format("{}.part-{}", out_path, r);
        std::ifstream in(part, std::ios::binary);
        if (!in) throw Error(fmt::format("{}: missing part file of rank {}", part, r));
        // An empty part would set failbit on `joined` through operator<<(streambuf*).
        if (in.peek() != std::char_traits<char>::eof()) joined << in.rdbuf();
      }
      if (!joined.flush()) throw Error(fmt::format("{}: failed writing", temporary));
    }
    std::filesystem::rename(temporary, out_path);
    for (int r = 0; r < communicator.size(); ++r) std::filesystem::remove(fmt::format("{}.part-{}", out_path, r));
  }
  communicator.barrier();
  return stats;
}

}  // namespace metareuse::augment
