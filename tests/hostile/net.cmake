# Hostile peers against a channel over 127.0.0.1: malformed frames and
# inits, reused ids and forbidden headers, a seeded random-frame run, idle,
# silent, slowloris and non-reading clients, calls over the in-flight
# limit, arguments over the memory budget, connections over the cap.
find_package(Threads REQUIRED)
add_executable(net_hostile ${CMAKE_CURRENT_SOURCE_DIR}/net_hostile.c)
target_link_libraries(net_hostile PRIVATE tch_channel Threads::Threads)
add_test(NAME hostile.net COMMAND net_hostile)
set_tests_properties(hostile.net PROPERTIES LABELS hostile TIMEOUT 120)
