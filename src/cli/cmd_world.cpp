// metareuse world: writes the reasoning world's training corpus and held-out
// test problems into world.out_dir (write_world). Torch-free
// work; rank 0 writes.
#include <fmt/format.h>

#include "commands.h"
#include "flags.h"
#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/distributed/communicator.h"
#include "metareuse/world/world.h"

namespace metareuse::cli_detail {

void world_options(CLI::App& app, std::vector<std::string>& overrides) {
  add_value_flag(app, "--out", "world.out_dir", "Output folder (world.out_dir)", overrides);
  add_value_flag(app, "--seed", "world.seed", "Seed (world.seed)", overrides);
  add_value_flag(app, "--train", "world.train_records", "Training problems (world.train_records)", overrides);
  add_value_flag(app, "--test", "world.test_records", "Test problems (world.test_records)", overrides);
  add_value_flag(app, "--short-share", "world.short_share", "Share written the short way (world.short_share)",
                 overrides);
}

int world_run(CommandContext& context) {
  const Config& config = context.config;
  WorldOptions options;
  options.seed = static_cast<std::uint64_t>(config.get_int("world.seed"));
  options.train_records = static_cast<std::size_t>(config.get_int("world.train_records"));
  options.test_records = static_cast<std::size_t>(config.get_int("world.test_records"));
  options.short_share = config.get_number("world.short_share");
  options.heldout_pair_share = config.get_number("world.heldout_pair_share");
  const std::string out_dir = config.get_string("world.out_dir");
  World generated = generate_world(options);
  if (context.runtime.rank() == 0) {
    write_world(generated, out_dir);
    std::size_t shorts = 0;
    for (const auto& problem : generated.train) shorts += problem.style == Style::kShort ? 1 : 0;
    log_info("world (seed {}): {} training problems ({} short, {} long) to {}/{}, {} test problems to {}/{}",
              options.seed, generated.train.size(), shorts, generated.train.size() - shorts, out_dir,
              kTrainFile, generated.test.size(), out_dir, kTestFile);
  }
  context.runtime.world().barrier();
  return kExitOk;
}

}  // namespace metareuse::cli_detail
