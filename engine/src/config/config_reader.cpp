#include "config/config_reader.h"

#include "util/file_read.h"

namespace lmlab {

ConfigReader ConfigReader::from_file(const std::string& path) {
  const std::string text = read_regular_file(path, uint64_t{16} << 20);  // real configs are a few KB
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) throw Error(ErrorKind::model_format, path, "top level is not a JSON object");
    return ConfigReader(std::move(j), path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::model_format, path, fmt::format("not valid JSON: {}", e.what()));
  }
}

}  // namespace lmlab
