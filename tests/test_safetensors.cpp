// Safetensors reading and writing: round trips, dtype conversion, the
// fp16-range report, sharded checkpoints, and every malformed-input error
// (each must name the tensor and the file).
#include "torch_catch.h"  // libtorch, then Catch2 (its CHECK, not glog's)
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "metareuse/core/error.h"
#include "metareuse/model/safetensors.h"
#include "test_support.h"

using Catch::Matchers::Contains;
using metareuse::InputError;
using metareuse::SafetensorsCheckpoint;
using metareuse::SafetensorsFile;
namespace fs = std::filesystem;

namespace {

// Writes a file by hand: 8-byte length, `header` as given, then `data`.
void write_raw(const fs::path& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  std::uint64_t length = header.size();
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << header << data;
}

nlohmann::json header_of(const fs::path& path) {
  std::string bytes = metareuse::test::read_file(path);
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  return nlohmann::json::parse(bytes.substr(8, length));
}

}  // namespace

TEST_CASE("safetensors round trip keeps names, shapes, dtypes and bytes", "[safetensors]") {
  auto dir = metareuse::test::temp_dir("st-roundtrip");
  torch::manual_seed(3);
  torch::Tensor f32 = torch::randn({3, 5});
  torch::Tensor f16 = torch::randn({7}).to(torch::kFloat16);
  torch::Tensor bf16 = torch::randn({2, 2, 3}).to(torch::kBFloat16);
  torch::Tensor i64 = torch::arange(10, torch::kInt64).view({2, 5});
  torch::Tensor strided = torch::randn({4, 6}).t();  // not contiguous: written contiguous
  const fs::path file = dir / "a.safetensors";
  metareuse::write_safetensors(file.string(),
                               {{"w.f32", f32}, {"w.f16", f16}, {"w.bf16", bf16}, {"ids", i64}, {"strided", strided}},
                               {{"note", "test"}});

  // The layout the reference implementation writes: 8-byte-aligned header,
  // format "pt", contiguous non-overlapping offsets starting at 0.
  std::string bytes = metareuse::test::read_file(file);
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  CHECK(header_length % 8 == 0);
  auto header = header_of(file);
  CHECK(header["__metadata__"]["format"] == "pt");
  CHECK(header["__metadata__"]["note"] == "test");
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() != "__metadata__") spans.emplace_back(it.value()["data_offsets"][0], it.value()["data_offsets"][1]);
  }
  std::sort(spans.begin(), spans.end());
  std::uint64_t expected = 0;
  for (auto [begin, end] : spans) {
    CHECK(begin == expected);
    expected = end;
  }
  CHECK(bytes.size() == 8 + header_length + expected);

  SafetensorsFile reader(file.string());
  CHECK(reader.names() == std::vector<std::string>{"ids", "strided", "w.bf16", "w.f16", "w.f32"});
  CHECK(reader.entry("w.bf16").dtype == "BF16");
  CHECK(torch::equal(reader.tensor("w.f32"), f32));
  CHECK(torch::equal(reader.tensor("w.f16"), f16));
  CHECK(torch::equal(reader.tensor("w.bf16"), bf16));
  CHECK(torch::equal(reader.tensor("ids"), i64));
  CHECK(torch::equal(reader.tensor("strided"), strided));
  // Conversions to the requested dtype.
  CHECK(torch::equal(reader.tensor("w.f16", torch::kFloat32), f16.to(torch::kFloat32)));
  CHECK(torch::equal(reader.tensor("w.bf16", torch::kFloat32), bf16.to(torch::kFloat32)));
  CHECK(torch::equal(reader.tensor("w.f32", torch::kBFloat16), f32.to(torch::kBFloat16)));
  CHECK(torch::equal(reader.tensor("w.bf16", torch::kFloat16), bf16.to(torch::kFloat16)));
  CHECK_THROWS_WITH(reader.tensor("ids", torch::kFloat32), Contains("ids") && Contains("cannot convert"));
  CHECK_THROWS_WITH(reader.tensor("nope"), Contains("nope") && Contains(file.string()));
}

TEST_CASE("BF16 to F16 reports values outside the fp16 range", "[safetensors]") {
  auto dir = metareuse::test::temp_dir("st-range");
  torch::Tensor big = torch::tensor({1.0f, -70000.0f, 2.0f, 1.0e6f, INFINITY}).to(torch::kBFloat16);
  // BF16 cannot hold 65504 itself (it rounds to 65536, which is out of range).
  torch::Tensor fine = torch::tensor({1.0f, -65280.0f, 0.5f}).to(torch::kBFloat16);
  const fs::path file = dir / "range.safetensors";
  metareuse::write_safetensors(file.string(), {{"big", big}, {"fine", fine}});
  SafetensorsFile reader(file.string());
  // Two finite values overflow; the infinity in the source is not counted.
  CHECK_THROWS_AS(reader.tensor("big", torch::kFloat16), InputError);
  CHECK_THROWS_WITH(reader.tensor("big", torch::kFloat16),
                    Contains("'big'") && Contains(file.string()) && Contains("2 of 5") && Contains("fp16 range"));
  torch::Tensor converted = reader.tensor("fine", torch::kFloat16);
  CHECK(torch::isfinite(converted).all().item<bool>());
  CHECK(converted[1].item<float>() == -65280.0f);  // the largest BF16 value below 65504
}

TEST_CASE("malformed safetensors files give errors naming tensor and file", "[safetensors]") {
  auto dir = metareuse::test::temp_dir("st-errors");
  torch::Tensor a = torch::arange(8, torch::kFloat32);
  torch::Tensor b = torch::arange(16, torch::kFloat32).view({4, 4});
  const fs::path good = dir / "good.safetensors";
  metareuse::write_safetensors(good.string(), {{"first", a}, {"second", b}});
  const std::string bytes = metareuse::test::read_file(good);

  SECTION("a file cut in the middle of its data is reported as truncated, naming the cut tensor") {
    const fs::path cut = dir / "cut.safetensors";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 20);
    CHECK_THROWS_WITH(SafetensorsFile(cut.string()),
                      Contains("truncated") && Contains("'second'") && Contains(cut.string()));
  }
  SECTION("a file cut inside its header, or shorter than the length field") {
    const fs::path cut = dir / "header-cut.safetensors";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, 30);
    CHECK_THROWS_WITH(SafetensorsFile(cut.string()), Contains("truncated") && Contains(cut.string()));
    const fs::path tiny = dir / "tiny.safetensors";
    std::ofstream(tiny, std::ios::binary) << "abc";
    CHECK_THROWS_WITH(SafetensorsFile(tiny.string()), Contains("truncated") && Contains(tiny.string()));
  }
  SECTION("offsets past the end of the file") {
    const fs::path past = dir / "past.safetensors";
    std::string data(32, '\0');
    write_raw(past, R"({"ok":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("far":{"dtype":"F32","shape":[4],"data_offsets":[1000,1016]}})",
              data);
    CHECK_THROWS_WITH(SafetensorsFile(past.string()),
                      Contains("'far'") && Contains("past the end") && Contains(past.string()));
  }
  SECTION("an unsupported dtype is reported when the tensor is read") {
    const fs::path exotic = dir / "exotic.safetensors";
    write_raw(exotic, R"({"f8":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]},)"
                      R"("ok":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
              std::string(8, '\1'));
    SafetensorsFile reader(exotic.string());
    CHECK(reader.tensor("ok").sum().item<std::int64_t>() == 4);
    CHECK_THROWS_WITH(reader.tensor("f8"), Contains("'f8'") && Contains("F8_E4M3") && Contains("not supported") &&
                                               Contains(exotic.string()));
  }
  SECTION("a byte span that does not match the shape") {
    const fs::path wrong = dir / "wrong-span.safetensors";
    write_raw(wrong, R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'));
    CHECK_THROWS_WITH(SafetensorsFile(wrong.string()), Contains("'x'") && Contains("needs 12") && Contains(wrong.string()));
  }
  SECTION("a header that is not JSON") {
    const fs::path junk = dir / "junk.safetensors";
    write_raw(junk, "{not json", "");
    CHECK_THROWS_WITH(SafetensorsFile(junk.string()), Contains("not valid JSON") && Contains(junk.string()));
  }
}

TEST_CASE("sharded checkpoints are written with an index and read back", "[safetensors]") {
  auto dir = metareuse::test::temp_dir("st-sharded");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (int i = 0; i < 5; ++i) tensors.emplace_back(fmt::format("t{}", i), torch::full({100}, float(i)));  // 400 bytes each
  auto written = metareuse::write_safetensors_checkpoint(dir.string(), tensors, 900);
  CHECK(written == std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                            "model-00003-of-00003.safetensors", "model.safetensors.index.json"});
  auto index = nlohmann::json::parse(metareuse::test::read_file(dir / "model.safetensors.index.json"));
  CHECK(index["metadata"]["total_size"] == 2000);
  CHECK(index["weight_map"]["t4"] == "model-00003-of-00003.safetensors");
  SafetensorsCheckpoint checkpoint(dir.string());
  CHECK(checkpoint.names().size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(checkpoint.tensor(fmt::format("t{}", i))[7].item<float>() == float(i));
  CHECK_THAT(checkpoint.file_of("t2"), Contains("model-00002-of-00003"));

  // Saving again unsharded replaces the shards and the index.
  auto single = metareuse::write_safetensors_checkpoint(dir.string(), tensors, 1 << 20);
  CHECK(single == std::vector<std::string>{"model.safetensors"});
  CHECK_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  CHECK(SafetensorsCheckpoint(dir.string()).names().size() == 5);

  // An index naming a shard that is not there.
  auto broken = metareuse::test::temp_dir("st-broken-index");
  std::ofstream(broken / "model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"w": "model-00001-of-00002.safetensors"}})";
  CHECK_THROWS_WITH(SafetensorsCheckpoint(broken.string()),
                    Contains("'w'") && Contains("model-00001-of-00002.safetensors") && Contains("does not exist"));
}

// A model folder from a hub is input: every size, offset and path in it is
// checked before use, with an error naming the file and tensor, never a crash
// or an allocation sized by the file's claims.
TEST_CASE("hostile safetensors files and indexes are refused naming the file and tensor", "[safetensors][hostile]") {
  auto dir = metareuse::test::temp_dir("st-hostile");
  SECTION("a header length near 2^64") {
    const fs::path huge = dir / "huge-header.safetensors";
    std::ofstream out(huge, std::ios::binary);
    const std::uint64_t length = ~std::uint64_t{0} - 4;
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << "{}";
    out.close();
    CHECK_THROWS_WITH(SafetensorsFile(huge.string()), Contains("implausible") && Contains(huge.string()));
  }
  SECTION("a shape whose element count wraps around 2^64 to match an empty byte range") {
    const fs::path wrap = dir / "wrap.safetensors";
    write_raw(wrap, R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", "");
    CHECK_THROWS_WITH(SafetensorsFile(wrap.string()), Contains("'x'") && Contains("bad shape") && Contains(wrap.string()));
    const fs::path wide = dir / "wide.safetensors";
    write_raw(wide, R"({"y":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]}})", "");
    CHECK_THROWS_WITH(SafetensorsFile(wide.string()), Contains("'y'") && Contains("bad shape"));
  }
  SECTION("a header nested 100,000 levels deep") {
    const fs::path deep = dir / "deep.safetensors";
    write_raw(deep, std::string(100000, '[') + std::string(100000, ']'), "");
    CHECK_THROWS_WITH(SafetensorsFile(deep.string()), Contains(deep.string()));
    const fs::path deep_meta = dir / "deep-meta.safetensors";
    write_raw(deep_meta, R"({"__metadata__":{"format":)" + std::string(100000, '[') + std::string(100000, ']') + "}}",
              "");
    CHECK_THROWS_WITH(SafetensorsFile(deep_meta.string()), Contains(deep_meta.string()));
  }
  SECTION("an index whose shard paths leave the folder") {
    const fs::path model = dir / "model";
    fs::create_directories(model);
    metareuse::write_safetensors((dir / "outside.safetensors").string(), {{"w", torch::ones({2})}});
    for (const std::string& shard : {std::string("../outside.safetensors"), (dir / "outside.safetensors").string(),
                                     std::string("sub/../../outside.safetensors")}) {
      INFO(shard);
      std::ofstream(model / "model.safetensors.index.json")
          << nlohmann::json{{"metadata", nlohmann::json::object()}, {"weight_map", {{"w", shard}}}}.dump();
      CHECK_THROWS_WITH(SafetensorsCheckpoint(model.string()),
                        Contains("'w'") && Contains(shard) && Contains("not a file in the index's folder"));
    }
  }
  SECTION("an index nested 100,000 levels deep") {
    const fs::path model = dir / "deep-index";
    fs::create_directories(model);
    std::ofstream(model / "model.safetensors.index.json")
        << R"({"weight_map": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
    CHECK_THROWS_WITH(SafetensorsCheckpoint(model.string()), Contains("model.safetensors.index.json"));
  }
}

namespace {

// Resident kilobytes of this process's mappings of `path` (/proc/self/smaps).
long mapped_resident_kb(const fs::path& path) {
  std::ifstream smaps("/proc/self/smaps");
  const std::string target = fs::canonical(path).string();
  std::string line;
  bool inside = false;
  long kb = 0;
  while (std::getline(smaps, line)) {
    // A mapping's first line starts with its address range "lo-hi perms ...".
    const bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                        line.find('-') != std::string::npos && line.find(':') > line.find(' ');
    if (header) {
      inside = line.size() >= target.size() && line.compare(line.size() - target.size(), target.size(), target) == 0;
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      kb += std::stol(line.substr(4));
    }
  }
  return kb;
}

}  // namespace

TEST_CASE("tensors read out of a safetensors file do not stay resident in its mapping", "[safetensors]") {
  // A model loads as tensors copied out of the mapped file; if the copied
  // pages stayed resident, a loading process would hold every weight twice.
  auto dir = metareuse::test::temp_dir("st-resident");
  const fs::path file = dir / "big.safetensors";
  torch::manual_seed(5);
  const torch::Tensor a = torch::randn({1024, 1024});                             // 4 MiB
  const torch::Tensor b = torch::randn({1024, 2048}).to(torch::kBFloat16);        // 4 MiB
  metareuse::write_safetensors(file.string(), {{"a", a}, {"b", b}}, {});
  SafetensorsFile st(file.string());
  REQUIRE(mapped_resident_kb(file) < 1024);  // the header's pages at most
  CHECK(torch::equal(st.tensor("a"), a));
  CHECK(torch::equal(st.tensor("b", torch::kFloat32), b.to(torch::kFloat32)));
  // 8 MiB read; what stays mapped in is at most a few pages around the header.
  CHECK(mapped_resident_kb(file) < 256);
  // Dropped pages read back the same bytes.
  CHECK(torch::equal(st.tensor("a"), a));
  CHECK(torch::equal(st.tensor("b"), b));
}
