# Installation layout and the Debian package (docs/deployment.md).
#
#   cmake --install build [--prefix P]          P defaults to /usr/local; the .deb uses /usr
#     P/bin/workflowd                             (daemon/CMakeLists.txt installs the binary)
#     P/lib/systemd/system/workflowd.service      ExecStart/ExecStartPre rewritten to P/bin
#     P/lib/sysusers.d/workflowd.conf             the workflowd system user
#     P/lib/tmpfiles.d/workflowd.conf             /etc/workflowd, 0750 root:workflowd
#     P/share/workflowd/examples/                 workflowd.yaml, workflowd.env.example,
#                                                 credentials.conf.example (postinst copies the
#                                                 first two into /etc/workflowd)
#     P/share/doc/workflowd/deployment.md
#   cpack -G DEB (in the build folder)           build/workflowd_<version>_<arch>.deb
#
# The examples live in share/workflowd rather than share/doc because minimal images (for example
# Debian's slim containers) drop /usr/share/doc, and postinst needs them.

set(WORKFLOWD_UNIT_SOURCE ${PROJECT_SOURCE_DIR}/systemd/workflowd.service)

# The unit names the binary by its absolute path; point it at the prefix chosen at install time
# (`cmake --install --prefix`, or /usr under CPack, which installs with DESTDIR, see below).
install(CODE "
  file(READ \"${WORKFLOWD_UNIT_SOURCE}\" unit)
  string(REPLACE \"/usr/bin/workflowd\" \"\${CMAKE_INSTALL_PREFIX}/bin/workflowd\" unit \"\${unit}\")
  set(dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  file(MAKE_DIRECTORY \"\${dir}\")
  message(STATUS \"Installing: \${dir}/workflowd.service\")
  file(WRITE \"\${dir}/workflowd.service\" \"\${unit}\")
  file(CHMOD \"\${dir}/workflowd.service\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
")
install(FILES ${PROJECT_SOURCE_DIR}/systemd/workflowd.sysusers
        DESTINATION lib/sysusers.d RENAME workflowd.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/workflowd.tmpfiles
        DESTINATION lib/tmpfiles.d RENAME workflowd.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/workflowd.yaml
              ${PROJECT_SOURCE_DIR}/systemd/workflowd.env.example
              ${PROJECT_SOURCE_DIR}/systemd/credentials.conf.example
        DESTINATION share/workflowd/examples)
install(FILES ${PROJECT_SOURCE_DIR}/docs/deployment.md DESTINATION share/doc/workflowd)

# --- CPack: the Debian package ------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME workflowd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "workflowd")
set(CPACK_PACKAGE_CONTACT "workflowd maintainers <workflowd@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Turns business events on Kafka into workflow executions")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "workflowd consumes business events from Kafka, matches them against each tenant's\n"
       "workflow definitions and records workflow executions in PostgreSQL. It runs as a\n"
       "systemd service (Type=notify, watchdog) and exports Prometheus metrics.")
# Install into the staging folder with DESTDIR, so that CMAKE_INSTALL_PREFIX is /usr while the
# install scripts run (the unit's ExecStart is rewritten from it).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_NAME workflowd)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Run-time library dependencies (librdkafka, libpqxx, prometheus-cpp's core library, ...) computed
# by dpkg-shlibdeps from the binary's shared libraries: workflowd links libprometheus-cpp-core.so.1.0
# dynamically (Debian ships no static prometheus-cpp), which its package's shlibs file turns into
# `libprometheus-cpp-core1.0 (>= 1.0.1)`.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# postinst creates the user with systemd-sysusers, adduser or useradd (passwd is essential).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/deb/postinst
    ${PROJECT_SOURCE_DIR}/packaging/deb/prerm
    ${PROJECT_SOURCE_DIR}/packaging/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
