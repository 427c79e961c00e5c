# Recordings under faults: kill -9 of tchannel-mock while a client records
# through it, repeatedly (every answered call must be in the cassette after
# the restart), a full disk on a small tmpfs (skipped, exit 77, where the
# test cannot mount one), --record-failure=answer, two mocks on one cassette
# (the journal's owner), and a journal that cannot be written.
add_executable(record_hostile ${CMAKE_CURRENT_SOURCE_DIR}/record_hostile.c)
target_include_directories(record_hostile PRIVATE ${PROJECT_SOURCE_DIR}/tests/support
  ${PROJECT_SOURCE_DIR}/tests/mock)
target_link_libraries(record_hostile PRIVATE tch_vcr PkgConfig::LIBEVENT)
target_compile_definitions(record_hostile PRIVATE TCH_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  TCH_MOCK_BIN="$<TARGET_FILE:tchannel-mock>"
  TCH_INTEROP_SERVER="$<TARGET_FILE:interop-server>")
add_dependencies(record_hostile tchannel-mock interop-server)
add_test(NAME hostile.record_kill9 COMMAND record_hostile kill9)
add_test(NAME hostile.record_disk_full COMMAND record_hostile diskfull)
add_test(NAME hostile.record_failure_answer COMMAND record_hostile answer)
add_test(NAME hostile.record_shared COMMAND record_hostile shared)
add_test(NAME hostile.record_journal_dir COMMAND record_hostile journaldir)
set_tests_properties(hostile.record_kill9 hostile.record_disk_full hostile.record_failure_answer
  hostile.record_shared hostile.record_journal_dir PROPERTIES
  LABELS hostile TIMEOUT 90 SKIP_RETURN_CODE 77 FAIL_REGULAR_EXPRESSION "FAIL")
# kill9 restarts the mock ten times on a growing cassette: about 15 s in a
# plain build, five times that under the sanitizers on a busy machine.
set_tests_properties(hostile.record_kill9 PROPERTIES TIMEOUT 300)
