#include "workflowd/providers/registry.hpp"

#include <mutex>

#include "workflowd/providers/validation.hpp"

namespace workflowd::providers {

void Registry::Register(std::shared_ptr<Provider> provider) {
  if (!provider) throw ProviderError(ErrorCode::kInvalidSpec, "cannot register a null provider");
  std::string name = provider->Name();
  if (!IsValidProviderName(name)) {
    throw ProviderError(
        ErrorCode::kInvalidSpec,
        "provider name \"" + name + "\" must be lowercase alphanumeric words joined by hyphens");
  }
  std::unique_lock lock(mu_);
  auto [it, inserted] = providers_.emplace(name, std::move(provider));
  if (!inserted) {
    throw ProviderError(ErrorCode::kProviderConflict,
                        "workflow provider \"" + name + "\" is already registered");
  }
}

std::shared_ptr<Provider> Registry::Get(const std::string& provider_type) const {
  std::shared_lock lock(mu_);
  auto it = providers_.find(provider_type);
  if (it != providers_.end()) return it->second;
  std::string known;
  for (const auto& [name, _] : providers_) known += (known.empty() ? "" : ", ") + name;
  throw ProviderError(ErrorCode::kProviderNotFound,
                      "workflow provider \"" + provider_type +
                          "\" not found (registered: " + (known.empty() ? "none" : known) + ")");
}

bool Registry::Has(const std::string& provider_type) const {
  std::shared_lock lock(mu_);
  return providers_.contains(provider_type);
}

std::vector<std::string> Registry::List() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> names;
  names.reserve(providers_.size());
  for (const auto& [name, _] : providers_) names.push_back(name);
  return names;
}

}  // namespace workflowd::providers
