// metareuse run: the whole pipeline in one run folder (run/pipeline.h says
// what each stage does and when one is skipped).
#include "commands.h"
#include "metareuse/run/pipeline.h"

namespace metareuse::cli_detail {

namespace {
PipelineOptions g_run;
}  // namespace

void run_options(CLI::App& app, std::vector<std::string>&) {
  auto* from = app.add_option("--from", g_run.from, "Run from this stage on, even if its outputs are up to date");
  auto* only = app.add_option("--only", g_run.only, "Run only this stage");
  from->excludes(only);  // together, one would win without a word
}

int run_run(CommandContext& context) { return run_pipeline(context.config, context.runtime, g_run); }

}  // namespace metareuse::cli_detail
