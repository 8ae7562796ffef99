#include "commands.h"

// A command that needs libtorch names its functions through TORCH_COMMAND.
// The front binary (built with METAREUSE_FRONT) links no torch: there the
// entry keeps its name and summary for --help, and main.cpp execs
// metareuse-torch for it.
#ifdef METAREUSE_FRONT
#define TORCH_COMMAND(options, run) nullptr, nullptr, true
#else
#define TORCH_COMMAND(options, run) options, run, true
#include "metareuse/patterns/strategist.h"  // the model strategist of reflect mode
#endif

namespace metareuse::cli_detail {
namespace {
// patterns runs in the front binary, except with a model (patterns_needs_torch:
// reflect mode, or phrasing with patterns.model), which the torch binary runs
// with the model strategist.
int patterns_command(CommandContext& context) {
#ifdef METAREUSE_FRONT
  return patterns_run(context);
#else
  return patterns_run_with(context, make_model_strategist);
#endif
}
}  // namespace

const std::vector<CommandSpec>& command_table() {
  // In pipeline order.
  static const std::vector<CommandSpec> table = {
      {"world", "Write the reasoning world: training corpus and held-out test problems", world_options, world_run},
      {"patterns", "Mine recurring reasoning patterns (or a model's behaviors) from a corpus into a handbook",
       patterns_options, patterns_command, false, patterns_needs_torch},
      {"augment", "Add the handbook's patterns to each training example", augment_options, augment_run},
      {"tokenize", "Tokenize text or JSON Lines with a Llama 3 or sentencepiece tokenizer", tokenize_options, tokenize_run},
      {"distill", "A teacher answers the corpus prompted with behaviors; its right answers become examples without them",
       TORCH_COMMAND(distill_options, distill_run)},
      {"prepare", "Build the tokenized, packed HDF5 training set", prepare_options, prepare_run},
      {"train", "Fine-tune with FSDP-style sharding across ranks", TORCH_COMMAND(train_options, train_run)},
      {"forward", "Run the model on token ids and write logits and loss", TORCH_COMMAND(forward_options, forward_run)},
      {"generate", "Generate text with a KV cache, greedy or seeded sampling", TORCH_COMMAND(generate_options, generate_run)},
      {"eval", "Measure accuracy and reasoning length on held-out questions", TORCH_COMMAND(eval_options, eval_run)},
      {"report", "Write a run's report.html: curves, patterns, eval table, config", TORCH_COMMAND(report_options, report_run)},
      {"export", "Write a checkpoint as Hugging Face safetensors + config.json", TORCH_COMMAND(export_options, export_run)},
      {"plan", "Print the per-rank memory plan for a config and rank count", TORCH_COMMAND(plan_options, plan_run)},
      {"run", "Run the whole pipeline, skipping stages that are up to date", TORCH_COMMAND(run_options, run_run)},
      {"info", "Print the build (libtorch, CUDA, NCCL, MPI) and the rank layout", TORCH_COMMAND(info_options, info_run)},
  };
  return table;
}

}  // namespace metareuse::cli_detail
