// <run>/metrics.jsonl: one MetricsLine per optimizer step and, with
// train.eval_every, one ValidationLine per evaluation (told apart by its
// "val_loss" key), written by the trainer (rank 0, flushed each line) and read
// by report.html. Torch-free.
#pragma once

#include <nlohmann/json.hpp>  // the line format

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "metareuse/distributed/communicator.h"  // CollectiveTraffic: the step's bytes on the wire

namespace metareuse {

struct MetricsLine {
  std::int64_t step = 0;   // optimizer steps attempted so far, this one included
  std::int64_t epoch = 0;
  double loss = NAN;
  double lr = 0;
  std::optional<double> grad_norm;  // none (null) when the step was skipped
  double loss_scale = NAN;
  bool skipped = false;             // an fp16 overflow: no update
  double tokens_per_s = 0;          // raw: every slot of the global batch (B * T), padding included
  // Useful: only non-pad tokens (every document token, which carries loss or
  // context); absent (0) in lines written before it existed.
  double useful_tokens_per_s = 0;
  double padding_fraction = 0;      // of the B * T slots, the share that was padding
  std::optional<double> mfu;        // none (null): no known peak for this device
  double seconds = 0;               // of this step
  // Rank 0's collective traffic in this step (the vote before it, every
  // micro-step's gathers and reduce-scatters, the optimizer's reductions),
  // counted as communicator.h's CollectiveBytes; all 0 at one rank and in
  // lines written before it existed. Every rank's is the same in training.
  // Its wait_seconds is written as "comm_wait_s": rank 0's time blocked on
  // collectives in this step (0 in lines written before it existed).
  CollectiveTraffic traffic;

  // Keys in nlohmann::json's (sorted) order.
  nlohmann::json to_json() const;
  // nullopt for a line that is not a step's line (no numeric "step", or a
  // ValidationLine); a missing loss or loss scale reads as NaN.
  static std::optional<MetricsLine> from_json(const nlohmann::json& j);
};

// The validation loss after optimizer step `step`: the mean token loss over
// every validation sequence (all ranks' shares summed).
struct ValidationLine {
  std::int64_t step = 0;
  std::int64_t epoch = 0;
  double val_loss = NAN;
  std::int64_t val_tokens = 0;       // target tokens the mean is over
  double best_val_loss = NAN;        // the best so far, this one included (early stopping's reference)
  std::int64_t evaluations_without_improvement = 0;  // early stopping's count after this evaluation
  double seconds = 0;                // of the evaluation

  nlohmann::json to_json() const;
  // nullopt for a line without a numeric "step" and "val_loss".
  static std::optional<ValidationLine> from_json(const nlohmann::json& j);
};

struct MetricsFile {
  std::vector<MetricsLine> lines;
  std::vector<ValidationLine> validation;
  std::int64_t bad = 0;  // lines that are not JSON
  bool found = false;
};
MetricsFile read_metrics(const std::string& path);

}  // namespace metareuse
