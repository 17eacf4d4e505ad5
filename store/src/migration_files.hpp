// The SQL files of store/migrations/, embedded at build time (see embed_migrations.cmake).
#pragma once

#include <string>
#include <vector>

namespace workflowd::store {

struct MigrationFile {
  const char* file_name;  // NNNN_description.sql
  const char* sql;
};

const std::vector<MigrationFile>& EmbeddedMigrations();

}  // namespace workflowd::store
