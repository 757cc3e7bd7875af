/*
 * main.c — `partyd`: read the configuration, resolve its parties to their code, run the node.
 */
#include <stdio.h>
#include <stdlib.h>

#include "base.h"
#include "module.h"
#include "node.h"

int main(int argc, char **argv)
{
    config_t conf;
    int r = config_from_args(&conf, argc, argv);
    if (r < 0 || r == 1) {
        config_dispose(&conf);
        return r > 0 ? EXIT_SUCCESS : 2;
    }
    /* the config was read for its syntax; which kinds exist and what a module holds is known where parties live */
    partydefs_t defs;
    char err[1024];
    if (module_resolve(&defs, &conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "partyd: bad config (%s): %s\n", conf.source, err);
        config_dispose(&conf);
        return 2;
    }
    int status = EXIT_SUCCESS;
    if (r == 2) {
        char *json = config_to_json(&conf);
        fputs(json, stdout);
        fputc('\n', stdout);
        free(json);
    } else {
        log_set_level((log_level_t)conf.log_level);
        status = node_run(&conf, &defs);
    }
    module_release(&defs);
    config_dispose(&conf);
    return status;
}
