#include "workflowd/store/database.hpp"

#include "database_impl.hpp"

namespace workflowd::store {

Database::Database(std::string dsn, std::chrono::milliseconds connect_timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->dsn = std::move(dsn);
  impl_->connect_timeout = connect_timeout;
  auto seconds = std::max<long long>(1, (connect_timeout.count() + 999) / 1000);
  const auto& d = impl_->dsn;
  if (d.find("connect_timeout") != std::string::npos) {
    impl_->connect_dsn = d;
  } else if (d.rfind("postgres", 0) == 0) {  // URL form
    impl_->connect_dsn = d + (d.find('?') == std::string::npos ? "?" : "&") +
                         "connect_timeout=" + std::to_string(seconds);
  } else {
    impl_->connect_dsn = d + " connect_timeout=" + std::to_string(seconds);
  }
}

Database::~Database() = default;

void Database::Ping() {
  impl_->Transact("ping", [](pqxx::work& w) { w.exec("SELECT 1"); });
}

const std::string& Database::dsn() const { return impl_->dsn; }

std::chrono::milliseconds Database::connect_timeout() const { return impl_->connect_timeout; }

}  // namespace workflowd::store
