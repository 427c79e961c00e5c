/* cassette_info CASSETTE: loads a cassette with the installed VCR library
 * and prints "<interactions> interactions, mode <mode>". Exit 1 with the
 * loader's message when it cannot be read. */
#include <tchannel/cassette.h>

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: cassette_info CASSETTE\n");
        return 2;
    }
    tch_cassette *c = NULL;
    tch_error err = {0};
    if (tch_cassette_open(argv[1], NULL, &c, &err) != 0) {
        fprintf(stderr, "cassette_info: %s\n", err.msg);
        return 1;
    }
    printf("%zu interactions, mode %s\n", tch_cassette_count(c),
           tch_cassette_mode_name(tch_cassette_get_mode(c)));
    tch_cassette_free(c);
    return 0;
}
