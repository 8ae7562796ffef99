// The tokenized training set: augmented examples (prompt, target) tokenized
// with a template, packed into fixed-length sequences with document
// boundaries kept, and stored in one versioned HDF5 file that training loads.
//
// File layout (format version 2), for N sequences of length T and D documents:
//   /tokens      int32 (N, T)  token ids; padding is the pad id
//   /loss_mask   uint8 (N, T)  1 where the token is a training target (the target text and its end token)
//   /segment_ids int32 (N, T)  document index within its sequence (0, 1, ...), -1 on padding:
//                              attention and loss must not cross a change of segment
//   /positions   int32 (N, T)  position within the document (0 at its first token), 0 on padding
//   /documents   int64 (D, 4)  source record index, sequence, offset, length
//   attributes on /: magic, format_version, tokenizer_kind, tokenizer_vocab_size, tokenizer_hash,
//   patterns_hash, template, sequence_length, pad_id, packing_efficiency, config (JSON),
//   validation_share (version 2).
//   /validation  (version 2, when validation_share > 0) the held-out documents, packed
//                like training's: the same five arrays, and on the group the
//                attributes documents, dropped_documents, real_tokens, packing_efficiency.
// Version 1 files (no validation) still load.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {

class Communicator;

inline constexpr const char* kDatasetMagic = "metareuse-tokenized-dataset";
inline constexpr std::int64_t kDatasetFormatVersion = 2;
// The oldest version load_dataset_file still reads: version 1 is version 2 without validation.
inline constexpr std::int64_t kDatasetOldestReadableVersion = 1;

struct DatasetMetadata {
  std::int64_t format_version = kDatasetFormatVersion;
  std::string tokenizer_kind;
  std::int64_t tokenizer_vocab_size = 0;
  std::string tokenizer_hash;
  std::string patterns_hash = "none";  // xxh3 of the pattern handbook, when one was given
  std::string template_name;           // "chat", "plain" or "model" (prompt_format.h)
  std::int64_t sequence_length = 0;
  TokenId pad_id = 0;
  std::string config_json;             // the resolved config that made the file
  double validation_share = 0;         // dataset.validation_share: the share of documents held out
  // Figures of the packing.
  std::int64_t documents = 0;
  std::int64_t dropped_documents = 0;  // longer than sequence_length, left out whole
  std::int64_t real_tokens = 0;
  double packing_efficiency = 0;       // real tokens / (sequences * sequence_length)

  // "kind:vocab_size:hash", as Tokenizer::identity().
  std::string tokenizer_identity() const;
};

struct PackedDataset {
  DatasetMetadata metadata;
  std::int64_t sequences = 0;
  std::vector<TokenId> tokens;             // (sequences, sequence_length)
  std::vector<std::uint8_t> loss_mask;     // (sequences, sequence_length)
  std::vector<std::int32_t> segment_ids;   // (sequences, sequence_length)
  std::vector<std::int32_t> positions;     // (sequences, sequence_length)
  std::vector<std::int64_t> documents;     // (documents, 4): record, sequence, offset, length

  // Row i of a (sequences, sequence_length) array.
  template <typename T>
  const T* row(const std::vector<T>& array, std::int64_t sequence) const {
    return array.data() + sequence * metadata.sequence_length;
  }
};

// One tokenized document and the input record it came from.
struct DocumentTokens {
  std::int64_t record = 0;
  TokenizedExample example;
};

// The training sequences and, when the file has them, the held-out
// validation sequences (their metadata is the file's, with their own
// document, token and packing figures).
struct DatasetFile {
  PackedDataset training;
  std::optional<PackedDataset> validation;
};

// Which documents are held out for validation: round(share * documents) of
// them (at least 1 and at most documents - 1 when share > 0), those with the
// smallest xxh3 hash of (record index, seed), so the choice depends on
// neither the order the ranks deliver records in nor the rank count.
// Returns the held-out records, sorted.
std::vector<std::int64_t> validation_records(const std::vector<std::int64_t>& records, double share,
                                             std::uint64_t seed);

// Packs documents, in record order, into sequences of `sequence_length`: a
// document that does not fit in the current sequence starts the next one
// (pack = true), or every document gets its own sequence (pack = false).
// Documents longer than a sequence are dropped and counted.
PackedDataset pack_documents(std::vector<DocumentTokens> documents, std::int64_t sequence_length, bool pack,
                             TokenId pad_id);

struct PrepareOptions {
  std::string input;            // augmented JSON Lines: AugmentedExample lines; prompt and target are read
  std::string output;           // the .h5 file (written by rank 0)
  std::string template_name = "chat";  // chat, plain or model (resolved: never auto)
  std::string tokenizer_path;           // the tokenizer's file: template model is read beside it
  std::int64_t sequence_length = 1024;
  bool pack = true;
  // A document longer than sequence_length: "drop" (counted, warned with the
  // share), "truncate" (its first sequence_length tokens) or "error".
  std::string overflow = "drop";
  std::string patterns_file;    // hashed into the metadata when not empty
  std::string config_json;
  double validation_share = 0;  // dataset.validation_share: documents held out (validation_records)
  std::uint64_t seed = 0;       // run.seed: which documents are held out
};

struct PrepareReport {
  std::int64_t records = 0;
  std::int64_t bad_records = 0;
  DatasetMetadata metadata;
  std::int64_t sequences = 0;
  std::int64_t truncated_documents = 0;  // overflow "truncate": cut to sequence_length
  // The held-out set (validation_share > 0): its documents, sequences and tokens.
  std::int64_t validation_documents = 0;
  std::int64_t validation_sequences = 0;
  std::int64_t validation_tokens = 0;
};

// Every rank tokenizes its share of the records (record i goes to rank
// i % ranks); the documents are gathered and rank 0 packs and writes the file.
// The file is the same for any number of ranks.
PrepareReport prepare_dataset(const PrepareOptions& options, const Tokenizer& tokenizer, Communicator& communicator);

// `validation`: the held-out sequences, written as /validation (null: none).
void write_dataset(const std::string& path, const PackedDataset& dataset, const PackedDataset* validation = nullptr);

// What a loader expects; a file that does not match is refused.
struct DatasetExpectations {
  std::optional<std::string> tokenizer_identity;  // the run's tokenizer
  std::optional<std::int64_t> model_vocab_size;   // the model's embedding rows
};

// Reads and checks a dataset file: HDF5 readable (not truncated), magic,
// format version, tokenizer identity, vocabulary within the model's, array
// shapes, ids within the vocabulary. Throws InputError naming the file and
// the problem.
DatasetFile load_dataset_file(const std::string& path, const DatasetExpectations& expectations = {});
// The training sequences of load_dataset_file.
PackedDataset load_dataset(const std::string& path, const DatasetExpectations& expectations = {});

}  // namespace metareuse
