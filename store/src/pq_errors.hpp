// Converts libpqxx exceptions into StoreError at the module boundary.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "workflowd/store/errors.hpp"

namespace workflowd::store {

inline bool IsRetryableSqlState(const std::string& state) {
  return state.rfind("08", 0) == 0 ||                               // connection exceptions
         state == "40001" ||                                        // serialization failure
         state == "40P01" ||                                        // deadlock detected
         state == "53300" ||                                        // too many connections
         state == "57P01" || state == "57P02" || state == "57P03";  // shutdown, cannot connect now
}

// Runs `fn`, rethrowing database failures as StoreError with `what` as context.
template <typename Fn>
auto GuardDb(const std::string& what, Fn&& fn) {
  try {
    return fn();
  } catch (const StoreError&) {
    throw;
  } catch (const pqxx::broken_connection& e) {
    throw StoreError(what + ": database unreachable: " + e.what(), true);
  } catch (const pqxx::in_doubt_error& e) {
    throw StoreError(what + ": commit outcome unknown: " + e.what(), true);
  } catch (const pqxx::sql_error& e) {
    throw StoreError(what + ": " + e.what() + " (SQLSTATE " + e.sqlstate() + ")",
                     IsRetryableSqlState(e.sqlstate()));
  } catch (const pqxx::failure& e) {
    throw StoreError(what + ": " + e.what(), false);
  }
}

}  // namespace workflowd::store
