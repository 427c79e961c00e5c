/* A test that records through the VCR often starts other programs (the
 * mock server, the Node peer, a shell): none of them may inherit the
 * channel's sockets. Every socket the library opens (listening, dialled,
 * accepted) is close-on-exec: a child sees none, and a port the parent
 * closed can be listened on again while the child lives. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <tchannel/channel.h>

#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop.h"

typedef struct fixture {
    struct event_base *base;
    tch_channel *server, *client;
    char hp[64];
} fixture;

static void echo(tch_inbound *in, void *ud) {
    (void)ud;
    tch_inbound_respond(in, 0, TCH_SLICE_NULL, tch_inbound_arg3(in));
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    assert_int_equal(tch_channel_listen(f->server, "127.0.0.1:0", NULL), 0);
    snprintf(f->hp, sizeof f->hp, "%s", tch_channel_host_port(f->server));
    tch_channel_register(f->server, NULL, "echo", echo, NULL);
    tch_channel_new(f->base, "client", NULL, &f->client, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    tch_channel_free(f->client);
    tch_channel_free(f->server);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void on_done(const tch_response *res, void *ud) {
    *(int *)ud = res->status == 0 ? 1 : -1;
}

/* A call, so that there is a dialled and an accepted socket too. */
static void call_once(fixture *f) {
    int done = 0;
    tch_call_opts o = {.service = "server", .endpoint = tch_slice_cstr("echo"),
                       .arg3 = tch_slice_cstr("x"), .host_port = f->hp, .timeout_ms = 2000};
    assert_int_equal(tch_channel_call(f->client, &o, on_done, &done, NULL), 0);
    assert_true(tch_test_run_until(f->base, &done, 5000));
    assert_int_equal(done, 1);
}

/* The sockets of process `pid` ("self" or a number), as /proc names them
 * ("socket:[INODE]"), one a line; returns how many. */
static int sockets_of(const char *pid, char *out, size_t size) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%s/fd", pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    size_t o = 0;
    out[0] = '\0';
    for (struct dirent *e; (e = readdir(d));) {
        char link[400], target[128];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strncmp(target, "socket:", 7) != 0 || o + (size_t)len + 2 > size)
            continue;
        o += (size_t)snprintf(out + o, size - o, "%s\n", target);
        n++;
    }
    closedir(d);
    return n;
}

/* A child running cat: it lives until *to is closed. It has exec'd once
 * it echoes a line back (till then it is a copy of this process). */
static pid_t spawn_cat(int *to, int *from) {
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl("/bin/cat", "cat", (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    *to = in[1], *from = out[0];
    char echo[3] = "";
    assert_int_equal(write(*to, "x\n", 2), 2);
    assert_int_equal(read(*from, echo, 2), 2); /* a pipe: two bytes come at once */
    assert_memory_equal(echo, "x\n", 2);
    return pid;
}

static void end_cat(pid_t pid, int to, int from) {
    close(to);
    char rest[16];
    while (read(from, rest, sizeof rest) > 0) {
    }
    close(from);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

static void child_holds_none_of_the_channels_sockets(void **state) {
    fixture *f = *state;
    call_once(f);
    char mine[4096], theirs[4096], pid_s[16];
    assert_true(sockets_of("self", mine, sizeof mine) >= 3); /* listening, dialled, accepted */
    int to, from;
    pid_t pid = spawn_cat(&to, &from);
    snprintf(pid_s, sizeof pid_s, "%d", (int)pid);
    int n = sockets_of(pid_s, theirs, sizeof theirs);
    end_cat(pid, to, from);
    if (n)
        fail_msg("the child inherited %d socket(s):\n%sof this process's:\n%s", n, theirs, mine);
}

static void the_port_is_free_once_the_parent_closes_it(void **state) {
    fixture *f = *state;
    int to, from;
    pid_t pid = spawn_cat(&to, &from); /* lives on while the port is closed and taken again */
    tch_channel_free(f->server);
    tch_channel_new(f->base, "server", NULL, &f->server, NULL);
    tch_error err = {0};
    int rc = tch_channel_listen(f->server, f->hp, &err);
    if (rc)
        print_message("listen again on %s: %s\n", f->hp, err.msg);
    end_cat(pid, to, from);
    assert_int_equal(rc, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(child_holds_none_of_the_channels_sockets, setup, teardown),
        cmocka_unit_test_setup_teardown(the_port_is_free_once_the_parent_closes_it, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
