// Phrasing mined patterns with the strategist. The deal and the gather follow
// reflect mode's (reflect.cpp): the work is split round robin, the results go
// over the communicator's allgatherv as JSON lines and are applied in order.
#include "metareuse/patterns/phrasing.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>  // replies on the wire

#include <fstream>
#include <iterator>

#include "metareuse/core/error.h"
#include "metareuse/core/log.h"
#include "metareuse/core/looked_for.h"  // why_unreadable
#include "metareuse/distributed/communicator.h"
#include "metareuse/patterns/text.h"

namespace metareuse {

std::string load_phrasing_prompt(const std::string& path) {
  if (path.empty()) return std::string(default_phrasing_prompt());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read the phrasing prompt: {}", path, why_unreadable(path)));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("{pattern}") == std::string::npos) {
    throw InputError(fmt::format("{}: the phrasing prompt has no {{pattern}} placeholder (it may use {{pattern}} and "
                                 "{{sentences}})",
                                 path));
  }
  return text;
}

std::string phrasing_prompt(std::string_view prompt_template, const Pattern& pattern,
                            const std::vector<std::string>& sentences) {
  std::string listed;
  for (const std::string& sentence : sentences) {
    if (!listed.empty()) listed += '\n';
    listed += "- " + behavior_instruction(sentence);
  }
  std::string out;
  std::size_t i = 0;
  while (i < prompt_template.size()) {
    if (prompt_template.compare(i, 9, "{pattern}") == 0) {
      out += pattern.text;
      i += 9;
    } else if (prompt_template.compare(i, 11, "{sentences}") == 0) {
      out += listed;
      i += 11;
    } else {
      out.push_back(prompt_template[i++]);
    }
  }
  return out;
}

PhrasingCounts phrase_patterns(Handbook& handbook, const std::vector<std::vector<std::string>>& sentences,
                               const PhrasingOptions& options, const Strategist& strategist,
                               Communicator& communicator) {
  if (options.batch_size == 0) throw InputError("phrasing: batch_size must be >= 1");
  if (sentences.size() != handbook.patterns.size()) {
    throw Error(fmt::format("phrasing: {} sentence lists for {} patterns", sentences.size(), handbook.patterns.size()));
  }
  // This rank's replies: one JSON array [pattern, name, instruction] per line,
  // name "" when the reply held no behavior line.
  std::string wire;
  std::vector<std::string> prompts;
  std::vector<std::uint64_t> indices;
  auto flush = [&] {
    if (prompts.empty()) return;
    const std::vector<std::string> replies = strategist(prompts, indices);
    if (replies.size() != prompts.size()) {
      throw Error(fmt::format("phrasing: the strategist answered {} of {} prompts", replies.size(), prompts.size()));
    }
    for (std::size_t i = 0; i < replies.size(); ++i) {
      log_debug("phrasing: pattern {} replied: {}", indices[i], replies[i]);
      const ParsedReflection parsed = parse_reflection(replies[i]);
      nlohmann::json line = nlohmann::json::array({indices[i], "", ""});
      if (!parsed.behaviors.empty()) {
        line[1] = parsed.behaviors.front().name;
        line[2] = parsed.behaviors.front().instruction;
      }
      wire += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      wire += '\n';
    }
    prompts.clear();
    indices.clear();
  };
  const auto size = static_cast<std::uint64_t>(communicator.size());
  for (std::uint64_t i = static_cast<std::uint64_t>(communicator.rank()); i < handbook.patterns.size(); i += size) {
    prompts.push_back(phrasing_prompt(options.prompt_template, handbook.patterns[i], sentences[i]));
    indices.push_back(i);
    if (prompts.size() == options.batch_size) flush();
  }
  flush();
  const std::vector<char> all = communicator.allgatherv(std::vector<char>(wire.begin(), wire.end()));

  // Every rank applies every reply: the gather's order is rank order, the
  // patterns' is the handbook's, and each pattern has one reply.
  PhrasingCounts counts;
  std::string_view text(all.data(), all.size());
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const auto line = nlohmann::json::parse(text.substr(begin, end - begin));
    begin = end + 1;
    Pattern& pattern = handbook.patterns.at(line[0].get<std::size_t>());
    ++counts.replies;
    if (line[1].get<std::string>().empty()) {
      ++counts.kept_mined;
      continue;
    }
    ++counts.phrased;
    pattern.name = line[1].get<std::string>();
    pattern.instruction = line[2].get<std::string>();
  }
  make_names_unique(handbook.patterns);
  handbook.stats["phrasing"] = {
      {"replies", counts.replies}, {"phrased", counts.phrased}, {"kept_mined", counts.kept_mined}};
  return counts;
}

}  // namespace metareuse
