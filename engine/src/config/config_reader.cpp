#include "config/config_reader.h"

#include <fstream>

namespace lmlab {

ConfigReader ConfigReader::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::io, path, "cannot open");
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    if (!j.is_object()) throw Error(ErrorKind::model_format, path, "top level is not a JSON object");
    return ConfigReader(std::move(j), path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::model_format, path, fmt::format("not valid JSON: {}", e.what()));
  }
}

}  // namespace lmlab
