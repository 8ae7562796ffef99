// metareuse run: the pipeline, stage by stage, in one run folder. Stages that
// are not built yet are listed as such; the run then exits with kExitNotBuilt
// so no one mistakes a partial pipeline for a finished one.
#include <fmt/format.h>

#include <filesystem>
#include <vector>

#include "commands.h"
#include "metareuse/core/error.h"
#include "metareuse/dist/communicator.h"
#include "metareuse/core/log.h"
#include "metareuse/core/timing.h"

namespace metareuse::cli {
namespace {

struct Stage {
  const char* name;
  int issue;  // the issue that builds it
  std::function<void(CommandContext&, const std::string& folder)> run;  // empty: not built
};

// Issue #3: the handbook and the augmented examples in the run folder.
void patterns_stage(CommandContext& context, const std::string& folder) {
  if (patterns_execute(context, folder + "/handbook.json") != kExitOk) {
    throw InputError("patterns: corpus.strict is set and the corpus has bad lines");
  }
}
void augment_stage(CommandContext& context, const std::string& folder) {
  if (augment_execute(context, folder + "/handbook.json", folder + "/augmented.jsonl") != kExitOk) {
    throw InputError("augment: corpus.strict is set and the corpus has bad lines");
  }
}

std::vector<Stage> pipeline_stages() {
  return {
      {"patterns", 3, patterns_stage}, {"augment", 3, augment_stage}, {"prepare", 4, nullptr}, {"train", 6, nullptr},
      {"checkpoint", 7, nullptr}, {"eval", 8, nullptr},  {"export", 7, nullptr},
  };
}

}  // namespace

void run_options(CLI::App&, std::vector<std::string>&) {}

int run_run(CommandContext& context) {
  const std::string folder = run_folder(context.config);
  if (context.runtime.rank() == 0) {
    std::filesystem::create_directories(folder);
    context.config.write(folder + "/config.resolved.json");
  }
  context.runtime.world().barrier();
  log::info("run folder {} (resolved config in config.resolved.json), {} rank(s)", folder,
            context.runtime.world_size());

  std::vector<std::string> not_built;
  for (const auto& stage : pipeline_stages()) {
    if (!stage.run) {
      log::info("stage {:<10} not built yet (issue #{})", stage.name, stage.issue);
      not_built.push_back(stage.name);
      continue;
    }
    Stopwatch watch;
    log::info("stage {:<10} running", stage.name);
    stage.run(context, folder);
    log::info("stage {:<10} done in {:.2f} s", stage.name, watch.seconds());
  }
  if (!not_built.empty()) {
    log::warn("pipeline incomplete: {} stage(s) not built yet: {}", not_built.size(), fmt::join(not_built, ", "));
    return kExitNotBuilt;
  }
  return kExitOk;
}

}  // namespace metareuse::cli
