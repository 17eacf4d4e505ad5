#include "workflowd/providers/registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "recording_provider.hpp"

namespace workflowd::providers {
namespace {

using testing::RecordingProvider;

TEST(Registry, RegisterGetHasList) {
  Registry r;
  EXPECT_TRUE(r.List().empty());
  auto mock = std::make_shared<RecordingProvider>("mock");
  r.Register(mock);
  r.Register(std::make_shared<RecordingProvider>("step-functions"));
  EXPECT_TRUE(r.Has("mock"));
  EXPECT_FALSE(r.Has("temporal"));
  EXPECT_EQ(r.Get("mock"), mock);
  EXPECT_EQ(r.List(), (std::vector<std::string>{"mock", "step-functions"}));
}

TEST(Registry, ConflictOnSecondRegistration) {
  Registry r;
  r.Register(std::make_shared<RecordingProvider>("mock"));
  try {
    r.Register(std::make_shared<RecordingProvider>("mock"));
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProviderConflict);
    EXPECT_NE(std::string(e.what()).find("mock"), std::string::npos);
  }
  EXPECT_EQ(r.List().size(), 1u);
}

TEST(Registry, NotFoundNamesWhatIsRegistered) {
  Registry r;
  r.Register(std::make_shared<RecordingProvider>("mock"));
  try {
    r.Get("temporal");
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProviderNotFound);
    EXPECT_NE(std::string(e.what()).find("temporal"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("registered: mock"), std::string::npos);
  }
}

TEST(Registry, RejectsNullAndBadNames) {
  Registry r;
  EXPECT_THROW(r.Register(nullptr), ProviderError);
  EXPECT_THROW(r.Register(std::make_shared<RecordingProvider>("Step Functions")), ProviderError);
  EXPECT_THROW(r.Register(std::make_shared<RecordingProvider>("")), ProviderError);
  EXPECT_TRUE(r.List().empty());
}

// Many threads registering distinct and clashing names while others read: exactly one
// registration per name wins, readers never see a torn state (run under ThreadSanitizer).
TEST(RegistryConcurrency, ParallelRegisterAndLookup) {
  Registry r;
  constexpr int kThreads = 8;
  constexpr int kNames = 50;
  std::atomic<int> conflicts{0};
  std::atomic<int> successes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kNames; ++i) {
        std::string name = "p" + std::to_string(i);
        try {
          r.Register(std::make_shared<RecordingProvider>(name));
          ++successes;
        } catch (const ProviderError& e) {
          EXPECT_EQ(e.code(), ErrorCode::kProviderConflict);
          ++conflicts;
        }
        EXPECT_TRUE(r.Has(name));
        EXPECT_EQ(r.Get(name)->Name(), name);
        EXPECT_GE(r.List().size(), 1u);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(successes.load(), kNames);
  EXPECT_EQ(conflicts.load(), kNames * (kThreads - 1));
  EXPECT_EQ(r.List().size(), static_cast<size_t>(kNames));
}

}  // namespace
}  // namespace workflowd::providers
