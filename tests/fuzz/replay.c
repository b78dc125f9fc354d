/*
 * replay.c - the main() that stands in for libFuzzer in every build (gcc included): runs
 * LLVMFuzzerTestOneInput once on every file of the directories given, so the seed corpus and
 * the saved crash inputs (regressions/) are ordinary tests under any compiler and sanitizer.
 *
 * Each input is copied into a heap buffer of exactly its size, as libFuzzer does, so an
 * AddressSanitizer build reports any read past its end. Files whose names start with '.'
 * (.keep, which holds an empty directory in git) are not inputs. A directory that does not
 * exist, or no input at all, is an error: a replay test that runs nothing must not pass.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int only_inputs(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "replay: %s is not a regular file — keep only inputs in the corpus\n",
                path);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf || fread(buf, 1, size, f) != size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    /* Named before it runs: if it crashes, this is the last line of the log. */
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(buf, size);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR... — runs the harness on every file of each DIR\n", argv[0]);
        return 2;
    }
    int total = 0;
    for (int a = 1; a < argc; a++) {
        struct dirent **list;
        int n = scandir(argv[a], &list, only_inputs, alphasort);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s: ", argv[a]);
            perror(NULL);
            return 1;
        }
        int bad = 0;
        for (int i = 0; i < n; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], list[i]->d_name);
            if (!bad && run_file(path)) bad = 1;
            free(list[i]);
        }
        free(list);
        if (bad) return 1;
        printf("replay: %d inputs from %s\n", n, argv[a]);
        total += n;
    }
    if (!total) {
        fprintf(stderr, "replay: no inputs in %s%s — generate the corpus (tests/fuzz/README.md)\n",
                argv[1], argc > 2 ? " and the others" : "");
        return 1;
    }
    return 0;
}
