// The torch-free stages: the config's keys become each stage's typed options
// (the *_stage_options functions), and each stage runs from its options alone.
#include "metareuse/run/data_stages.h"

#include <fmt/format.h>
#include <fmt/ranges.h>       // fmt::join
#include <nlohmann/json.hpp>  // corpus.fields, the handbook's stats

#include <filesystem>
#include <optional>

#include "metareuse/augment/augment.h"
#include "metareuse/core/config.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"  // not_found_among, why_unreadable
#include "metareuse/core/timing.h"
#include "metareuse/dataset/dataset.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/distributed/runtime.h"
#include "metareuse/patterns/miner.h"
#include "metareuse/tokenizer/chat_template.h"  // model_tokenizer_candidates
#include "metareuse/tokenizer/prompt_format.h"
#include "metareuse/tokenizer/tokenizer.h"

namespace metareuse {

GenerationOptions decoding_options(const Config& config, const std::string& section) {
  GenerationOptions options;
  options.max_new_tokens = config.get_int(section + ".max_new_tokens");
  options.batch_size = config.get_int(section + ".batch_size");
  options.temperature = config.get_number(section + ".temperature");
  options.greedy = find_config_key(section + ".greedy") != nullptr ? config.get_bool(section + ".greedy")
                                                                    : options.temperature == 0.0;
  if (find_config_key(section + ".top_p") != nullptr) options.top_p = config.get_number(section + ".top_p");
  options.seed = static_cast<std::uint64_t>(config.get_int("run.seed"));
  return options;
}

namespace {

MiningOptions mining_options(const Config& config) {
  MiningOptions options;
  options.mode = parse_mining_mode(config.get_string("patterns.mode"));
  options.min_support = static_cast<std::uint64_t>(config.get_int("patterns.min_support"));
  options.top_k = static_cast<std::size_t>(config.get_int("patterns.top_k"));
  options.min_words = static_cast<std::size_t>(config.get_int("patterns.min_words"));
  options.max_phrase_words = static_cast<std::size_t>(config.get_int("patterns.max_phrase_words"));
  options.max_candidates = static_cast<std::size_t>(config.get_int("patterns.max_candidates"));
  options.containment_ratio = config.get_number("patterns.containment_ratio");
  options.selection = config.get_string("patterns.selection") == "support" ? Selection::kSupport
                                                                           : Selection::kCoverage;
  options.pool_size = static_cast<std::size_t>(config.get_int("patterns.pool_size"));
  options.group_bytes = static_cast<std::size_t>(config.get_int("patterns.group_memory_mb")) << 20;
  options.instruction_sample = static_cast<std::size_t>(config.get_int("patterns.instruction_sample"));
  options.read = corpus_read_options(config);
  if (options.max_phrase_words < options.min_words) {
    throw ConfigError("patterns.max_phrase_words must be >= patterns.min_words");
  }
  return options;
}

// The strategist's model and decoding (reflect mode, or phrasing mined patterns).
StrategistOptions strategist_options(const Config& config) {
  StrategistOptions model;
  model.model = config.get_string("patterns.model");
  model.tokenizer = config.get_string("tokenizer.path");
  model.template_name = config.get_string("tokenizer.template");
  model.decoding = decoding_options(config, "patterns");
  return model;
}

// Reflect mode's options and its model. The prompt is read and checked here,
// long before the model is loaded.
void reflect_options(const Config& config, PatternsStageOptions& stage) {
  ReflectOptions& options = stage.reflect;
  options.prompt_source = config.get_string("patterns.reflect_prompt");
  options.prompt_template = load_reflection_prompt(options.prompt_source);
  if (options.prompt_source.empty()) options.prompt_source = "configs/reflect_prompt.txt (built in)";
  options.batch_size = static_cast<std::size_t>(config.get_int("patterns.batch_size"));
  options.min_support = static_cast<std::uint64_t>(config.get_int("patterns.min_support"));
  options.top_k = static_cast<std::size_t>(config.get_int("patterns.top_k"));
  options.max_records = static_cast<std::uint64_t>(config.get_int("patterns.max_records"));
  options.read = corpus_read_options(config);
  stage.strategist = strategist_options(config);
  if (stage.strategist.model.empty()) {
    throw UsageError("patterns --mode reflect needs --model (patterns.model): a Hugging Face folder or a checkpoint");
  }
  options.strategist = describe_strategist(stage.strategist);
  options.time_limit = config.get_number("patterns.time_limit");
}

// The model's strategist, or a UsageError naming `what` in a binary without model code.
Strategist load_strategist(const PatternsStageOptions& stage, const StrategistFactory& make_strategist,
                           const std::string& what) {
  if (!make_strategist) {
    throw UsageError(fmt::format("{} needs a model, and this binary has no model code: run it with metareuse "
                                 "(which starts metareuse-torch for it) or metareuse-torch",
                                 what));
  }
  return make_strategist(stage.strategist);
}

// Mines the corpus into `handbook` (with a model, then phrases each pattern);
// returns the corpus's counts. No pattern is an error naming the corpus and
// why (no good record, or none frequent enough).
CorpusStats mine_handbook(const PatternsStageOptions& stage, Communicator& world,
                          const StrategistFactory& make_strategist, Handbook& handbook) {
  const MiningOptions& options = stage.mining;
  std::vector<std::string> files = expand_corpus_files(stage.corpus_files);
  // The model loads first: a bad path fails before the mining's minutes.
  const bool phrase = !stage.strategist.model.empty();
  const Strategist strategist = phrase ? load_strategist(stage, make_strategist, "patterns.model") : Strategist{};
  MiningResult result = mine_patterns(files, options, world);
  handbook = std::move(result.handbook);
  log_info("corpus: {} in {} file(s), {:.1f} MB", describe_stats(result.corpus), files.size(),
            static_cast<double>(result.corpus.bytes) / 1e6);
  log_info("patterns ({} mode, {} rank(s)): {} distinct candidates, {} with support >= {}, {} kept; "
            "counting {:.2f} s, reduction {:.2f} s, instructions {:.2f} s; {} of {} instructions are full sentences",
            handbook.mode, world.size(), result.global_candidates, result.qualified, options.min_support,
            handbook.patterns.size(), result.seconds_count, result.seconds_reduce, result.seconds_instructions,
            handbook.stats["full_sentences"].get<std::uint64_t>(), handbook.patterns.size());
  if (phrase && !handbook.patterns.empty()) {
    Stopwatch watch;
    const PhrasingCounts counts = phrase_patterns(handbook, result.pattern_sentences, stage.phrasing, strategist, world);
    log_info("phrasing: {} replies for {} patterns, {} phrased as behaviors, {} kept their mined sentence (the reply "
             "had no `behavior_name: instruction` line), {:.1f} s",
             counts.replies, handbook.patterns.size(), counts.phrased, counts.kept_mined, watch.seconds());
    handbook.config["model"] = stage.strategist.model;
  }
  for (std::size_t i = 0; i < handbook.patterns.size() && i < 5; ++i) {
    log_info("  {:>7}  {}: {}", handbook.patterns[i].support, handbook.patterns[i].text,
             handbook.patterns[i].instruction);
  }
  const std::string where = fmt::format("{}", fmt::join(files, ", "));
  if (result.corpus.records == 0) {
    throw InputError(fmt::format("corpus {}: no usable record ({}); each line must be a JSON object with string "
                                 "fields for corpus.fields (the first bad lines are listed above)",
                                 where, describe_stats(result.corpus)));
  }
  if (handbook.patterns.empty()) {
    throw InputError(fmt::format("corpus {}: 0 patterns ({} mode): no candidate occurs in at least "
                                 "patterns.min_support={} records ({}); lower patterns.min_support or add records",
                                 where, handbook.mode, options.min_support, describe_stats(result.corpus)));
  }
  return result.corpus;
}

// Reflect mode: the model writes behaviors for each record (patterns/reflect.h).
// Returns the corpus's bad lines, or nullopt when a time limit or signal
// stopped it (its replies log is kept).
std::optional<std::uint64_t> reflect_handbook(const PatternsStageOptions& stage, Communicator& world,
                                              const StrategistFactory& make_strategist, Handbook& handbook) {
  const ReflectOptions& options = stage.reflect;
  std::vector<std::string> files = expand_corpus_files(stage.corpus_files);
  const Strategist strategist = load_strategist(stage, make_strategist, "patterns.mode=reflect");
  Stopwatch watch;
  std::optional<Handbook> reflected = reflect_patterns(files, options, strategist, world);
  if (!reflected) return std::nullopt;
  handbook = std::move(*reflected);
  log_info("patterns (reflect mode, {} rank(s)): {} replies for {} records, {} behavior lines ({} malformed lines), "
            "{} distinct, {} kept in {:.1f} s",
            world.size(), handbook.stats["replies"].get<std::uint64_t>(),
            handbook.stats["records_reflected"].get<std::uint64_t>(),
            handbook.stats["behaviors_parsed"].get<std::uint64_t>(),
            handbook.stats["malformed_lines"].get<std::uint64_t>(),
            handbook.stats["distinct_behaviors"].get<std::uint64_t>(), handbook.patterns.size(), watch.seconds());
  for (std::size_t i = 0; i < handbook.patterns.size() && i < 5; ++i) {
    log_info("  {:>7}  {}: {}", handbook.patterns[i].support, handbook.patterns[i].name,
              handbook.patterns[i].instruction);
  }
  return handbook.stats["bad_lines"].get<std::uint64_t>();
}

// kExitBadRecords when --strict (corpus.strict) and the corpus had bad lines.
int strict_status(bool strict, std::uint64_t bad_lines) {
  if (bad_lines > 0 && strict) {
    log_error("--strict: {} bad line(s) in the corpus", bad_lines);
    return kExitBadRecords;
  }
  return kExitOk;
}

}  // namespace

FieldNames corpus_field_names(const Config& config) {
  FieldNames names;
  const nlohmann::json& fields = config.get_json("corpus.fields");
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    std::string value = it.value().get<std::string>();
    if (it.key() == "question") names.question = value;
    else if (it.key() == "reasoning") names.reasoning = value;
    else if (it.key() == "solution") names.solution = value;
    else if (it.key() == "answer") names.answer = value;
    else throw ConfigError(fmt::format("corpus.fields: unknown role '{}' (valid: question, reasoning, solution, answer)", it.key()));
  }
  return names;
}

ReadOptions corpus_read_options(const Config& config) {
  ReadOptions read;
  read.fields = corpus_field_names(config);
  read.max_depth = static_cast<int>(config.get_int("corpus.max_depth"));
  return read;
}

PatternsStageOptions patterns_stage_options(const Config& config, const std::string& handbook_path) {
  PatternsStageOptions options;
  options.corpus_files = config.get_string_list("corpus.files");
  options.import_path = config.get_string("patterns.import");
  if (!options.import_path.empty()) {
    options.source = HandbookSource::kImport;
  } else if (config.get_string("patterns.mode") == "reflect") {
    options.source = HandbookSource::kReflect;
    reflect_options(config, options);
    options.reflect.replies = reflect_replies_path(handbook_path);
  } else {
    options.source = HandbookSource::kMine;
    options.mining = mining_options(config);
    options.strategist = strategist_options(config);
    options.phrasing.batch_size = static_cast<std::size_t>(config.get_int("patterns.batch_size"));
    if (!options.strategist.model.empty()) {
      options.phrasing.prompt_template = load_phrasing_prompt(config.get_string("patterns.phrase_prompt"));
    }
  }
  options.holdout = config.get_string_list("patterns.holdout");
  options.read = corpus_read_options(config);
  options.strict = config.get_bool("corpus.strict");
  options.handbook = handbook_path;
  return options;
}

AugmentStageOptions augment_stage_options(const Config& config, const std::string& handbook_path,
                                          const std::string& out_path) {
  AugmentStageOptions options;
  options.corpus_files = config.get_string_list("corpus.files");
  options.augment.mode = parse_augment_mode(config.get_string("augment.mode"));
  options.augment.top_k = static_cast<std::size_t>(config.get_int("augment.top_k"));
  options.augment.bm25_k1 = config.get_number("augment.bm25_k1");
  options.augment.bm25_b = config.get_number("augment.bm25_b");
  options.augment.read = corpus_read_options(config);
  options.strict = config.get_bool("corpus.strict");
  options.handbook = handbook_path;
  options.out = out_path;
  return options;
}

TextFormat training_text_format(const Config& config) {
  const std::string model_path = config.get_string("model.path");
  const std::string tokenizer_path = config.get_string("tokenizer.path");
  if (!model_path.empty()) {
    std::error_code error;
    if (!std::filesystem::exists(model_path, error)) {
      throw InputError(fmt::format("model.path '{}' not found: {}", model_path, why_unreadable(model_path)));
    }
    if (!std::filesystem::is_directory(model_path, error)) {
      throw InputError(fmt::format("model.path '{}' is a file{}; it takes a Hugging Face folder (config.json and "
                                   "model.safetensors)",
                                   model_path, looked_for(model_path)));
    }
    // A pretrained model's embeddings mean the ids of the tokenizer it was
    // trained with: a tokenizer trained here would give them other meanings.
    if (tokenizer_path.empty() && model_tokenizer_path(model_path).empty()) {
      throw InputError(fmt::format("{}: a pretrained model is fine-tuned with its own tokenizer; put it in the "
                                   "folder, or give the one it was trained with as tokenizer.path",
                                   not_found_among("model.path " + model_path + "'s tokenizer",
                                                   model_tokenizer_candidates(model_path))));
    }
  }
  return resolve_text_format({tokenizer_path, config.get_string("tokenizer.template")},
                             {model_path, std::nullopt, model_path.empty() ? "" : "model.path " + model_path});
}

PrepareOptions prepare_stage_options(const Config& config, const TextFormat& text, const std::string& input,
                                     const std::string& output) {
  PrepareOptions options;
  options.input = input;
  options.output = output;
  options.template_name = text.template_name;
  options.tokenizer_path = text.tokenizer;
  options.sequence_length = config.get_int("dataset.sequence_length");
  options.pack = config.get_bool("dataset.pack");
  options.overflow = config.get_string("dataset.overflow");
  options.patterns_file = config.get_string("dataset.patterns_file");
  options.validation_share = config.get_number("dataset.validation_share");
  options.seed = static_cast<std::uint64_t>(config.get_int("run.seed"));
  options.config_json = config.dump();
  if (options.input.empty()) throw UsageError("give the augmented examples with --input (dataset.input)");
  if (options.tokenizer_path.empty()) throw UsageError("give the tokenizer with --tokenizer (tokenizer.path)");
  return options;
}

int patterns_stage(const PatternsStageOptions& options, Runtime& runtime, const StrategistFactory& make_strategist) {
  Communicator& world = runtime.world();
  Stopwatch watch;
  Handbook handbook;
  std::uint64_t bad_lines = 0;
  switch (options.source) {
    case HandbookSource::kImport:
      handbook = import_behavior_handbook(options.import_path);
      log_info("imported {} behaviors from {}", handbook.patterns.size(), options.import_path);
      if (handbook.patterns.empty()) {
        throw InputError(fmt::format("{}: the handbook holds no behavior", options.import_path));
      }
      break;
    case HandbookSource::kReflect: {
      std::optional<std::uint64_t> reflected = reflect_handbook(options, world, make_strategist, handbook);
      if (!reflected) return kExitTimeLimit;
      bad_lines = *reflected;
      break;
    }
    case HandbookSource::kMine:
      bad_lines = mine_handbook(options, world, make_strategist, handbook).bad_lines;
      break;
  }
  if (!options.holdout.empty()) {
    std::vector<std::string> holdout_files = expand_corpus_files(options.holdout);
    Coverage coverage = holdout_coverage(handbook.patterns, holdout_files, options.read, world);
    log_info("holdout coverage: {} of {} records ({:.2f}%) contain at least one of the {} patterns", coverage.covered,
              coverage.records, 100.0 * coverage.share(), handbook.patterns.size());
    handbook.stats["holdout"] = {{"files", holdout_files},
                                 {"records", coverage.records},
                                 {"covered", coverage.covered},
                                 {"coverage", coverage.share()}};
  }
  if (runtime.rank() == 0) write_handbook(handbook, options.handbook);
  world.barrier();
  log_info("handbook: {} ({} patterns) in {:.2f} s", options.handbook, handbook.patterns.size(), watch.seconds());
  return strict_status(options.strict, bad_lines);
}

int augment_stage(const AugmentStageOptions& stage, Runtime& runtime) {
  Stopwatch watch;
  Handbook handbook = read_handbook(stage.handbook);
  const AugmentOptions& options = stage.augment;
  std::vector<std::string> files = expand_corpus_files(stage.corpus_files);
  AugmentStats stats = augment_corpus(files, handbook, options, stage.out, runtime.world());
  log_info("corpus: {}", describe_stats(stats.corpus));
  log_info("augment ({} mode, top {} of {} patterns): {} examples to {}{} in {:.2f} s",
            augment_mode_name(options.mode), options.top_k, handbook.patterns.size(), stats.examples, stage.out,
            options.mode == AugmentMode::kRetrieval
                ? fmt::format(" ({} with retrieved patterns, the rest with the global top)", stats.retrieved)
                : std::string(),
            watch.seconds());
  return strict_status(stage.strict, stats.corpus.bad_lines);
}

int prepare_stage(const PrepareOptions& options, Runtime& runtime) {
  Stopwatch watch;
  auto tokenizer = load_tokenizer(options.tokenizer_path);
  PrepareReport report = prepare_dataset(options, *tokenizer, runtime.world());
  const DatasetMetadata& metadata = report.metadata;
  log_info("prepared {}: {} record(s) ({} bad), {} document(s) ({} longer than {} tokens dropped, {} truncated), {} "
            "tokens in {} sequence(s), packing efficiency {:.1f}%, {:.2f} s on {} rank(s); tokenizer {}, template {}",
            options.output, report.records, report.bad_records, metadata.documents, metadata.dropped_documents,
            options.sequence_length, report.truncated_documents, metadata.real_tokens, report.sequences,
            100.0 * metadata.packing_efficiency,
            watch.seconds(), runtime.world_size(), options.tokenizer_path, options.template_name);
  if (options.validation_share > 0) {
    log_info("validation set (dataset.validation_share {}): {} document(s), {} tokens in {} sequence(s), held out of "
             "training",
             options.validation_share, report.validation_documents, report.validation_tokens,
             report.validation_sequences);
  }
  return kExitOk;
}

}  // namespace metareuse
