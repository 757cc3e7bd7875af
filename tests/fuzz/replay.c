/*
 * replay.c — runs a fuzz target over every file of its corpus, as an ordinary test (no fuzzer needed). With clang
 * and -Dfuzz=true the same targets are also built as libFuzzer binaries to grow the corpus.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : CORPUS_DIR;
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return 1;
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        ++n;
    }
    closedir(d);
    printf("1..1\nok 1 - %zu corpus inputs replayed from %s\n", n, dir);
    return n == 0;
}
