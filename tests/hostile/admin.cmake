# The admin API under hostile use: loads and record targets outside the
# cassette roots (.., symbolic links, /etc, /root), no or a wrong bearer
# token, a body sent a byte at a time, connections past the cap, and the
# Unix socket's permissions. Raw sockets on 127.0.0.1 and a private folder.
add_executable(admin_hostile ${CMAKE_CURRENT_SOURCE_DIR}/admin_hostile.c)
target_include_directories(admin_hostile PRIVATE ${PROJECT_SOURCE_DIR}/tests/support
  ${PROJECT_SOURCE_DIR}/tests/mock)
target_link_libraries(admin_hostile PRIVATE tch_vcr PkgConfig::CMOCKA PkgConfig::LIBEVENT
  PkgConfig::JANSSON)
target_compile_definitions(admin_hostile PRIVATE TCH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  TCH_MOCK_BIN="$<TARGET_FILE:tchannel-mock>")
add_dependencies(admin_hostile tchannel-mock)
add_test(NAME hostile.admin COMMAND admin_hostile)
set_tests_properties(hostile.admin PROPERTIES LABELS hostile TIMEOUT 120)
