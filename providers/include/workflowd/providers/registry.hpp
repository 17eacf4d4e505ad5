// Thread-safe map of provider name -> provider (the Manager looks providers up here).
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "workflowd/providers/provider.hpp"

namespace workflowd::providers {

class Registry {
 public:
  // Throws kProviderConflict when the name is taken, kInvalidSpec when the provider is null or its
  // name is not lowercase alphanumeric with hyphens.
  void Register(std::shared_ptr<Provider> provider);
  // Throws kProviderNotFound naming the registered providers.
  std::shared_ptr<Provider> Get(const std::string& provider_type) const;
  bool Has(const std::string& provider_type) const;
  // Sorted names.
  std::vector<std::string> List() const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::shared_ptr<Provider>> providers_;
};

}  // namespace workflowd::providers
