# Hostile peers against a channel over 127.0.0.1: malformed frames and
# inits, reused ids and forbidden headers, a seeded random-frame run, idle,
# silent, slowloris and non-reading clients (late answers to one too),
# calls over the in-flight limit, arguments over the memory budget,
# cancelled calls still held counted in it, connections over the cap.
find_package(Threads REQUIRED)
add_executable(net_hostile ${CMAKE_CURRENT_SOURCE_DIR}/net_hostile.c)
target_link_libraries(net_hostile PRIVATE tch_channel Threads::Threads)
add_test(NAME hostile.net COMMAND net_hostile)
set_tests_properties(hostile.net PROPERTIES LABELS hostile TIMEOUT 120)

# The same limits set by tchannel-mock's flags, and its log lines.
if(TARGET tchannel-mock)
  add_test(NAME hostile.net_mock_flags
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/net_mock_flags.sh
            $<TARGET_FILE:tchannel-mock> $<TARGET_FILE:net_hostile>)
  set_tests_properties(hostile.net_mock_flags PROPERTIES LABELS hostile TIMEOUT 60)
endif()

# Delayed answers to a caller that never reads: the waiting calls share the
# answer's bytes and the answers count in --memory-budget (peak RSS bound;
# not meaningful under a sanitizer, which pads and quarantines memory).
if(TARGET tchannel-mock)
  add_test(NAME hostile.delayed_answers
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/delayed_answers.sh
            $<TARGET_FILE:tchannel-mock> $<TARGET_FILE:net_hostile>)
  set_tests_properties(hostile.delayed_answers PROPERTIES LABELS "hostile;mock" TIMEOUT 60)
  if(TCH_SANITIZE)
    set_tests_properties(hostile.delayed_answers PROPERTIES ENVIRONMENT TCH_RSS_MEANINGFUL=0)
  endif()
endif()
