// run/resolve.h: the resolve phase. The config as given is never written;
// derived keys (tokenizer, vocabulary, dataset, resume point) reach the
// training's config only; each stage's fingerprint keys are the keys its
// options were read from, and no other stage's; rules fail before any stage.
#include "torch_catch.h"  // libtorch (trainer.h), then Catch2

#include <algorithm>
#include <string>

#include "metareuse/core/config.h"
#include "metareuse/core/error.h"
#include "metareuse/run/resolve.h"
#include "test_support.h"

namespace metareuse {
namespace {

Config run_config(const std::string& name) {
  Config config;
  config.set("run.out_dir", test::temp_dir(name).string());
  return config;
}

bool has(const nlohmann::json& keys, const std::string& key) { return keys.contains(key); }

}  // namespace

TEST_CASE("a config copy records the keys read through it, and only those", "[config][unit]") {
  Config config;
  CHECK(config.keys_read().empty());  // not recording
  config.get_int("train.max_steps");
  CHECK(config.keys_read().empty());
  Config reading = config;
  reading.record_reads();
  reading.get_int("train.max_steps");
  reading.get_string("model.preset");
  reading.get_int("train.max_steps");
  CHECK(reading.keys_read() == std::vector<std::string>{"model.preset", "train.max_steps"});
  CHECK(config.keys_read().empty());  // the original records nothing
}

TEST_CASE("resolving a run derives the training's keys without writing the config as given", "[run][unit]") {
  Config given = run_config("resolve-run");
  given.set("tokenizer.train_vocab_size", 600);
  const std::string before = given.dump();
  const ResolvedRun run = resolve_run(given);
  CHECK(given.dump() == before);
  const RunLayout& layout = run.layout;

  // The run trains its own tokenizer, and a from-scratch model takes its size.
  REQUIRE(run.tokenizer_training);
  CHECK(run.tokenizer_training->out == layout.tokenizer());
  CHECK(run.tokenizer_training->vocab_size == 600);
  CHECK(run.config.get_string("tokenizer.path") == layout.tokenizer());
  CHECK(run.prepare.tokenizer_path == layout.tokenizer());
  CHECK(run.prepare.output == layout.dataset());
  CHECK(run.prepare.config_json == run.config.dump());  // the dataset records the data stages' config
  // The training's config alone carries what training derived.
  CHECK(run.config.get_int("model.vocab_size") == 0);
  CHECK(run.train.config.get_int("model.vocab_size") == 600);
  CHECK(run.train.config.get_string("dataset.output") == layout.dataset());
  CHECK(run.train.config.get_string("train.resume") == "auto");
  CHECK(run.train.options.model.vocab_size == 600);
  CHECK(run.train.options.dataset_path == layout.dataset());
  CHECK(run.train.options.metrics_path == layout.metrics());
  CHECK(run.train.options.checkpoints.dir == layout.checkpoints());
  CHECK(run.train.options.resolved_config.tree() == run.train.config.tree());
  // Eval's and export's paths come in their options.
  CHECK(run.eval.eval_file == layout.eval_file());
  CHECK(run.eval.answers == layout.answers());
  CHECK(run.eval.handbook == layout.handbook());
  CHECK(run.eval.handbook_if_exists);
  CHECK(run.eval.run_checkpoints == layout.checkpoints());
  CHECK(run.export_options.checkpoint == layout.checkpoints());
  CHECK(run.export_options.out == layout.export_folder());
  CHECK(run.export_options.dtype == ExportDtype::kFloat32);  // the one default, export.dtype
}

TEST_CASE("a stage's fingerprint keys are the keys its options were read from", "[run][unit]") {
  const ResolvedRun run = resolve_run(run_config("resolve-keys"));
  const auto& keys = run.stage_keys;
  CHECK(has(keys.at("patterns"), "patterns.min_support"));
  CHECK(has(keys.at("patterns"), "corpus.files"));
  CHECK_FALSE(has(keys.at("patterns"), "train.lr"));
  CHECK(has(keys.at("augment"), "augment.top_k"));
  CHECK_FALSE(has(keys.at("augment"), "patterns.min_support"));
  CHECK(has(keys.at("prepare"), "dataset.sequence_length"));
  CHECK(has(keys.at("prepare"), "tokenizer.train_vocab_size"));  // the tokenizer the run trains
  CHECK(has(keys.at("train"), "train.lr"));
  CHECK(keys.at("train").at("model.vocab_size") == 8000);  // the derived value, not the given 0
  CHECK(keys.at("train").at("train.resume") == "auto");
  CHECK_FALSE(has(keys.at("train"), "eval.limit"));
  CHECK(has(keys.at("eval"), "eval.limit"));
  CHECK(has(keys.at("eval"), "experiment.baseline"));
  CHECK_FALSE(has(keys.at("eval"), "train.lr"));
  CHECK(has(keys.at("export"), "export.dtype"));
  CHECK(keys.at("checkpoint").size() == 1);  // checkpoint.dir
  CHECK(keys.count("baseline-train") == 0);
}

TEST_CASE("experiment.baseline resolves the baseline's data, training and the three eval entries", "[run][unit]") {
  Config given = run_config("resolve-baseline");
  given.set("experiment.baseline", true);
  const ResolvedRun run = resolve_run(given);
  const RunLayout baseline = run.layout.baseline();
  REQUIRE(run.baseline);
  CHECK(run.baseline_augment.augment.mode == AugmentMode::kNone);
  CHECK(run.baseline_augment.out == run.layout.baseline_examples());
  CHECK(run.baseline_prepare.output == baseline.dataset());
  CHECK(run.baseline_train.options.dataset_path == baseline.dataset());
  CHECK(run.baseline_train.options.checkpoints.dir == baseline.checkpoints());
  CHECK(run.baseline_train.options.metrics_path == baseline.metrics());
  CHECK(run.baseline_train.options.model.vocab_size == run.train.options.model.vocab_size);
  std::vector<std::string> roles;
  for (const EvalModel& model : run.eval.models) roles.push_back(model.role);
  CHECK(roles == std::vector<std::string>{"baseline", "reuse", "control"});
  CHECK(run.eval.models.front().path == baseline.checkpoints());
  CHECK(has(run.stage_keys.at("baseline-data"), "augment.mode"));
  CHECK(run.stage_keys.at("baseline-data").at("augment.mode") == "none");
  CHECK(has(run.stage_keys.at("baseline-train"), "train.lr"));
}

TEST_CASE("a rule is checked when the run is resolved, before any stage", "[run][unit]") {
  Config given = run_config("resolve-rule");
  given.set("patterns.min_words", 8);
  given.set("patterns.max_phrase_words", 4);
  CHECK_THROWS_AS(resolve_run(given), ConfigError);
  CHECK_THROWS_WITH(resolve_run(given), Catch::Matchers::Contains("patterns.max_phrase_words"));
}

TEST_CASE("train.eval_every without a validation share, or patience without evaluations, fails at resolve",
          "[run][unit][validation]") {
  Config given = run_config("resolve-validation");
  given.set("train.eval_every", 10);
  CHECK_THROWS_AS(resolve_run(given), ConfigError);
  CHECK_THROWS_WITH(resolve_run(given), Catch::Matchers::Contains("train.eval_every 10") &&
                                            Catch::Matchers::Contains("dataset.validation_share 0"));
  given.set("dataset.validation_share", 0.05);
  const ResolvedRun run = resolve_run(given);
  CHECK(run.prepare.validation_share == 0.05);
  CHECK(run.train.options.eval_every == 10);
  CHECK(has(run.stage_keys.at("prepare"), "dataset.validation_share"));
  CHECK(has(run.stage_keys.at("train"), "train.eval_every"));
  given.set("train.eval_every", 0);
  given.set("train.early_stop_patience", 3);
  CHECK_THROWS_WITH(resolve_run(given), Catch::Matchers::Contains("train.early_stop_patience 3") &&
                                            Catch::Matchers::Contains("train.eval_every"));
}

}  // namespace metareuse
