// metareuse <subcommand>. Parses the command line, resolves and validates the
// config before anything is allocated, starts the rank runtime, and turns any
// exception on any rank into one message and the end of the whole job.
//
// This file builds two binaries. Loading libtorch costs about 1.2 s and
// 160 MB per process, which dominated the torch-free commands (patterns,
// augment, tokenize, prepare). So `metareuse` (METAREUSE_FRONT) links no
// torch and runs those itself; for a command that needs torch it execs
// `metareuse-torch` from its own folder with argv unchanged. The exec comes
// before MPI starts: the process keeps its pid and environment, so under
// mpirun the torch binary initialises MPI as if it had been launched directly.
#include <CLI/CLI.hpp>     // command-line parsing
#include <fmt/format.h>    // messages

#include <unistd.h>        // execv

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "commands.h"      // the subcommand table
#include "flags.h"         // which flag sets which config key
#include "readable_file.h" // the check of --config
#include "metareuse/core/config.h"
#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/log.h"
#include "metareuse/core/text.h"
#include "metareuse/distributed/agreement.h"
#include "metareuse/distributed/runtime.h"
#ifndef METAREUSE_FRONT
#include "metareuse/model/threads.h"  // torch's threads per rank
#endif

namespace {

using metareuse::cli_detail::CommandSpec;


std::string command_names() {
  std::vector<std::string> names;
  for (const auto& spec : metareuse::cli_detail::command_table()) names.push_back(spec.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

int unknown_command(const std::string& name) {
  std::string closest;
  std::size_t best = std::string::npos;
  for (const auto& spec : metareuse::cli_detail::command_table()) {
    std::size_t distance = metareuse::edit_distance(name, spec.name);
    if (distance < best) {
      best = distance;
      closest = spec.name;
    }
  }
  std::fprintf(stderr, "metareuse: unknown subcommand '%s'; did you mean '%s'?\nvalid subcommands: %s\n",
               name.c_str(), closest.c_str(), command_names().c_str());
  return metareuse::kExitUsage;
}

#ifdef METAREUSE_FRONT
// Replaces this process with metareuse-torch, installed beside this binary;
// returns only on failure.
int exec_torch_binary(char** argv) {
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  std::filesystem::path torch_binary = self.parent_path() / "metareuse-torch";
  if (!error) execv(torch_binary.c_str(), argv);
  std::fprintf(stderr, "metareuse %s: this command runs in %s, which could not be started: %s\n", argv[1],
               torch_binary.c_str(), error ? error.message().c_str() : std::strerror(errno));
  return metareuse::kExitFailure;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  using namespace metareuse;
  // A file-size limit fails a write with EFBIG, reported naming the file,
  // instead of killing the process with SIGXFSZ (before the exec: it is inherited).
  ignore_file_size_signal();

  // An unknown subcommand is caught before CLI11, to name the valid ones.
  if (argc > 1 && argv[1][0] != '-') {
    const auto& table = cli_detail::command_table();
    bool known = std::any_of(table.begin(), table.end(), [&](const CommandSpec& s) { return s.name == argv[1]; });
    if (!known) return unknown_command(argv[1]);
#ifdef METAREUSE_FRONT
    auto spec = std::find_if(table.begin(), table.end(), [&](const CommandSpec& s) { return s.name == argv[1]; });
    if (spec->needs_torch) return exec_torch_binary(argv);
#endif
  }

  CLI::App app{"metareuse: mine reusable reasoning patterns, augment, and fine-tune Llama 3.2 with sharded training"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("metareuse {}", METAREUSE_VERSION), "Print the version and exit");
  // CLI11 reports extras from the top-level app, so name the subcommand from argv.
  std::string typed_command = (argc > 1 && argv[1][0] != '-') ? std::string(argv[1]) + " " : "";
  app.failure_message([typed_command](const CLI::App*, const CLI::Error& error) {
    return fmt::format("metareuse: {}\nrun 'metareuse {}--help' for the valid options\n", error.what(),
                       typed_command);
  });
  app.name("metareuse");

  std::string config_file;
  std::vector<std::string> overrides;
  std::vector<std::string> flag_overrides;
  bool print_config = false;
  CLI::App* chosen = nullptr;
  const CommandSpec* chosen_spec = nullptr;

  for (const auto& spec : cli_detail::command_table()) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.summary);
    sub->add_option("--config", config_file, "JSON config file (defaults apply to every key not in it)")
        ->check(cli_detail::readable_file());
    sub->add_option("--set", overrides, "Override a config key: --set section.key=value (repeatable)");
    sub->add_flag("--print-config", print_config, "Print the resolved config with each key's description, then exit");
    if (spec.add_options) spec.add_options(*sub, flag_overrides);
    sub->callback([&, sub, spec_ptr = &spec]() {
      chosen = sub;
      chosen_spec = spec_ptr;
    });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (chosen_spec == nullptr) return kExitUsage;

  // The whole config is resolved and validated before any rank starts work.
  // A config that cannot be built is reported after the runtime starts, like
  // any other error, so that under mpirun it is printed once, not by every rank.
  Config config;
  std::string config_error;
  int config_status = kExitOk;
  try {
    config = Config::load(config_file, {});
  } catch (const Error& e) {
    config_error = e.what();
    config_status = kExitFailure;  // the file's contents
  }
  if (config_error.empty()) {
    try {
      // Flags first, then --set; an error in a flag's value names the flag.
      for (const auto& assignment : flag_overrides) {
        try {
          config.apply_override(assignment);
        } catch (const ConfigError& e) {
          throw ConfigError(cli_detail::name_the_flag(assignment, e.what()));
        }
      }
      for (const auto& assignment : overrides) config.apply_override(assignment);
    } catch (const Error& e) {
      config_error = e.what();
      config_status = kExitUsage;  // a flag or --set: the command line
    }
  }
  if (!config_error.empty()) config = Config();  // the runtime and the log start from the defaults

#ifdef METAREUSE_FRONT
  // Some configs of a torch-free command need the model (patterns --mode reflect).
  if (config_error.empty() && chosen_spec->needs_torch_for && chosen_spec->needs_torch_for(config)) {
    return exec_torch_binary(argv);
  }
#endif

  std::unique_ptr<Runtime> runtime;
  try {
    runtime = std::make_unique<Runtime>(config.get_string("dist.backend"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metareuse: could not start the rank runtime: %s\n", e.what());
    return kExitFailure;
  }
  log_init(runtime->rank(), runtime->world_size(), parse_log_level(config.get_string("log.level")),
            config.get_bool("log.all_ranks"));
  if (runtime->world_size() > 1) runtime->set_collective_timeout(config.get_number("dist.collective_timeout"));

  // Printed once, by the lowest rank that failed (an error every rank hits is
  // rank 0's); then the whole job ends so that no other rank waits forever in
  // a collective. The grace is how long a failing rank listens for a lower one
  // that failed too: ranks that hit the same error do so within it.
  constexpr double kFailureGraceSeconds = 2.0;
  auto fail = [&](const std::string& message, int status) {
    if (runtime->first_to_fail(kFailureGraceSeconds)) log_error("{}: {}", chosen_spec->name, message);
    if (runtime->world_size() > 1) runtime->abort(status);
    return status;
  };
  if (!config_error.empty()) return fail(config_error, config_status);

  if (print_config) {
    if (runtime->rank() == 0) std::cout << config.describe();
    return kExitOk;
  }
#ifndef METAREUSE_FRONT
  set_intra_op_threads(static_cast<int>(config.get_int("run.threads")), runtime->layout().local_size);
#endif

  int status = kExitOk;
  try {
    // Before any other collective: ranks with different configs or binaries stop here, named.
    require_same_config(config.dump(), runtime->world());
    cli_detail::CommandContext context{config, *runtime};
    status = chosen_spec->run(context);
  } catch (const std::exception& e) {
    status = fail(e.what(), dynamic_cast<const UsageError*>(&e) ? kExitUsage : kExitFailure);
  }
  std::fflush(stdout);
  return status;
}
