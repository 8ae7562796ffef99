#include "metareuse/core/config.h"
#include "metareuse/core/looked_for.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "metareuse/core/error.h"
#include "metareuse/core/file_io.h"
#include "metareuse/core/text.h"

namespace metareuse {
namespace {

using json = nlohmann::json;

ConfigKey key_int(std::string path, std::int64_t def, std::string description,
                  std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt) {
  return {std::move(path), ConfigType::kInt, def, std::move(description), min, max, {}};
}
ConfigKey key_number(std::string path, double def, std::string description,
                     std::optional<double> min = std::nullopt, std::optional<double> max = std::nullopt) {
  return {std::move(path), ConfigType::kNumber, def, std::move(description), min, max, {}};
}
ConfigKey key_bool(std::string path, bool def, std::string description) {
  return {std::move(path), ConfigType::kBool, def, std::move(description), {}, {}, {}};
}
ConfigKey key_string(std::string path, std::string def, std::string description,
                     std::vector<std::string> choices = {}) {
  return {std::move(path), ConfigType::kString, def, std::move(description), {}, {}, std::move(choices)};
}
ConfigKey key_string_list(std::string path, std::vector<std::string> def, std::string description) {
  return {std::move(path), ConfigType::kStringList, def, std::move(description), {}, {}, {}};
}
ConfigKey key_string_map(std::string path, json def, std::string description) {
  return {std::move(path), ConfigType::kStringMap, std::move(def), std::move(description), {}, {}, {}};
}

// The one schema. Each stage's keys sit in its own block, in pipeline order.
std::vector<ConfigKey> build_schema() {
  return {
      // run: where outputs go
      key_string("run.name", "demo", "Name of the run; the default output folder is runs/<name>."),
      key_string("run.out_dir", "", "Output folder of the run; empty means runs/<run.name>."),
      key_int("run.seed", 1234, "Seed for every random choice in the run.", 0, 4294967295.0),
      key_int("run.threads", 0,
              "torch intra-op threads per rank; 0: the node's cores shared by its ranks (at most the cores the rank "
              "may run on). The choice is logged.",
              0, 4096),

      // log
      key_string("log.level", "info", "Lowest level printed.", {"debug", "info", "warn", "error", "off"}),
      key_bool("log.all_ranks", false, "Print info lines from every rank, not only rank 0."),

      // dist
      key_string("dist.backend", "auto",
                 "Communicator: auto (MPI when started by mpirun/srun, else one process), mpi, or self.",
                 {"auto", "mpi", "self"}),
      key_number("dist.collective_timeout", 600.0,
                 "Seconds a collective may take before the rank logs it and ends the job (a hang watchdog); 0: off.",
                 0.0, 1e9),

      // world: the seeded reasoning-world generator (`metareuse world`)
      key_int("world.seed", 7, "Seed of the reasoning world.", 0, 4294967295.0),
      key_int("world.train_records", 4000, "Training problems written.", 0, 1LL << 32),
      key_int("world.test_records", 100, "Held-out test problems written.", 0, 1LL << 32),
      key_number("world.short_share", 0.25, "Share of training problems written the short way (the rest the long way).",
                 0.0, 1.0),
      key_number("world.heldout_pair_share", 0.2, "Share of each family's operand pairs kept for the test problems.",
                 0.01, 0.99),
      key_string("world.out_dir", "datasets/world", "Folder for train.jsonl and test.jsonl."),

      // corpus
      key_string_list("corpus.files", {"datasets/sample_reasoning.jsonl"},
                      "JSON Lines corpus files or globs; each rank reads its byte range of each."),
      key_string_map("corpus.fields",
                     json{{"question", "question"}, {"reasoning", "reasoning"}, {"solution", "solution"}},
                     "Field names of the records' roles: question, reasoning and solution (the seed format), or "
                     "question and answer (default \"answer\": reasoning then its final answer; e.g. "
                     "{\"question\": \"input\", \"answer\": \"output\"}); eval and distill read them too. "
                     "messages, problem/solution and prompt/completion records are recognised by their own names."),
      key_bool("corpus.strict", false, "Exit non-zero when any record is bad (bad records are always reported)."),
      key_int("corpus.max_depth", 64, "JSON nesting deeper than this makes a line bad.", 1, 1024),

      // patterns: mining the handbook
      key_string("patterns.mode", "normalized",
                 "exact: the seed's sentences, identical to reference/seed_patterns.py; normalized: phrases and "
                 "sentences in the normalised form; reflect: patterns.model writes behaviors from each record.",
                 {"exact", "normalized", "reflect"}),
      key_int("patterns.min_support", 2, "Fewest records a pattern must occur in.", 1, 4294967295.0),
      key_int("patterns.top_k", 32, "Patterns kept in the handbook; 0 keeps every one with enough support.", 0,
              1e9),
      key_int("patterns.min_words", 4, "normalized mode: fewest words in a pattern.", 1, 64),
      key_int("patterns.max_phrase_words", 6, "normalized mode: most words in a phrase candidate.", 1, 64),
      key_int("patterns.max_candidates", 0,
              "Per-rank cap on distinct local candidates (0: none); over it the rarest are dropped and the run says so.",
              0, 4e9),
      key_number("patterns.containment_ratio", 1.0,
                 "normalized mode: drop a pattern inside a longer one found in at least this share of its records "
                 "(1: the longer is in every record the shorter is in).", 0, 1),
      key_string("patterns.selection", "coverage",
                 "normalized mode: pick the top_k greedily by records covered (a second pass), or by support.",
                 {"coverage", "support"}),
      key_int("patterns.pool_size", 4096, "normalized mode: most frequent candidates the choice starts from.", 1, 1e7),
      key_int("patterns.group_memory_mb", 48,
              "normalized mode: MB per rank for the normalised reasoning texts that group equal records (each group "
              "is mined once); records beyond it are mined one by one. 0: no groups.",
              0, 1e6),
      key_int("patterns.instruction_sample", 4096,
              "normalized mode: most distinct sentences counted per pattern when its instruction (the most frequent "
              "full sentence containing it) is chosen; past it, a hash sample that is the same at any rank count.",
              1, 1e9),
      key_string("patterns.model", "",
                 "The strategist model, a Hugging Face folder or a metareuse checkpoint (its tokenizer and "
                 "template: tokenizer.*, else the model's own, as eval's). reflect mode: it writes behaviors from each "
                 "record; exact and normalized mode: it phrases each mined pattern as a behavior (name: instruction)."),
      key_string("patterns.reflect_prompt", "",
                 "reflect mode: prompt template file with {reasoning} (and optionally {question}, {solution}); empty: "
                 "the shipped configs/reflect_prompt.txt, built into the binary."),
      key_string("patterns.phrase_prompt", "",
                 "With patterns.model in exact or normalized mode: prompt template file with {pattern} (and optionally "
                 "{sentences}); empty: the shipped configs/phrase_prompt.txt, built into the binary."),
      key_int("patterns.max_new_tokens", 128, "With patterns.model: most tokens the model writes per reply.", 1,
              1 << 20),
      key_int("patterns.batch_size", 8, "With patterns.model: prompts the model answers together.", 1, 4096),
      key_int("patterns.max_records", 0, "reflect mode: only the first N good records of the corpus (0: all).", 0,
              1e12),
      key_number("patterns.temperature", 0.0,
                 "With patterns.model: 0 decodes greedily (the handbook is the same at any rank count); > 0 "
                 "samples, seeded by run.seed and the record (or the pattern).",
                 0.0, 100.0),
      key_number("patterns.time_limit", 0.0, "reflect mode: wall-clock budget in seconds; patterns stops after the "
                 "round that passes it and exits 3, keeping the model's replies in <handbook>.replies.jsonl for the "
                 "next run. 0: none.", 0.0, 1e9),
      key_string("patterns.out", "", "Handbook file; empty means <run folder>/handbook.json."),
      key_string_list("patterns.holdout", {}, "JSON Lines files whose coverage by the patterns is reported."),
      key_string("patterns.import", "",
                 "A behavior handbook {\"behavior_name\": \"instruction\"} used in place of mining; empty: mine."),

      // augment: training examples with patterns in the prompt
      key_string("augment.mode", "global",
                 "global: the top patterns on every example; retrieval: BM25 picks each question's patterns; used: "
                 "the patterns each example's reasoning uses (eval retrieves them from the question, eval.contexts); "
                 "none: no patterns.",
                 {"global", "retrieval", "used", "none"}),
      key_int("augment.top_k", 8, "Patterns given to each example.", 0, 1024),
      key_string("augment.handbook", "", "Handbook to read; empty means <run folder>/handbook.json."),
      key_string("augment.out", "", "Output JSON Lines; empty means <run folder>/augmented.jsonl."),
      key_number("augment.bm25_k1", 1.2, "BM25 term-frequency saturation.", 0, 100),
      key_number("augment.bm25_b", 0.75, "BM25 length normalisation.", 0, 1),

      // tokenizer: how examples become token ids
      key_string("tokenizer.path", "",
                 "Tokenizer file: Hugging Face tokenizer.json, Meta tiktoken tokenizer.model or sentencepiece .model "
                 "(the kind is read from the file); empty: the model's own (model.path's tokenizer.json, or the one a "
                 "checkpoint was trained with), else one trained on the run's examples."),
      key_string("tokenizer.template", "auto",
                 "How prompt and target become one sequence: chat (Llama 3 instruct headers), plain (bos + prompt + "
                 "target + eos, for base models and sentencepiece), model (the chat template in tokenizer.path's "
                 "folder, a Hugging Face model's own), or auto (the model's own: model for a model.path folder with "
                 "its tokenizer and chat template, what a checkpoint was trained with; else chat).",
                 {"auto", "chat", "plain", "model"}),
      key_int("tokenizer.train_vocab_size", 8000, "Vocabulary size when training a sentencepiece tokenizer.", 16, 1000000),
      key_string("tokenizer.train_model_type", "bpe", "Sentencepiece model type when training.",
                 {"bpe", "unigram", "char", "word"}),

      // dataset: the tokenized, packed training set
      key_string("dataset.input", "", "Augmented JSON Lines ({\"prompt\", \"target\"} records) that prepare tokenizes."),
      key_string("dataset.output", "", "The tokenized HDF5 file; empty means <run folder>/dataset.h5."),
      key_int("dataset.sequence_length", 1024, "Tokens per packed training sequence.", 8, 1048576),
      key_bool("dataset.pack", true,
               "Pack several documents per sequence (boundaries kept; training masks attention between them and "
               "restarts positions per document); false gives one padded document per sequence."),
      key_string("dataset.overflow", "drop",
                 "A document longer than dataset.sequence_length: drop it (warned, with the share dropped), "
                 "truncate it to the sequence length, or stop with an error.",
                 {"drop", "truncate", "error"}),
      key_string("dataset.patterns_file", "", "Pattern handbook whose hash is recorded in the dataset (optional)."),
      key_number("dataset.validation_share", 0.0,
                 "Share of the documents held out as the validation set (chosen by a hash of the record index and "
                 "run.seed, the same at any rank count; packed like training's, stored in dataset.h5); 0: none. "
                 "train.eval_every evaluates on it.",
                 0.0, 0.5),

      // model: the architecture and the weights training starts from
      key_string("model.preset", "debug-tiny",
                 "Named architecture when model.path is empty: llama3.2-1b, llama3.2-3b, llama3.1-8b, debug-tiny, "
                 "debug-small (weights start random)."),
      key_string("model.path", "",
                 "Hugging Face folder (config.json + safetensors) to fine-tune; empty: model.preset from scratch."),
      key_string("model.attention", "sdpa",
                 "Attention kernel: sdpa (scaled_dot_product_attention: flash on sm_80+, memory-efficient on sm_60 "
                 "and fp32) or eager (transformers' explicit softmax path, the reference).",
                 {"sdpa", "eager"}),
      key_int("model.vocab_size", 0,
              "Vocabulary rows of a from-scratch model; 0: the preset's (set it to a trained tokenizer's size).", 0,
              4000000),

      // forward and generate: one model source run on token ids (`metareuse forward`, `metareuse generate`)
      key_string("forward.model", "", "forward: the model, a Hugging Face folder or a checkpoint."),
      key_string("forward.ids", "", "forward: safetensors file holding input_ids, int64 [B, T]."),
      key_string("forward.out", "", "forward: safetensors file to write, logits f32 [B, T, V] and loss f32 [1]."),
      key_string("forward.dtype", "float32", "forward: compute dtype.", {"float32", "bfloat16"}),
      key_string("generate.model", "", "generate: the model, a Hugging Face folder or a checkpoint."),
      key_string("generate.prompt_ids", "", "generate: the prompt as comma-separated token ids, 1,2,3."),
      key_string("generate.prompt", "", "generate: the prompt as text (its tokenizer: tokenizer.path, else the one the "
                 "model brings: a checkpoint's own, a folder's tokenizer.json)."),
      key_string("generate.prompts", "", "generate: a prompts file, one prompt per line (blank lines skipped); one "
                 "output line each. Its lines are read as generate.prompts_format says."),
      key_string("generate.prompts_format", "auto", "generate: how generate.prompts is read: ids (each line a JSON "
                 "array of token ids, [1, 2, 3]), text (each line a prompt's text), or auto (a line that is a JSON "
                 "array of integers is ids, any other text; a file that mixes the two is an error naming the line).",
                 {"auto", "text", "ids"}),
      key_bool("generate.chat", false, "generate: each text prompt as one user turn of the model's template "
               "(tokenizer.template, resolved as eval resolves it), with the generation prompt."),
      key_int("generate.batch_size", 8, "generate: prompts generated together.", 1, 1 << 20),
      key_int("generate.max_new_tokens", 32, "generate: tokens to generate (prompt + new <= the model's positions).", 0,
              1 << 24),
      key_number("generate.temperature", 0.0, "generate: 0 picks the most likely token; > 0 samples with this "
                 "temperature, seeded by run.seed.", 0.0, 1e6),
      key_number("generate.top_p", 1.0, "generate: sample from the smallest set of tokens with this much probability.",
                 0.0, 1.0),
      key_bool("generate.stop", true, "generate: stop a prompt's generation at its first stop token, printed last: "
               "the model config's eos ids, the tokenizer's eos and the template's end of turn (the tokens eval "
               "stops at); false generates generate.max_new_tokens tokens."),
      key_bool("generate.use_cache", true, "generate: decode with a KV cache; false recomputes the whole sequence for "
               "every token (slow; for comparison)."),

      // train: the sharded training loop
      key_string("train.precision", "fp32",
                 "Compute precision: fp32, bf16, or fp16 (mixed: fp32 master weights and residual stream, a loss scaler; on CPU fp16 is slow).",
                 {"fp32", "bf16", "fp16"}),
      key_int("train.global_batch", 8, "Sequences per optimizer step, over all ranks (fixed: the result does not "
              "depend on the rank count).", 1, 1 << 20),
      key_int("train.micro_batch", 2, "Sequences per forward/backward on one rank (gradient accumulation).", 1, 1 << 16),
      key_string("train.recompute", "auto",
                 "What backward recomputes instead of keeping from the forward: never (keep every unit's "
                 "gathered parameters and activations), selective (keep the units and each layer's matmul and "
                 "attention outputs; recompute the norms, casts and SiLU * up), always (keep only each unit's input "
                 "and re-run the unit), or auto: the first of never, selective, always whose memory plan fits "
                 "train.device_memory (never when no device memory is given). `metareuse plan` shows the choice.",
                 {"auto", "always", "selective", "never"}),
      key_bool("train.overlap", true, "With more than one rank, overlap communication with compute: each unit's "
               "all-gather is started while the unit before it computes, and its gradient's reduce-scatter runs "
               "while the next unit's backward does (one more gathered unit and one more fp32 unit gradient in "
               "memory). The results are bit-identical either way; false waits for each collective where it is "
               "issued."),
      key_int("train.loss_chunk_rows", 256, "Tokens of the LM head and its cross-entropy computed at a time (and "
              "recomputed in backward), so a micro-batch's fp32 logits (tokens x vocabulary) never exist at once; 0: "
              "all at once. The loss and gradients are the same to rounding; the memory plan counts one chunk.", 0,
              1 << 30),
      key_number("train.lr", 3e-4, "Peak learning rate.", 0.0, 10.0),
      key_number("train.lr_min", 3e-5, "Learning rate at the end of the decay.", 0.0, 10.0),
      key_string("train.lr_schedule", "cosine", "Decay after warmup.", {"cosine", "linear", "constant"}),
      key_int("train.warmup_steps", 0, "Linear warmup steps from 0 to train.lr.", 0, 1 << 30),
      key_number("train.beta1", 0.9, "AdamW beta1.", 0.0, 1.0),
      key_number("train.beta2", 0.95, "AdamW beta2.", 0.0, 1.0),
      key_number("train.eps", 1e-8, "AdamW epsilon.", 0.0, 1.0),
      key_number("train.weight_decay", 0.1, "AdamW decoupled weight decay.", 0.0, 10.0),
      key_string("train.weight_decay_policy", "matrices", "Which parameters decay: matrices only, or all.",
                 {"matrices", "all"}),
      key_number("train.grad_clip", 1.0, "Global grad-norm clip; 0 disables.", 0.0, 1e9),
      key_int("train.max_bad_steps", 3, "Consecutive bad steps (a non-finite loss or gradient, each skipped; with fp16, "
              "only at train.loss_scale_min) before training stops with an error naming the step and the tensor.", 1, 1 << 20),
      key_int("train.epochs", 0, "Epochs; 0: the adaptive rule (train.policy_*).", 0, 1 << 20),
      key_int("train.max_steps", 0, "Optimizer steps; 0: from the epochs. Overrides the adaptive rule.", 0, 1LL << 40),
      key_int("train.policy_small_examples", 5, "Adaptive rule: datasets with fewer sequences than this are small.", 0,
              1LL << 40),
      key_int("train.policy_small_epochs", 1, "Adaptive rule: epochs for a small dataset.", 1, 1 << 20),
      key_int("train.policy_small_max_steps", 10, "Adaptive rule: at most this many steps for a small dataset.", 1,
              1LL << 40),
      key_int("train.policy_epochs", 2, "Adaptive rule: epochs otherwise.", 1, 1 << 20),
      key_number("train.loss_scale_initial", 65536.0, "fp16 dynamic loss scale: initial value.", 1.0, 1e12),
      key_int("train.loss_scale_growth_interval", 2000, "fp16 loss scale doubles after this many good steps.", 1,
              1LL << 40),
      key_int("train.loss_scale_hysteresis", 1, "fp16: overflows tolerated before the scale halves.", 1, 1000),
      key_number("train.loss_scale_min", 1.0, "fp16: the scale never drops below this.", 1e-12, 1e12),
      key_number("train.time_limit", 0.0,
                 "Wall-clock budget in seconds; all ranks stop at the same step, checkpoint and exit 3. 0: none (in a "
                 "Slurm job with a time limit, the job's end less train.job_end_margin still applies).", 0.0, 1e9),
      key_number("train.job_end_margin", 120.0,
                 "In a Slurm job with a time limit (SLURM_JOB_END_TIME), training stops with a checkpoint and exit 3 "
                 "this many seconds before the job's end, or at train.time_limit if that comes first.", 0.0, 1e9),
      key_int("train.eval_every", 0,
              "Validation loss every N optimizer steps and at the end of training (a val_loss line in metrics.jsonl); "
              "needs validation sequences (dataset.validation_share). 0: off.",
              0, 1LL << 40),
      key_int("train.early_stop_patience", 0,
              "Stop training (final checkpoint, exit 0) when the validation loss has not improved by more than "
              "train.early_stop_min_delta for this many evaluations in a row; needs train.eval_every. 0: off.",
              0, 1 << 30),
      key_number("train.early_stop_min_delta", 0.0,
                 "The least drop of the validation loss below its best that counts as an improvement.", 0.0, 1e9),
      key_int("train.log_every", 1, "Progress line every N steps when the output is not a terminal.", 1, 1 << 30),
      key_string("train.progress", "auto",
                 "Progress display: bar (one redrawn line), lines (a log line every train.log_every steps), or auto "
                 "(bar when stderr is a terminal; mpirun gives ranks a terminal even when its output goes to a "
                 "file, so the sbatch templates set lines).",
                 {"auto", "bar", "lines"}),
      key_string("train.resume", "", "Resume: auto (the checkpoint folder's latest, if any), a checkpoint file or "
                 "folder; empty: start fresh."),
      key_string("train.device_memory", "0",
                 "Memory per device for the plan check, e.g. 16GiB; 0: do not check (CPU)."),

      // train: where it runs
      key_string("train.device", "auto",
                 "Where training runs: auto (CUDA when libtorch sees a GPU, else CPU), cpu, or cuda (each rank "
                 "uses GPU local_rank mod the node's GPU count).",
                 {"auto", "cpu", "cuda"}),

      // plan: `metareuse plan` sizes the train section's run for other hardware
      key_int("plan.ranks", 0, "Ranks (devices) to plan for; 0: the job's own.", 0, 1 << 20),
      key_int("plan.sequence_length", 0, "Sequence length to plan for; 0: dataset.sequence_length.", 0, 1 << 24),

      // checkpoint
      key_string("checkpoint.dir", "", "Checkpoint folder; empty: <run folder>/checkpoints."),
      key_int("checkpoint.every_steps", 0, "Checkpoint every N optimizer steps; 0: only at the end and by time.", 0,
              1LL << 40),
      key_number("checkpoint.every_minutes", 0.0, "Checkpoint every M minutes; 0: off.", 0.0, 1e9),
      key_int("checkpoint.keep_last", 3, "Complete checkpoints kept; 0: all.", 0, 1 << 30),
      key_int("checkpoint.max_total_bytes", 0, "Cap on the folder's checkpoints in bytes (the newest is always "
              "kept); 0: none.", 0, 1LL << 62),
      key_int("checkpoint.compression", 0, "gzip level of checkpoint datasets; 0: none.", 0, 9),

      // eval: held-out questions, tuned model against a baseline
      key_string("eval.questions", "", "JSON Lines of held-out questions: GSM8K {question, answer} or seed "
                 "{question, reasoning, solution} records."),
      key_string("eval.model", "", "Model to evaluate: a Hugging Face folder, a checkpoint file, or a checkpoint "
                 "folder (its latest); empty: the run's checkpoints."),
      key_string("eval.baseline", "", "Model to compare against (same kinds as eval.model); empty: none."),
      key_int("eval.max_new_tokens", 256, "Most tokens generated per answer.", 1, 1 << 20),
      key_int("eval.batch_size", 8, "Answers generated together on each rank (one batched KV-cache decode).", 1,
              1 << 16),
      key_bool("eval.greedy", true, "Greedy decoding; false samples with eval.temperature, eval.top_p and run.seed."),
      key_number("eval.temperature", 0.7, "Sampling temperature (eval.greedy = false).", 1e-6, 100.0),
      key_number("eval.top_p", 0.95, "Sampling nucleus (eval.greedy = false).", 1e-6, 1.0),
      key_int("eval.limit", 0, "Evaluate the first N questions; 0: all.", 0, 1LL << 40),
      key_number("eval.time_limit", 0.0, "Wall-clock budget in seconds: eval stops after the round of batches that "
                 "passes it and exits 3, keeping its answers (answers.partial.jsonl) for the next run. 0: none.",
                 0.0, 1e9),
      key_string("eval.handbook", "", "Handbook whose pattern use is measured; empty: <run folder>/handbook.json "
                 "when it exists."),
      key_bool("eval.prompt_patterns", true, "Prefix prompts with handbook patterns as the augment stage did "
               "(augment.mode, augment.top_k), so eval prompts match training prompts."),
      key_string("eval.out", "", "Output folder for eval.json and answers.jsonl; empty: <run folder>/eval."),
      // eval and experiment: the control entry, used-mode retrieval, the baseline run
      key_bool("eval.control", false, "Also evaluate the model prompted without patterns (entry \"control\")."),
      key_string("eval.contexts", "", "augment.mode used: augmented JSON Lines whose {question, patterns} records give "
                 "each pattern's context for retrieval; empty: <run folder>/augmented.jsonl."),
      key_bool("experiment.baseline", false, "run: also train a baseline from scratch on the corpus without patterns "
               "(same tokenizer, model, steps, batch, seed) in <run>/baseline; eval then reports baseline, reuse "
               "(prompted with patterns) and control (the same model prompted without)."),

      key_bool("experiment.bc_sft", false, "run: behavior-conditioned SFT. After training, distill has the "
               "run's model (or distill.teacher) answer the corpus's questions prompted with behaviors; a student "
               "is trained from the same start on its right answers without behaviors, in <run>/student; eval "
               "adds the entry bc-sft (prompted without patterns)."),

      // distill: a teacher's right answers as training examples (`metareuse distill`, experiment.bc_sft)
      key_string("distill.teacher", "", "Teacher: a Hugging Face folder, a checkpoint file, or a checkpoint folder "
                 "(its latest); empty: the run's checkpoints."),
      key_string("distill.handbook", "", "Handbook whose behaviors prompt the teacher; empty: <run "
                 "folder>/handbook.json (augment.mode used also reads <run folder>/augmented.jsonl)."),
      key_int("distill.limit", 0, "Answer the first N corpus questions; 0: all.", 0, 1LL << 40),
      key_int("distill.samples", 1, "Answers per question (more than 1 needs distill.greedy = false).", 1, 1024),
      key_bool("distill.greedy", true, "Greedy decoding; false samples with distill.temperature, distill.top_p "
               "and run.seed (seeded by question and sample)."),
      key_number("distill.temperature", 0.7, "Sampling temperature (distill.greedy = false).", 1e-6, 100.0),
      key_number("distill.top_p", 0.95, "Sampling nucleus (distill.greedy = false).", 1e-6, 1.0),
      key_int("distill.max_new_tokens", 256, "Most tokens the teacher generates per answer.", 1, 1 << 20),
      key_int("distill.batch_size", 8, "Answers generated together on each rank.", 1, 1 << 16),
      key_number("distill.time_limit", 0.0, "Wall-clock budget in seconds: distill stops after the batch that "
                 "passes it and exits 3, keeping its answers for the next run. 0: none.", 0.0, 1e9),
      key_string("distill.out", "", "distill: the training examples written; empty: <run folder>/distilled.jsonl "
                 "(answers and distill.json go in <run folder>/distill/)."),

      key_string("report.out", "", "report: the HTML file to write; empty: <run folder>/report.html."),
      key_bool("report.watch", false, "report: rewrite the report every report.interval seconds while a job holds the "
               "run folder (its run.lock), and once more when it ends; exit 0 then, or on SIGINT or SIGTERM."),
      key_number("report.interval", 30.0, "report: seconds between the rewrites of report.watch.", 0.1, 86400.0),

      // export: a checkpoint as a Hugging Face folder (`metareuse export`, the run's export stage)
      key_string("export.checkpoint", "", "Checkpoint file, or a folder with `latest`; empty: the run's checkpoint folder."),
      key_string("export.out", "", "Output folder (config.json + safetensors); empty: <run folder>/export."),
      key_string("export.dtype", "fp32",
                 "Stored dtype of the weights: fp32 (what training keeps, lossless), or bf16 / fp16 (half the size).",
                 {"fp32", "fp16", "bf16"}),
      key_string("export.max_shard", "5GB", "Weights above this size are split into shards, e.g. 5GB."),
  };
}


json::json_pointer pointer_of(const std::string& path) {
  std::string pointer = "/" + path;
  std::replace(pointer.begin(), pointer.end(), '.', '/');
  return json::json_pointer(pointer);
}

// Names a user brings from transformers' TrainingArguments (and TRL's
// SFTConfig), each with the key that means the same here. The nearest spelling
// is no help for these ('learning_rate' is closest to 'tokenizer.template').
struct ForeignName {
  const char* name;
  const char* key;
  const char* how;  // what differs, when the value does not carry over as it is
};
constexpr ForeignName kTrainingArgumentsNames[] = {
    {"learning_rate", "train.lr", ""},
    {"num_train_epochs", "train.epochs", ""},
    {"max_steps", "train.max_steps", ""},
    {"per_device_train_batch_size", "train.micro_batch", "sequences per forward/backward on one rank"},
    {"gradient_accumulation_steps", "train.global_batch",
     "give the sequences per optimizer step over all ranks: micro batch x ranks x accumulation steps"},
    {"warmup_steps", "train.warmup_steps", ""},
    {"warmup_ratio", "train.warmup_steps", "a number of steps, not a share"},
    {"weight_decay", "train.weight_decay", ""},
    {"adam_beta1", "train.beta1", ""},
    {"adam_beta2", "train.beta2", ""},
    {"adam_epsilon", "train.eps", ""},
    {"max_grad_norm", "train.grad_clip", ""},
    {"lr_scheduler_type", "train.lr_schedule", "cosine, linear or constant"},
    {"bf16", "train.precision", "train.precision=bf16"},
    {"fp16", "train.precision", "train.precision=fp16"},
    {"gradient_checkpointing", "train.recompute", "always, selective, never or auto"},
    {"resume_from_checkpoint", "train.resume", "auto, or a checkpoint file or folder"},
    {"logging_steps", "train.log_every", ""},
    {"seed", "run.seed", ""},
    {"output_dir", "run.out_dir", ""},
    {"run_name", "run.name", ""},
    {"log_level", "log.level", ""},
    {"save_steps", "checkpoint.every_steps", ""},
    {"save_total_limit", "checkpoint.keep_last", ""},
    {"per_device_eval_batch_size", "eval.batch_size", ""},
    {"max_seq_length", "dataset.sequence_length", ""},
    {"max_length", "dataset.sequence_length", ""},
    {"model_name_or_path", "model.path", ""},
};

std::string unknown_key_message(const std::string& path, const std::string& where) {
  const std::string prefix = where.empty() ? "" : where + ": ";
  const std::string leaf = path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
  for (const ForeignName& foreign : kTrainingArgumentsNames) {
    if (leaf != foreign.name) continue;
    return fmt::format("{}unknown config key '{}': transformers' {} is '{}' in metareuse{} (metareuse <cmd> "
                       "--print-config lists every key)",
                       prefix, path, foreign.name, foreign.key,
                       *foreign.how == '\0' ? std::string() : fmt::format(": {}", foreign.how));
  }
  return fmt::format("{}unknown config key '{}'; did you mean '{}'? (metareuse <cmd> --print-config lists every key)",
                     prefix, path, closest_config_key(path));
}

// Flattens a nested JSON object into dotted keys, checking each against the schema.
void flatten_into(const json& node, const std::string& prefix, const std::string& where,
                  std::vector<std::pair<std::string, json>>& out) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (find_config_key(path) != nullptr) {
      out.emplace_back(path, it.value());
    } else if (it.value().is_object()) {
      bool is_section = std::any_of(config_schema().begin(), config_schema().end(),
                                    [&](const ConfigKey& k) { return k.path.rfind(path + ".", 0) == 0; });
      if (!is_section) throw ConfigError(unknown_key_message(path, where));
      flatten_into(it.value(), path, where, out);
    } else {
      throw ConfigError(unknown_key_message(path, where));
    }
  }
}

}  // namespace

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = build_schema();
  return schema;
}

const ConfigKey* find_config_key(const std::string& path) {
  for (const auto& key : config_schema()) {
    if (key.path == path) return &key;
  }
  return nullptr;
}

std::string closest_config_key(const std::string& path) {
  std::string best;
  std::size_t best_distance = std::string::npos;
  std::string leaf = path.substr(path.rfind('.') == std::string::npos ? 0 : path.rfind('.') + 1);
  for (const auto& key : config_schema()) {
    std::string key_leaf = key.path.substr(key.path.rfind('.') + 1);
    // A full-path match and a leaf-only match both count; the leaf helps when
    // the section is wrong ("model.max_steps" -> "train.max_steps").
    std::size_t distance = std::min(edit_distance(path, key.path), edit_distance(leaf, key_leaf) + 1);
    if (distance < best_distance) {
      best_distance = distance;
      best = key.path;
    }
  }
  return best;
}

const char* config_type_name(ConfigType type) {
  switch (type) {
    case ConfigType::kInt: return "integer";
    case ConfigType::kNumber: return "number";
    case ConfigType::kBool: return "boolean";
    case ConfigType::kString: return "string";
    case ConfigType::kStringList: return "list of strings";
    case ConfigType::kStringMap: return "object of strings";
  }
  return "?";
}

void validate_config_value(const ConfigKey& key, const json& value, const std::string& where) {
  std::string prefix = where.empty() ? "" : where + ": ";
  auto bad_type = [&]() {
    const std::string type = config_type_name(key.type);
    const bool vowel = std::string("aeiou").find(type.front()) != std::string::npos;
    return ConfigError(fmt::format("{}config key '{}' must be {} {}, got {} ({})", prefix, key.path, vowel ? "an" : "a",
                                   type, value.type_name(), value.dump()));
  };
  switch (key.type) {
    case ConfigType::kInt:
      if (!value.is_number_integer()) throw bad_type();
      break;
    case ConfigType::kNumber:
      if (!value.is_number()) throw bad_type();
      break;
    case ConfigType::kBool:
      if (!value.is_boolean()) throw bad_type();
      break;
    case ConfigType::kString:
      if (!value.is_string()) throw bad_type();
      if (!key.choices.empty() &&
          std::find(key.choices.begin(), key.choices.end(), value.get<std::string>()) == key.choices.end()) {
        throw ConfigError(fmt::format("{}config key '{}' must be one of {}, got \"{}\"", prefix, key.path,
                                      fmt::join(key.choices, "|"), value.get<std::string>()));
      }
      break;
    case ConfigType::kStringList:
      if (!value.is_array()) throw bad_type();
      for (const auto& item : value) {
        if (!item.is_string()) throw bad_type();
      }
      break;
    case ConfigType::kStringMap:
      if (!value.is_object()) throw bad_type();
      for (const auto& item : value) {
        if (!item.is_string()) throw bad_type();
      }
      break;
  }
  if (key.type == ConfigType::kInt || key.type == ConfigType::kNumber) {
    double number = value.get<double>();
    if ((key.min && number < *key.min) || (key.max && number > *key.max)) {
      throw ConfigError(fmt::format("{}config key '{}' = {} is out of range [{}, {}]", prefix, key.path,
                                    value.dump(), key.min ? fmt::format("{}", *key.min) : "-inf",
                                    key.max ? fmt::format("{}", *key.max) : "inf"));
    }
  }
}

Config::Config() : tree_(json::object()) {
  for (const auto& key : config_schema()) tree_[pointer_of(key.path)] = key.default_value;
}

Config Config::from_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw ConfigError(fmt::format("config file '{}' is a directory", path));
  }
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("cannot open config file '{}': {}", path, why_unreadable(path)));
  // JSON allows a key twice in one object and the parser keeps the last: a
  // config with "train" twice would drop the first section without a word.
  // Each object's keys are collected while parsing, and a repeat is an error.
  struct ObjectKeys {
    std::set<std::string> seen;
    std::string current;
  };
  std::vector<ObjectKeys> objects;
  std::string duplicate;
  auto refuse_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      objects.emplace_back();
    } else if (event == json::parse_event_t::object_end && !objects.empty()) {
      objects.pop_back();
    } else if (event == json::parse_event_t::key && !objects.empty() && duplicate.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!objects.back().seen.insert(key).second) {
        for (std::size_t i = 0; i + 1 < objects.size(); ++i) duplicate += objects[i].current + ".";
        duplicate += key;
      }
      objects.back().current = key;
    }
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(in, refuse_duplicates);
  } catch (const json::parse_error& e) {
    throw ConfigError(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
  if (!duplicate.empty()) {
    throw ConfigError(fmt::format("{}: '{}' is given twice (JSON would keep only the last one); merge the two", path,
                                  duplicate));
  }
  if (!parsed.is_object()) throw ConfigError(fmt::format("{}: the config must be a JSON object", path));
  std::vector<std::pair<std::string, json>> entries;
  flatten_into(parsed, "", path, entries);
  Config config;
  for (const auto& [key_path, value] : entries) {
    validate_config_value(*find_config_key(key_path), value, path);
    config.tree_[pointer_of(key_path)] = value;
  }
  return config;
}

Config Config::load(const std::string& file, const std::vector<std::string>& overrides) {
  Config config = file.empty() ? Config() : Config::from_file(file);
  for (const auto& assignment : overrides) config.apply_override(assignment);
  return config;
}

void Config::apply_override(const std::string& assignment) {
  auto equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) {
    throw ConfigError(fmt::format("--set '{}': expected section.key=value", assignment));
  }
  std::string path = assignment.substr(0, equals);
  std::string text = assignment.substr(equals + 1);
  const ConfigKey* key = find_config_key(path);
  if (key == nullptr) throw ConfigError(unknown_key_message(path, "--set"));
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded() || (key->type == ConfigType::kString && !value.is_string())) {
    value = text;  // unquoted strings
  }
  validate_config_value(*key, value, "--set");
  tree_[pointer_of(path)] = value;
}

void Config::set(const std::string& path, const json& value) {
  const ConfigKey* key = find_config_key(path);
  if (key == nullptr) throw ConfigError(unknown_key_message(path, ""));
  validate_config_value(*key, value, "");
  tree_[pointer_of(path)] = value;
}

const json& Config::get_json(const std::string& path) const {
  if (find_config_key(path) == nullptr) throw ConfigError(unknown_key_message(path, "internal lookup"));
  if (reads_) reads_->insert(path);
  return tree_.at(pointer_of(path));
}

void Config::record_reads() { reads_ = std::make_shared<std::set<std::string>>(); }

std::vector<std::string> Config::keys_read() const {
  return reads_ ? std::vector<std::string>(reads_->begin(), reads_->end()) : std::vector<std::string>{};
}

std::int64_t Config::get_int(const std::string& path) const { return get_json(path).get<std::int64_t>(); }
double Config::get_number(const std::string& path) const { return get_json(path).get<double>(); }
bool Config::get_bool(const std::string& path) const { return get_json(path).get<bool>(); }
std::string Config::get_string(const std::string& path) const { return get_json(path).get<std::string>(); }
std::vector<std::string> Config::get_string_list(const std::string& path) const {
  return get_json(path).get<std::vector<std::string>>();
}

std::string Config::dump() const { return tree_.dump(2) + "\n"; }

std::string Config::describe() const {
  std::ostringstream out;
  std::string section;
  for (const auto& key : config_schema()) {
    std::string key_section = key.path.substr(0, key.path.find('.'));
    if (key_section != section) {
      out << (section.empty() ? "" : "\n") << "[" << key_section << "]\n";
      section = key_section;
    }
    out << fmt::format("{} = {}\n    # {} ({}", key.path, get_json(key.path).dump(), key.description,
                       config_type_name(key.type));
    if (!key.choices.empty()) out << fmt::format("; one of {}", fmt::join(key.choices, "|"));
    if (key.min || key.max) {
      out << fmt::format("; range [{}, {}]", key.min ? fmt::format("{}", *key.min) : "-inf",
                         key.max ? fmt::format("{}", *key.max) : "inf");
    }
    out << fmt::format("; default {})\n", key.default_value.dump());
  }
  return out.str();
}

void Config::write(const std::string& file) const {
  write_file_atomic(file, dump());
}

}  // namespace metareuse
