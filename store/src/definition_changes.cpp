#include "workflowd/store/definition_changes.hpp"

#include <pqxx/pqxx>

#include "pq_errors.hpp"

namespace workflowd::store {

struct DefinitionChangeListener::Impl {
  class Receiver : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection& c, int& count)
        : pqxx::notification_receiver(c, "workflowd_definitions"), count_(count) {}
    void operator()(const std::string&, int) override { ++count_; }

   private:
    int& count_;
  };

  std::string dsn;
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<Receiver> receiver;
  int count = 0;
};

DefinitionChangeListener::DefinitionChangeListener(std::string dsn)
    : impl_(std::make_unique<Impl>()) {
  impl_->dsn = std::move(dsn);
}

DefinitionChangeListener::~DefinitionChangeListener() {
  impl_->receiver.reset();
  impl_->conn.reset();
}

int DefinitionChangeListener::Wait(std::chrono::milliseconds timeout) {
  try {
    return GuardDb("listen for definition changes", [&] {
      if (!impl_->conn || !impl_->conn->is_open()) {
        impl_->receiver.reset();
        impl_->conn = std::make_unique<pqxx::connection>(impl_->dsn);
        impl_->receiver = std::make_unique<Impl::Receiver>(*impl_->conn, impl_->count);
        impl_->conn->get_notifs();  // issues the LISTEN
      }
      impl_->count = 0;
      auto secs = timeout.count() / 1000;
      auto usecs = (timeout.count() % 1000) * 1000;
      impl_->conn->await_notification(secs, usecs);
      impl_->conn->get_notifs();
      return impl_->count;
    });
  } catch (const StoreError& e) {
    impl_->receiver.reset();
    impl_->conn.reset();
    throw;
  }
}

}  // namespace workflowd::store
