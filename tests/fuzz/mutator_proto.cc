// Field-level edits of protobuf inputs (mutator.h), through reflection so
// that one mutator serves every session message.
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "tests/fuzz/mutator.h"

namespace craft::fuzz {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr int kMaxDepth = 24;

// A place an edit can go: a singular field, a repeated field as a whole
// (index -1) or one element of it.
struct Site {
  Message* message;
  const FieldDescriptor* field;
  int index;
};

void Collect(Message* message, int depth, std::vector<Site>& sites,
             std::vector<std::string>& strings) {
  const Descriptor* descriptor = message->GetDescriptor();
  const Reflection* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (field->is_repeated()) {
      sites.push_back({message, field, -1});
      const int size = reflection->FieldSize(*message, field);
      for (int k = 0; k < size; ++k) {
        if (is_message) {
          if (depth < kMaxDepth) {
            Collect(reflection->MutableRepeatedMessage(message, field, k), depth + 1, sites,
                    strings);
          }
        } else {
          sites.push_back({message, field, k});
          if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
            strings.push_back(reflection->GetRepeatedString(*message, field, k));
          }
        }
      }
      continue;
    }
    sites.push_back({message, field, -1});
    if (is_message && reflection->HasField(*message, field) && depth < kMaxDepth) {
      Collect(reflection->MutableMessage(message, field), depth + 1, sites, strings);
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
        reflection->HasField(*message, field)) {
      strings.push_back(reflection->GetString(*message, field));
    }
  }
}

int64_t InterestingOrNear(int64_t current, Rng& rng) {
  switch (rng.Below(4)) {
    case 0:
      return current + 1;
    case 1:
      return current - 1;
    case 2:
      return static_cast<int64_t>(rng.Below(16));
    default:
      return InterestingIntegers()[rng.Below(InterestingIntegers().size())];
  }
}

double InterestingDouble(Rng& rng) {
  constexpr double kValues[] = {0.0,
                                -0.0,
                                -1.0,
                                0.5,
                                1.0,
                                1e15,
                                1e300,
                                std::numeric_limits<double>::denorm_min(),
                                std::numeric_limits<double>::infinity(),
                                -std::numeric_limits<double>::infinity(),
                                std::numeric_limits<double>::quiet_NaN()};
  return kValues[rng.Below(std::size(kValues))];
}

std::string EditString(std::string value, const std::vector<std::string>& strings, Rng& rng) {
  switch (rng.Below(6)) {
    case 0:
      return "";
    case 1:  // a value from elsewhere in the message: nonces, versions, names
      return strings.empty() ? value : strings[rng.Below(strings.size())];
    case 2:  // past the limits code puts on identifiers
      return std::string(rng.OneIn(2) ? 129 : 254 + rng.Below(8), 'a');
    case 3:
      value.push_back(static_cast<char>(rng.Below(256)));
      return value;
    case 4:
      value.resize(rng.Below(value.size() + 1));
      return value;
    default: {  // exactly the 128 bytes of an ncclUniqueId, or one off
      const size_t size = 127 + rng.Below(3);
      std::string bytes(size, '\0');
      for (char& c : bytes) c = static_cast<char>(rng.Next());
      return bytes;
    }
  }
}

// Sets singular scalar `field` of `message`, or element `index` when >= 0.
void EditScalar(Message* message, const FieldDescriptor* field, int index,
                const std::vector<std::string>& strings, Rng& rng) {
  const Reflection* r = message->GetReflection();
  const bool one = index < 0;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      const int64_t now =
          one ? r->GetInt32(*message, field) : r->GetRepeatedInt32(*message, field, index);
      const auto value = static_cast<int32_t>(InterestingOrNear(now, rng));
      one ? r->SetInt32(message, field, value) : r->SetRepeatedInt32(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      const int64_t now =
          one ? r->GetInt64(*message, field) : r->GetRepeatedInt64(*message, field, index);
      const int64_t value = InterestingOrNear(now, rng);
      one ? r->SetInt64(message, field, value) : r->SetRepeatedInt64(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      const auto value = static_cast<uint32_t>(InterestingOrNear(0, rng));
      one ? r->SetUInt32(message, field, value)
          : r->SetRepeatedUInt32(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      const auto value = static_cast<uint64_t>(InterestingOrNear(0, rng));
      one ? r->SetUInt64(message, field, value)
          : r->SetRepeatedUInt64(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      const double value = InterestingDouble(rng);
      one ? r->SetDouble(message, field, value)
          : r->SetRepeatedDouble(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      const auto value = static_cast<float>(InterestingDouble(rng));
      one ? r->SetFloat(message, field, value) : r->SetRepeatedFloat(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      const bool value =
          !(one ? r->GetBool(*message, field) : r->GetRepeatedBool(*message, field, index));
      one ? r->SetBool(message, field, value) : r->SetRepeatedBool(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {  // proto3 enums are open: any number
      const int count = field->enum_type()->value_count();
      const int value =
          rng.OneIn(4) ? static_cast<int>(InterestingOrNear(count, rng))
                       : field->enum_type()->value(static_cast<int>(rng.Below(count)))->number();
      one ? r->SetEnumValue(message, field, value)
          : r->SetRepeatedEnumValue(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      const std::string now =
          one ? r->GetString(*message, field) : r->GetRepeatedString(*message, field, index);
      std::string value = EditString(now, strings, rng);
      one ? r->SetString(message, field, std::move(value))
          : r->SetRepeatedString(message, field, index, std::move(value));
      return;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return;
  }
}

// Adds an element to repeated scalar `field`.
void AddScalar(Message* message, const FieldDescriptor* field, Rng& rng) {
  const Reflection* r = message->GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      r->AddInt32(message, field, static_cast<int32_t>(InterestingOrNear(0, rng)));
      return;
    case FieldDescriptor::CPPTYPE_INT64:
      r->AddInt64(message, field, InterestingOrNear(0, rng));
      return;
    case FieldDescriptor::CPPTYPE_UINT32:
      r->AddUInt32(message, field, static_cast<uint32_t>(InterestingOrNear(0, rng)));
      return;
    case FieldDescriptor::CPPTYPE_UINT64:
      r->AddUInt64(message, field, static_cast<uint64_t>(InterestingOrNear(0, rng)));
      return;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->AddDouble(message, field, InterestingDouble(rng));
      return;
    case FieldDescriptor::CPPTYPE_FLOAT:
      r->AddFloat(message, field, static_cast<float>(InterestingDouble(rng)));
      return;
    case FieldDescriptor::CPPTYPE_BOOL:
      r->AddBool(message, field, rng.OneIn(2));
      return;
    case FieldDescriptor::CPPTYPE_ENUM:
      r->AddEnumValue(message, field, static_cast<int>(rng.Below(8)));
      return;
    case FieldDescriptor::CPPTYPE_STRING:
      r->AddString(message, field, std::string(rng.Below(4), 'a'));
      return;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      r->AddMessage(message, field);
      return;
  }
}

// An element of the same repeated field of `other`, for fields of the root
// message (a session's steps): splices one session's steps into another.
bool AddFromOther(Message* message, const FieldDescriptor* field, const Message& other, Rng& rng) {
  if (other.GetDescriptor() != message->GetDescriptor()) return false;
  const Reflection* r = message->GetReflection();
  const int size = r->FieldSize(other, field);
  if (size == 0 || field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) return false;
  const Message& element = r->GetRepeatedMessage(other, field, static_cast<int>(rng.Below(size)));
  Message* added = r->AddMessage(message, field);
  added->CopyFrom(element);
  const int new_size = r->FieldSize(*message, field);
  // Somewhere in the list, not only at its end.
  for (int k = new_size - 1, to = static_cast<int>(rng.Below(new_size)); k > to; --k) {
    r->SwapElements(message, field, k, k - 1);
  }
  return true;
}

void EditRepeated(Message* message, const FieldDescriptor* field, const Message& other, Rng& rng) {
  const Reflection* r = message->GetReflection();
  const int size = r->FieldSize(*message, field);
  const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
  switch (rng.Below(6)) {
    case 0:
      if (size > 0) r->RemoveLast(message, field);
      return;
    case 1:
      if (size > 1) {
        r->SwapElements(message, field, static_cast<int>(rng.Below(size)),
                        static_cast<int>(rng.Below(size)));
      }
      return;
    case 2:  // duplicate an element
      if (size > 0 && is_message) {
        const int from = static_cast<int>(rng.Below(size));
        Message* added = r->AddMessage(message, field);
        added->CopyFrom(r->GetRepeatedMessage(*message, field, from));
      } else if (size > 0 && field->cpp_type() == FieldDescriptor::CPPTYPE_INT64) {
        r->AddInt64(message, field, r->GetRepeatedInt64(*message, field, size - 1));
      } else if (size > 0 && field->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
        r->AddInt32(message, field, r->GetRepeatedInt32(*message, field, size - 1));
      }
      return;
    case 3:
      if (AddFromOther(message, field, other, rng)) return;
      [[fallthrough]];
    case 4:
      AddScalar(message, field, rng);
      return;
    default:
      if (rng.OneIn(4)) r->ClearField(message, field);
      return;
  }
}

void EditOnce(Message* root, const Message& other, Rng& rng) {
  std::vector<Site> sites;
  std::vector<std::string> strings;
  Collect(root, 0, sites, strings);
  if (sites.empty()) return;
  const Site site = sites[rng.Below(sites.size())];
  const Reflection* r = site.message->GetReflection();
  if (site.field->is_repeated() && site.index < 0) {
    EditRepeated(site.message, site.field, other, rng);
  } else if (site.field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    // Set it (for a oneof member: switch the oneof to it), or clear it.
    if (r->HasField(*site.message, site.field) && rng.OneIn(3)) {
      r->ClearField(site.message, site.field);
    } else {
      r->MutableMessage(site.message, site.field);
    }
  } else {
    EditScalar(site.message, site.field, site.index, strings, rng);
  }
}

}  // namespace

bool MutateMessage(const Message& prototype, std::string* data, const std::string& other,
                   size_t max_size, Rng& rng) {
  std::unique_ptr<Message> message(prototype.New());
  if (!message->ParseFromString(*data)) return false;
  std::unique_ptr<Message> donor(prototype.New());
  if (!donor->ParseFromString(other)) donor->Clear();
  for (size_t edits = 1 + rng.Below(rng.OneIn(4) ? 4 : 1); edits > 0; --edits) {
    EditOnce(message.get(), *donor, rng);
  }
  std::string bytes;
  if (!message->SerializeToString(&bytes) || bytes.size() > max_size) return false;
  *data = std::move(bytes);
  return true;
}

}  // namespace craft::fuzz
