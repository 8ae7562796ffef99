// Tokenize augmented examples on every rank, gather, pack, write.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>  // XXH3_64bits: the patterns hash and the validation split

#include <algorithm>
#include <cmath>  // std::llround
#include <fstream>
#include <sstream>

#include "metareuse/augment/augmented_example.h"  // the augment stage's line
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/tokenizer/prompt_format.h"

namespace metareuse {

PackedDataset pack_documents(std::vector<DocumentTokens> documents, std::int64_t sequence_length, bool pack,
                             TokenId pad_id) {
  if (sequence_length <= 0) MR_THROW("sequence_length {} must be positive", sequence_length);
  // Record order, whatever order the ranks delivered them in.
  std::sort(documents.begin(), documents.end(),
            [](const DocumentTokens& a, const DocumentTokens& b) { return a.record < b.record; });
  PackedDataset dataset;
  DatasetMetadata& metadata = dataset.metadata;
  metadata.sequence_length = sequence_length;
  metadata.pad_id = pad_id;
  const auto length = static_cast<std::size_t>(sequence_length);
  std::int64_t used = length;  // tokens used in the current sequence; "full" starts the first one
  std::int32_t segment = 0;
  auto start_sequence = [&]() {
    dataset.tokens.resize(dataset.tokens.size() + length, pad_id);
    dataset.loss_mask.resize(dataset.loss_mask.size() + length, 0);
    dataset.segment_ids.resize(dataset.segment_ids.size() + length, -1);
    dataset.positions.resize(dataset.positions.size() + length, 0);
    ++dataset.sequences;
    used = 0;
    segment = 0;
  };
  for (const DocumentTokens& document : documents) {
    const auto size = static_cast<std::int64_t>(document.example.ids.size());
    if (size > sequence_length || size == 0) {
      ++metadata.dropped_documents;
      continue;
    }
    if (!pack || used + size > sequence_length) start_sequence();
    const std::size_t base = static_cast<std::size_t>((dataset.sequences - 1) * sequence_length + used);
    std::copy(document.example.ids.begin(), document.example.ids.end(), dataset.tokens.begin() + base);
    std::copy(document.example.loss_mask.begin(), document.example.loss_mask.end(), dataset.loss_mask.begin() + base);
    for (std::int64_t i = 0; i < size; ++i) {
      dataset.segment_ids[base + i] = segment;
      dataset.positions[base + i] = static_cast<std::int32_t>(i);
    }
    dataset.documents.insert(dataset.documents.end(), {document.record, dataset.sequences - 1, used, size});
    ++metadata.documents;
    metadata.real_tokens += size;
    used += size;
    ++segment;
  }
  metadata.packing_efficiency =
      dataset.sequences == 0 ? 0.0
                             : static_cast<double>(metadata.real_tokens) /
                                   static_cast<double>(dataset.sequences * sequence_length);
  return dataset;
}

std::vector<std::int64_t> validation_records(const std::vector<std::int64_t>& records, double share,
                                             std::uint64_t seed) {
  if (share <= 0 || records.size() < 2) return {};
  const auto documents = static_cast<std::int64_t>(records.size());
  const std::int64_t held = std::clamp<std::int64_t>(std::llround(share * static_cast<double>(documents)), 1,
                                                     documents - 1);
  // (hash, record): the smallest hashes are held out; a tie goes to the lower record.
  std::vector<std::pair<std::uint64_t, std::int64_t>> ranked;
  ranked.reserve(records.size());
  for (std::int64_t record : records) {
    ranked.emplace_back(static_cast<std::uint64_t>(XXH3_64bits_withSeed(&record, sizeof record, seed)), record);
  }
  std::partial_sort(ranked.begin(), ranked.begin() + held, ranked.end());
  std::vector<std::int64_t> chosen;
  for (std::int64_t i = 0; i < held; ++i) chosen.push_back(ranked[static_cast<std::size_t>(i)].second);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

namespace {

std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open the patterns file: {}", path, why_unreadable(path)));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string content = buffer.str();
  return fmt::format("{:016x}", static_cast<unsigned long long>(XXH3_64bits(content.data(), content.size())));
}

TokenizedExample tokenize_record(const PromptFormat& format, const nlohmann::json& record) {
  // prompt first: the one named in the error of a record that has neither.
  const AugmentedExample example =
      AugmentedExample::from_json(record, {AugmentedExample::kPrompt, AugmentedExample::kTarget});
  return format.training_example(example.prompt, example.target);
}

// An empty dataset is an error, with the reason: no usable record, or no
// document that fits the sequence length (the shortest and longest named).
void require_sequences(const PrepareOptions& options, const std::vector<std::int64_t>& lengths, std::int64_t records,
                       std::int64_t bad) {
  if (records == 0) {
    throw InputError(fmt::format("{}: no records (the file is empty or holds only blank lines); nothing to prepare",
                                 options.input));
  }
  if (lengths.empty()) {
    throw InputError(fmt::format("{}: no usable records: all {} record(s) are bad (each needs string fields "
                                 "\"prompt\" and \"target\"; the first are listed above)",
                                 options.input, bad));
  }
  const auto [shortest, longest] = std::minmax_element(lengths.begin(), lengths.end());
  const bool fits = std::any_of(lengths.begin(), lengths.end(),
                                [&](std::int64_t size) { return size > 0 && size <= options.sequence_length; });
  if (!fits) {
    throw InputError(fmt::format(
        "{}: 0 sequences: none of the {} document(s) fits dataset.sequence_length {} (the shortest has {} tokens, "
        "the longest {}){}; raise --sequence-length (dataset.sequence_length) to at least {}",
        options.input, lengths.size(), options.sequence_length, *shortest, *longest,
        bad > 0 ? fmt::format("; {} bad record(s) skipped", bad) : std::string(), std::max<std::int64_t>(*shortest, 1)));
  }
}

// Documents longer than a sequence, by dataset.overflow: an error names how
// many and the longest; truncate cuts them to the sequence length (in
// `lengths`, which then say how many tokens of each document are kept); drop
// leaves them to pack_documents and warns with the share, as a silent drop of
// half a corpus looks like a finished run.
std::int64_t apply_overflow(const PrepareOptions& options, std::vector<std::int64_t>& lengths, bool leader) {
  const std::int64_t limit = options.sequence_length;
  const auto over = std::count_if(lengths.begin(), lengths.end(), [&](std::int64_t size) { return size > limit; });
  if (over == 0) return 0;
  const std::int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  const double share = 100.0 * static_cast<double>(over) / static_cast<double>(lengths.size());
  if (options.overflow == "error") {
    throw InputError(fmt::format("{}: {} of {} document(s) ({:.1f}%) are longer than dataset.sequence_length {} (the "
                                 "longest has {} tokens); raise --sequence-length (dataset.sequence_length), or set "
                                 "dataset.overflow=truncate or drop",
                                 options.input, over, lengths.size(), share, limit, longest));
  }
  if (options.overflow == "truncate") {
    for (std::int64_t& size : lengths) size = std::min(size, limit);
    if (leader) {
      log_warn("{}: {} of {} document(s) ({:.1f}%) are longer than dataset.sequence_length {} (the longest has {} "
               "tokens): truncated to their first {} tokens (dataset.overflow=truncate)",
               options.input, over, lengths.size(), share, limit, longest, limit);
    }
    return over;
  }
  if (leader) {
    log_warn("{}: {} of {} document(s) ({:.1f}%) are longer than dataset.sequence_length {} (the longest has {} "
             "tokens) and are left out; raise --sequence-length, or set dataset.overflow=truncate (or error)",
             options.input, over, lengths.size(), share, limit, longest);
  }
  return 0;
}

}  // namespace

PrepareReport prepare_dataset(const PrepareOptions& options, const Tokenizer& tokenizer, Communicator& communicator) {
  const int rank = communicator.rank();
  const int ranks = communicator.size();
  // Before any collective: a bad template fails on every rank alike.
  const PromptFormat format(tokenizer, options.template_name, options.tokenizer_path);
  std::ifstream in(options.input, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot open the augmented examples: {}", options.input, why_unreadable(options.input)));

  // This rank's records: i % ranks == rank. Every rank reads the lines but
  // parses and tokenizes only its own.
  std::vector<std::int64_t> records, lengths;
  std::vector<TokenId> ids;
  std::vector<std::uint8_t> masks;
  std::int64_t record = -1, bad = 0, seen = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++record;
    if (record % ranks != rank) continue;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++seen;
    try {
      TokenizedExample example = tokenize_record(format, nlohmann::json::parse(line));
      records.push_back(record);
      lengths.push_back(static_cast<std::int64_t>(example.ids.size()));
      ids.insert(ids.end(), example.ids.begin(), example.ids.end());
      masks.insert(masks.end(), example.loss_mask.begin(), example.loss_mask.end());
    } catch (const std::exception& e) {
      if (++bad <= 10) log_warn("{}:{}: skipped: {}", options.input, record + 1, e.what());
    }
  }

  // Gathered to every rank (the communicator has allgatherv, and a GSM8K-sized
  // set is a few MB), then rank 0 alone packs and writes with serial HDF5:
  // Debian's libhdf5-dev is the serial build, and the file is small enough
  // that one writer costs less than coordinating parallel ones.
  auto all_records = communicator.allgatherv(records);
  auto all_lengths = communicator.allgatherv(lengths);
  auto all_ids = communicator.allgatherv(ids);
  auto all_masks = communicator.allgatherv(masks);
  std::vector<std::int64_t> counts = {seen, bad};
  communicator.allreduce(counts.data(), counts.size(), dtype_of<std::int64_t>(), ReduceOp::kSum);

  PrepareReport report;
  report.records = counts[0];
  report.bad_records = counts[1];
  // Every rank holds the gathered lengths, so every rank decides alike.
  std::vector<std::int64_t> kept_lengths = all_lengths;
  report.truncated_documents = apply_overflow(options, kept_lengths, rank == 0);
  require_sequences(options, kept_lengths, report.records, report.bad_records);
  // The held-out documents, chosen among the usable ones by record index and
  // run.seed; every rank holds the gathered records, so every rank decides
  // alike, and refuses alike a split that leaves either side empty.
  const std::vector<std::int64_t> held = validation_records(all_records, options.validation_share, options.seed);
  if (options.validation_share > 0) {
    std::int64_t fitting[2] = {0, 0};  // training, validation
    for (std::size_t i = 0; i < all_records.size(); ++i) {
      if (kept_lengths[i] <= 0 || kept_lengths[i] > options.sequence_length) continue;
      ++fitting[std::binary_search(held.begin(), held.end(), all_records[i]) ? 1 : 0];
    }
    if (fitting[0] == 0 || fitting[1] == 0) {
      throw InputError(fmt::format(
          "{}: dataset.validation_share {} leaves {} training and {} validation document(s) that fit "
          "dataset.sequence_length {} (of {} usable); both need at least one: change dataset.validation_share, or "
          "give more records",
          options.input, options.validation_share, fitting[0], fitting[1], options.sequence_length,
          all_records.size()));
    }
  }
  if (rank == 0) {
    std::vector<DocumentTokens> documents(all_records.size());
    std::size_t offset = 0;
    for (std::size_t i = 0; i < all_records.size(); ++i) {
      documents[i].record = all_records[i];
      auto kept = static_cast<std::size_t>(kept_lengths[i]);
      documents[i].example.ids.assign(all_ids.begin() + offset, all_ids.begin() + offset + kept);
      documents[i].example.loss_mask.assign(all_masks.begin() + offset, all_masks.begin() + offset + kept);
      offset += static_cast<std::size_t>(all_lengths[i]);
    }
    // The held-out documents are packed exactly as training's are.
    std::vector<DocumentTokens> training_documents, validation_documents;
    for (DocumentTokens& document : documents) {
      const bool held_out = std::binary_search(held.begin(), held.end(), document.record);
      (held_out ? validation_documents : training_documents).push_back(std::move(document));
    }
    const TokenId pad_id = tokenizer.eos_id() >= 0 ? tokenizer.eos_id() : 0;
    PackedDataset dataset =
        pack_documents(std::move(training_documents), options.sequence_length, options.pack, pad_id);
    DatasetMetadata& metadata = dataset.metadata;
    metadata.tokenizer_kind = tokenizer_kind_name(tokenizer.kind());
    metadata.tokenizer_vocab_size = tokenizer.vocab_size();
    metadata.tokenizer_hash = tokenizer.file_hash();
    metadata.patterns_hash = options.patterns_file.empty() ? "none" : file_hash(options.patterns_file);
    metadata.template_name = options.template_name;
    metadata.config_json = options.config_json;
    metadata.validation_share = options.validation_share;
    std::optional<PackedDataset> validation;
    if (options.validation_share > 0) {
      validation = pack_documents(std::move(validation_documents), options.sequence_length, options.pack, pad_id);
      const DatasetMetadata figures = validation->metadata;
      validation->metadata = metadata;
      validation->metadata.documents = figures.documents;
      validation->metadata.dropped_documents = figures.dropped_documents;
      validation->metadata.real_tokens = figures.real_tokens;
      validation->metadata.packing_efficiency = figures.packing_efficiency;
      report.validation_documents = figures.documents;
      report.validation_sequences = validation->sequences;
      report.validation_tokens = figures.real_tokens;
    }
    write_dataset(options.output, dataset, validation ? &*validation : nullptr);
    report.metadata = metadata;
    report.sequences = dataset.sequences;
  }
  communicator.barrier();
  return report;
}

}  // namespace metareuse
