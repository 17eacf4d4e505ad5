#include "workflowd/providers/manager.hpp"

#include <gtest/gtest.h>

#include "recording_provider.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"

namespace workflowd::providers {
namespace {

using ::testing::_;
using ::testing::InSequence;
using testing::RecordingProvider;
using ::testing::Return;
using ::testing::StrictMock;

WorkflowSpec Spec(const std::string& provider) {
  WorkflowSpec s;
  s.workflow_id = "onboarding";
  s.provider_type = provider;
  s.name = "Onboarding";
  s.definition = Json{{"steps", Json::array({Json{{"id", "a"}}})}};
  return s;
}

class ManagerTest : public ::testing::Test {
 protected:
  ManagerTest()
      : registry_(std::make_shared<Registry>()),
        alpha_(std::make_shared<StrictMock<RecordingProvider>>("alpha")),
        beta_(std::make_shared<StrictMock<RecordingProvider>>("beta")),
        manager_(registry_) {
    registry_->Register(alpha_);
    registry_->Register(beta_);
  }

  std::shared_ptr<Registry> registry_;
  std::shared_ptr<StrictMock<RecordingProvider>> alpha_;
  std::shared_ptr<StrictMock<RecordingProvider>> beta_;
  Manager manager_;
  Context ctx_ = Context::Background();
};

TEST_F(ManagerTest, CreateValidatesWithProviderBeforeCreating) {
  InSequence order;
  EXPECT_CALL(*beta_, Validate(_, Spec("beta")));
  EXPECT_CALL(*beta_, CreateWorkflow(_, Spec("beta")))
      .WillOnce(Return(CreateWorkflowResult{"onboarding", "beta", {}, {}, "ok"}));
  auto result = manager_.CreateWorkflow(ctx_, Spec("beta"));
  EXPECT_EQ(result.provider_type, "beta");
}

TEST_F(ManagerTest, ProviderValidationFailureStopsCreate) {
  EXPECT_CALL(*alpha_, Validate(_, _))
      .WillOnce(::testing::Throw(ProviderError(ErrorCode::kInvalidSpec, "definition: bad")));
  EXPECT_CALL(*alpha_, CreateWorkflow(_, _)).Times(0);
  try {
    manager_.CreateWorkflow(ctx_, Spec("alpha"));
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidSpec);
  }
}

TEST_F(ManagerTest, StructurallyInvalidSpecNeverReachesProvider) {
  auto spec = Spec("alpha");
  spec.workflow_id = "Not Valid";
  // StrictMock: any provider call fails the test.
  EXPECT_THROW(manager_.CreateWorkflow(ctx_, spec), ProviderError);
  EXPECT_THROW(manager_.ValidateWorkflow(ctx_, spec), ProviderError);
  ExecutionInput bad{"bad name!", Json::object(), {}};
  EXPECT_THROW(manager_.StartExecution(ctx_, "alpha", "onboarding", bad), ProviderError);
}

TEST_F(ManagerTest, UnknownProvider) {
  try {
    manager_.CreateWorkflow(ctx_, Spec("gamma"));
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kProviderNotFound);
  }
  EXPECT_THROW(manager_.GetExecutionStatus(ctx_, "gamma", "x"), ProviderError);
}

TEST_F(ManagerTest, RoutesEveryOperationByProviderName) {
  ExecutionInput in{"e-1", Json::object(), {}};
  EXPECT_CALL(*alpha_, StartExecution(_, "onboarding", in))
      .WillOnce(Return(ExecutionResult{"x-1", "onboarding", "alpha", ExecutionState::kRunning}));
  EXPECT_CALL(*beta_, GetExecutionStatus(_, "x-1")).WillOnce(Return(ExecutionStatus{}));
  EXPECT_CALL(*alpha_, StopExecution(_, "x-1", "user asked"));
  EXPECT_CALL(*beta_, DeleteWorkflow(_, "onboarding"));
  EXPECT_EQ(manager_.StartExecution(ctx_, "alpha", "onboarding", in).execution_id, "x-1");
  manager_.GetExecutionStatus(ctx_, "beta", "x-1");
  manager_.StopExecution(ctx_, "alpha", "x-1", "user asked");
  manager_.DeleteWorkflow(ctx_, "beta", "onboarding");
  EXPECT_EQ(manager_.ListProviders(), (std::vector<std::string>{"alpha", "beta"}));
}

TEST_F(ManagerTest, EndedContextIsReportedWithoutCallingProvider) {
  CancelSource source;
  source.Cancel();
  try {
    manager_.StartExecution(source.context(), "alpha", "onboarding",
                            ExecutionInput{"e", Json::object(), {}});
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  auto expired = Context::Background().WithTimeout(std::chrono::nanoseconds(0));
  try {
    manager_.GetExecutionStatus(expired, "alpha", "x");
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kDeadlineExceeded);
    EXPECT_TRUE(e.Retryable());
  }
}

TEST_F(ManagerTest, ProviderErrorsPassThroughUnchanged) {
  EXPECT_CALL(*alpha_, GetExecutionStatus(_, "gone"))
      .WillOnce(::testing::Throw(ProviderError(ErrorCode::kExecutionNotFound, "gone")));
  EXPECT_CALL(*alpha_, StopExecution(_, _, _))
      .WillOnce(::testing::Throw(ProviderError(ErrorCode::kThrottled, "slow down")));
  try {
    manager_.GetExecutionStatus(ctx_, "alpha", "gone");
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kExecutionNotFound);
  }
  try {
    manager_.StopExecution(ctx_, "alpha", "x", "r");
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_TRUE(e.Retryable());
  }
}

// The provider framework's whole data flow through the real mock provider.
TEST(ManagerWithMock, CreateStartMonitorStop) {
  auto registry = std::make_shared<Registry>();
  ManualClock clock;
  auto mock = std::make_shared<mock::MockProvider>(clock);
  registry->Register(mock);
  Manager manager(registry);
  auto ctx = Context::Background();
  manager.CreateWorkflow(ctx, Spec("mock"));
  mock->SetWorkflowOutcome("onboarding", mock::Outcome::RunUntilStopped());
  auto started = manager.StartExecution(ctx, "mock", "onboarding",
                                        ExecutionInput{"e-1", Json{{"tenant", "t1"}}, {}});
  EXPECT_EQ(manager.GetExecutionStatus(ctx, "mock", started.execution_id).state,
            ExecutionState::kRunning);
  manager.StopExecution(ctx, "mock", started.execution_id, "done testing");
  EXPECT_EQ(manager.GetExecutionStatus(ctx, "mock", started.execution_id).state,
            ExecutionState::kCancelled);
  manager.DeleteWorkflow(ctx, "mock", "onboarding");
  EXPECT_FALSE(mock->HasWorkflow("onboarding"));
}

}  // namespace
}  // namespace workflowd::providers
