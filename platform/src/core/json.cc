#include "tern/json.h"

#include <cmath>

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include "core/utf8.h"

namespace tern::json {
namespace {

namespace pb = google::protobuf;

size_t utf8_length(std::string_view s, size_t i) { return detail::utf8::sequence_length(s, i); }

void append_base64(std::string_view in, std::string* out) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out->push_back('"');
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int shift : {18, 12, 6, 0}) out->push_back(kAlphabet[(v >> shift) & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out->push_back(kAlphabet[(v >> 18) & 63]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->append("==");
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out->push_back(kAlphabet[(v >> 18) & 63]);
    out->push_back(kAlphabet[(v >> 12) & 63]);
    out->push_back(kAlphabet[(v >> 6) & 63]);
    out->push_back('=');
  }
  out->push_back('"');
}

void append_message(const pb::Message& m, std::string* out);

void append_double(double v, std::string* out) {
  if (std::isnan(v)) out->append("\"NaN\"");
  else if (std::isinf(v)) out->append(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  // "-0" would parse back as 0 (an integer): the fuzzer found the sign lost.
  else if (v == 0 && std::signbit(v)) out->append("-0.0");
  else fmt::format_to(std::back_inserter(*out), "{}", v);
}

// One value of field f: element `index` of a repeated field, or -1.
void append_value(const pb::Message& m, const pb::FieldDescriptor* f, int index, std::string* out) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  auto it = std::back_inserter(*out);
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      fmt::format_to(it, "{}", rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      break;
    case pb::FieldDescriptor::CPPTYPE_INT64:
      fmt::format_to(it, "{}", rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      fmt::format_to(it, "{}", rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
      break;
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      fmt::format_to(it, "{}", rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
      break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      append_double(rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f), out);
      break;
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      append_double(rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f), out);
      break;
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      out->append((rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f)) ? "true" : "false");
      break;
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      int v = rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f);
      if (f->enum_type()->full_name() == "google.protobuf.NullValue") {
        out->append("null");
      } else if (const pb::EnumValueDescriptor* e = f->enum_type()->FindValueByNumber(v)) {
        append_quoted(e->name(), out);
      } else {
        fmt::format_to(it, "{}", v);
      }
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s = rep ? r->GetRepeatedStringReference(m, f, index, &scratch)
                                 : r->GetStringReference(m, f, &scratch);
      if (f->type() == pb::FieldDescriptor::TYPE_BYTES) append_base64(s, out);
      else append_quoted(s, out);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      append_message(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f), out);
      break;
  }
}

// A map key as JSON wants it: always a string.
void append_map_key(const pb::Message& entry, std::string* out) {
  const pb::FieldDescriptor* key = entry.GetDescriptor()->map_key();
  if (key->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
    append_value(entry, key, -1, out);
  } else {
    std::string k;
    append_value(entry, key, -1, &k);
    append_quoted(k, out);
  }
}

void append_message(const pb::Message& m, std::string* out) {
  const pb::Descriptor* d = m.GetDescriptor();
  if (d->well_known_type() != pb::Descriptor::WELLKNOWNTYPE_UNSPECIFIED) {
    // Timestamp, Duration, Struct, wrappers...: protobuf knows their forms.
    std::string s;
    if (pb::util::MessageToJsonString(m, &s).ok()) out->append(s);
    else out->append("null");
    return;
  }
  const pb::Reflection* r = m.GetReflection();
  out->push_back('{');
  bool first = true;
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    // Unset oneof members, proto3 optionals and sub-messages are left out,
    // as protobuf's own printer does.
    if (!f->is_repeated() && f->has_presence() && !r->HasField(m, f)) continue;
    if (!first) out->push_back(',');
    first = false;
    append_quoted(f->json_name(), out);
    out->push_back(':');
    if (f->is_map()) {
      out->push_back('{');
      const pb::FieldDescriptor* value = f->message_type()->map_value();
      for (int j = 0, n = r->FieldSize(m, f); j < n; ++j) {
        if (j > 0) out->push_back(',');
        const pb::Message& entry = r->GetRepeatedMessage(m, f, j);
        append_map_key(entry, out);
        out->push_back(':');
        append_value(entry, value, -1, out);
      }
      out->push_back('}');
    } else if (f->is_repeated()) {
      out->push_back('[');
      for (int j = 0, n = r->FieldSize(m, f); j < n; ++j) {
        if (j > 0) out->push_back(',');
        append_value(m, f, j, out);
      }
      out->push_back(']');
    } else {
      append_value(m, f, -1, out);
    }
  }
  out->push_back('}');
}

}  // namespace

void append_quoted(std::string_view s, std::string* out) {
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (size_t n = utf8_length(s, i); n > 0) {
        out->append(s.substr(i, n));
        i += n;
      } else {
        out->append("\\ufffd");
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20 || c == 0x7F) fmt::format_to(std::back_inserter(*out), "\\u{:04x}", c);
        else out->push_back(static_cast<char>(c));
    }
    ++i;
  }
  out->push_back('"');
}

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_quoted(s, &out);
  return out;
}

std::string to_json(const google::protobuf::Message& message) {
  std::string out;
  append_message(message, &out);
  return out;
}

Error from_json(std::string_view json, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok())
    return Error{Code::kInvalidArgument,
                 fmt::format("body is not a valid {} in JSON: {}", message->GetDescriptor()->full_name(),
                             std::string(status.message()))}
        .with_param("body", "invalid");
  return ok();
}

bool valid_utf8(std::string_view s) { return detail::utf8::valid(s); }

}  // namespace tern::json
